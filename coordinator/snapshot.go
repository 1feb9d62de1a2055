package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetqueue/jetqueue/messages"
)

// snapshotObject is the object name of the latest snapshot.
const snapshotObject = "state"

// snapshot is the whole queue as of one journal sequence. A leader starts
// from the latest snapshot and replays only the events after it, and the
// journal can drop what a snapshot covers.
type snapshot struct {
	V int `msgpack:"v"`
	// Seq is the last journal sequence the snapshot covers.
	Seq       uint64         `msgpack:"seq"`
	Term      uint64         `msgpack:"term"`
	NextSeq   uint64         `msgpack:"next_seq"`
	Submitted uint64         `msgpack:"submitted"`
	Time      time.Time      `msgpack:"time"`
	Jobs      []messages.Job `msgpack:"jobs"`
	// Checkpoints map journal sequences to times, so the leader can tell which
	// events are older than EventRetention.
	Checkpoints []checkpoint `msgpack:"checkpoints"`
	// Drained names the workers an operator drained.
	Drained []string `msgpack:"drained"`
}

// checkpoint records the journal's last sequence at one time.
type checkpoint struct {
	Seq  uint64    `msgpack:"seq"`
	Time time.Time `msgpack:"time"`
}

// checkpointEvery returns how often the leader records a checkpoint: a
// tenth of the retention, between one loop tick and a minute.
func checkpointEvery(retention time.Duration) time.Duration {
	return min(max(retention/10, tick), time.Minute)
}

func openSnapshots(ctx context.Context, js jetstream.JetStream, cfg Config, bucket string) (jetstream.ObjectStore, error) {
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      bucket,
		Description: "jetqueue coordinator state snapshots",
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create object store %s: %w", bucket, err)
	}
	return obs, nil
}

// loadSnapshot returns the latest snapshot, or nil when there is none.
func loadSnapshot(ctx context.Context, obs jetstream.ObjectStore) (*snapshot, error) {
	data, err := obs.GetBytes(ctx, snapshotObject)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read snapshot: %w", err)
	}
	var snap snapshot
	if err := messages.Decode(data, &snap); err != nil {
		return nil, fmt.Errorf("decode snapshot: %w", err)
	}
	return &snap, nil
}

// loadSnapshot fills an empty state from a snapshot before the replay.
func (s *state) loadSnapshot(snap *snapshot) {
	for i := range snap.Jobs {
		ev := messages.Event{Kind: messages.EventSubmitted, Job: snap.Jobs[i]}
		s.apply(snap.Seq, &ev)
	}
	s.submitted = snap.Submitted
	s.nextSeq = max(s.nextSeq, snap.NextSeq)
	s.lastTerm = max(s.lastTerm, snap.Term)
	s.checkpoints = snap.Checkpoints
	s.snapshotSeq = snap.Seq
	for _, name := range snap.Drained {
		s.setDrained(name, true)
	}
}

// maybeSnapshot takes a snapshot when enough events or time have passed
// since the last one, and purges journal events that the stored snapshot
// covers and that are older than EventRetention. It runs on the loop
// goroutine; storing and purging happen on another.
func (s *state) maybeSnapshot(now time.Time) {
	j := s.c.journal
	if now.Sub(s.lastCheckpoint) >= checkpointEvery(s.c.cfg.EventRetention) {
		s.lastCheckpoint = now
		s.checkpoints = append(s.checkpoints, checkpoint{Seq: j.lastSeq, Time: now})
	}
	if s.snapshotting {
		return
	}
	events := j.lastSeq - s.snapshotSeq
	due := events >= uint64(s.c.cfg.SnapshotEvery) || (events > 0 && now.Sub(s.lastSnapshot) >= s.c.cfg.SnapshotInterval)
	if due {
		s.takeSnapshot(now)
		return
	}
	if below := s.purgeBelow(now); below > s.purgedBelow {
		s.snapshotting = true
		go func() {
			err := s.c.purgeJournal(j, below)
			s.later(func() { s.purged(below, err) })
		}()
	}
}

// purgeBelow returns the journal sequence below which events may go: they
// are covered by the stored snapshot and older than the retention.
func (s *state) purgeBelow(now time.Time) uint64 {
	cutoff := now.Add(-s.c.cfg.EventRetention)
	// Keep the newest checkpoint older than the retention, and all younger.
	for len(s.checkpoints) > 1 && s.checkpoints[1].Time.Before(cutoff) {
		s.checkpoints = s.checkpoints[1:]
	}
	if len(s.checkpoints) == 0 || !s.checkpoints[0].Time.Before(cutoff) {
		return 0
	}
	return min(s.checkpoints[0].Seq, s.snapshotSeq) + 1
}

func (s *state) purged(below uint64, err error) {
	s.snapshotting = false
	if err != nil {
		s.c.log.Error("purge journal failed", slog.Uint64("below", below), slog.Any("error", err))
		return
	}
	s.purgedBelow = below
	s.c.log.Debug("journal purged", slog.Uint64("below", below))
}

// takeSnapshot encodes the state and stores it from another goroutine.
func (s *state) takeSnapshot(now time.Time) {
	j := s.c.journal
	snap := snapshot{
		V:           1,
		Seq:         j.lastSeq,
		Term:        s.c.term,
		NextSeq:     s.nextSeq,
		Submitted:   s.submitted,
		Time:        now,
		Jobs:        make([]messages.Job, 0, len(s.jobs)),
		Checkpoints: append([]checkpoint(nil), s.checkpoints...),
	}
	for _, e := range s.jobs {
		snap.Jobs = append(snap.Jobs, e.job)
	}
	for name := range s.drained {
		snap.Drained = append(snap.Drained, name)
	}
	data, err := messages.Encode(&snap)
	if err != nil {
		s.c.log.Error("encode snapshot failed", slog.Any("error", err))
		return
	}
	s.snapshotting = true
	s.lastSnapshot = now

	go func() {
		began := time.Now()
		err := s.c.storeSnapshot(j, snap.Seq, data)
		s.later(func() {
			s.snapshotting = false
			if err != nil {
				s.c.log.Error("snapshot failed", slog.Uint64("seq", snap.Seq), slog.Any("error", err))
				return
			}
			s.snapshotSeq = snap.Seq
			s.c.log.Info("snapshot stored", slog.Uint64("seq", snap.Seq), slog.Int("jobs", len(snap.Jobs)),
				slog.Int("bytes", len(data)), slog.Duration("took", time.Since(began)))
		})
	}()
}

// storeSnapshot waits until the journal holds every event the snapshot
// covers, then stores it.
func (c *Coordinator) storeSnapshot(j *journal, seq uint64, data []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := j.waitAcked(ctx, seq); err != nil {
		return err
	}
	if _, err := c.snapshots.PutBytes(ctx, snapshotObject, data); err != nil {
		return fmt.Errorf("store snapshot: %w", err)
	}
	return nil
}

// purgeJournal removes the journal's events below sequence below.
func (c *Coordinator) purgeJournal(j *journal, below uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := j.stream.Purge(ctx, jetstream.WithPurgeSequence(below)); err != nil {
		return fmt.Errorf("purge journal below sequence %d: %w", below, err)
	}
	return nil
}
