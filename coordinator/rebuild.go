package coordinator

import (
	"context"
	"log/slog"
	"time"
)

// rebuild replaces the state with one replayed from the journal, after a
// journal write failed. Requests in flight get errors from their failed
// writes; clients retry them. Workers keep their last advertisement.
func (c *Coordinator) rebuild(now time.Time) {
	old := c.state
	if now.Sub(old.lastRebuildTry) < time.Second {
		return
	}
	old.lastRebuildTry = now
	if n := c.journal.inflight(); n > 0 {
		c.log.Info("waiting for journal writes before the rebuild", slog.Int("writes", n))
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fresh := newState(c)
	snap, err := loadSnapshot(ctx, c.snapshots)
	if err != nil {
		c.log.Error("rebuild from journal failed; retrying", slog.Any("error", err))
		return
	}
	from := uint64(1)
	if snap != nil {
		fresh.loadSnapshot(snap)
		from = snap.Seq + 1
	}
	events, err := c.journal.replay(ctx, from, fresh.apply)
	if err != nil {
		c.log.Error("rebuild from journal failed; retrying", slog.Any("error", err))
		return
	}
	if fresh.lastTerm > c.term {
		// Another coordinator fenced this one off: it leads now.
		c.log.Error("another coordinator took over the journal; stepping down", slog.Uint64("term", c.term), slog.Uint64("new_term", fresh.lastTerm))
		c.leading.Store(false)
		c.stepDown()
		return
	}
	fresh.finishReplay(now)
	for name, w := range old.workers {
		fw := fresh.workerFor(name, now)
		fw.info, fw.lastSeen, fw.known, fw.lost = w.info, w.lastSeen, w.known, w.lost
	}
	c.state = fresh
	c.log.Info("state rebuilt from journal", slog.Int("events", events), slog.Duration("broken_for", now.Sub(old.brokenSince)))
}
