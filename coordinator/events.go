package coordinator

import (
	"log/slog"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

// record journals an event carrying e's current record. then, if not nil,
// runs on the loop goroutine once the write is durable (err nil) or failed.
// A failed write marks the state broken; see journalFailed.
func (s *state) record(e *jobEntry, kind messages.EventKind, then func(err error)) {
	ev := s.event(e, kind)
	if kind == messages.EventProgress {
		ev.Job = e.job.Summary()
	}
	s.recordEvent(&ev, then)
}

// event returns a lifecycle event carrying e's current record.
func (s *state) event(e *jobEntry, kind messages.EventKind) messages.Event {
	return messages.Event{V: messages.ProtocolVersion, Kind: kind, Time: s.now(), Term: s.c.term, Leader: s.c.cfg.Name, Job: e.job}
}

// recordEvent journals ev; see record.
func (s *state) recordEvent(ev *messages.Event, then func(err error)) {
	s.c.journal.append(ev, func(_ uint64, err error) {
		if err == nil && then == nil {
			return
		}
		s.later(func() {
			if err != nil {
				s.journalFailed(err)
			}
			if then != nil {
				then(err)
			}
		})
	})
}

// later runs fn on the loop goroutine if s is still the coordinator's state
// by then; a rebuild from the journal replaces it.
func (s *state) later(fn func()) {
	s.c.do(func() {
		if s.c.state == s {
			fn()
		}
	})
}

// journalFailed stops dispatching after a failed journal write. The
// in-memory state may now hold changes JetStream does not, so the next tick
// rebuilds it from the journal once no write is in flight.
func (s *state) journalFailed(err error) {
	if s.broken {
		return
	}
	s.broken = true
	s.brokenSince = s.now()
	s.c.log.Error("journal write failed; rebuilding state from JetStream", slog.Any("error", err))
}

// onTick runs the loop's periodic work.
func (s *state) onTick(now time.Time) {
	if s.broken {
		s.c.rebuild(now)
		return
	}
	if s.queue.Len() > 0 {
		// Resources free up with time too (a held-back worker, a lease).
		s.dirty = true
	}
	s.checkWorkers(now)
	s.checkDispatches(now)
	s.flushProgress(now)
	if s.history.len() > 0 && now.Sub(s.lastTrim) > time.Second {
		s.lastTrim = now
		s.trimHistory(now)
	}
	s.maybeSnapshot(now)
}

// flushProgress journals the latest progress of jobs whose last progress
// event is at least ProgressInterval old.
func (s *state) flushProgress(now time.Time) {
	for id, e := range s.progressPending {
		if now.Sub(e.lastProgress) < s.c.cfg.ProgressInterval {
			continue
		}
		delete(s.progressPending, id)
		s.emitProgress(e, now)
	}
}

func (s *state) emitProgress(e *jobEntry, now time.Time) {
	e.progressDirty = false
	e.lastProgress = now
	s.record(e, messages.EventProgress, nil)
}
