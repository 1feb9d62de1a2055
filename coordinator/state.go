package coordinator

import (
	"sort"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

// jobEntry is the coordinator's record of one job plus the bookkeeping that
// is not part of the wire record.
type jobEntry struct {
	job messages.Job
	// index is the position in the pending heap, or -1 outside it.
	index int
	// parked is set while the job waits outside the heap because no
	// connected worker can ever run it, and reason is the explanation.
	parked bool
	reason string

	// runState is set while the job runs, and nil otherwise, so pending
	// and finished jobs do not carry its fields.
	*runState
}

// runState is the bookkeeping of a running job.
type runState struct {
	// runSent is set once the run command went to the worker.
	runSent bool
	// accepted is set once the worker acknowledged the run command.
	accepted bool
	// unconfirmed marks a running job rebuilt from the journal, until its
	// worker's heartbeat confirms it.
	unconfirmed  bool
	dispatchedAt time.Time
	gpus         []int
	res          messages.Resources

	// progressDirty is set when a progress value awaits its event.
	progressDirty bool
	lastProgress  time.Time
}

// state is the queue, owned by the coordinator's loop goroutine.
type state struct {
	c       *Coordinator
	jobs    map[string]*jobEntry
	queue   jobQueue
	parked  map[string]*jobEntry
	running map[string]*jobEntry
	history history
	workers map[string]*workerEntry
	// drained names the workers an operator drained.
	drained map[string]bool
	// names holds one copy of each plugin name; see intern.
	names map[string]string
	// order lists the worker names sorted, or is nil after a worker joined.
	order []string
	// idempotency maps an idempotency key to its job id.
	idempotency map[string]string
	nextSeq     uint64
	submitted   uint64
	// lastTerm is the highest leadership term found in the journal.
	lastTerm uint64

	// Snapshot bookkeeping; see snapshot.go.
	snapshotSeq    uint64
	purgedBelow    uint64
	snapshotting   bool
	lastSnapshot   time.Time
	lastCheckpoint time.Time
	checkpoints    []checkpoint
	counts         map[messages.Status]int

	// blocked describes why the head of the queue could not be placed in
	// the last scheduling pass; empty when it was placed.
	blocked string
	// dirty is set when a scheduling pass may place a job.
	dirty bool
	// progressPending lists jobs whose progress awaits its event.
	progressPending map[string]*jobEntry
	now             func() time.Time

	// broken is set after a journal write failed, until a rebuild.
	broken         bool
	brokenSince    time.Time
	lastRebuildTry time.Time
	lastTrim       time.Time
}

func newState(c *Coordinator) *state {
	return &state{
		c:               c,
		jobs:            make(map[string]*jobEntry),
		parked:          make(map[string]*jobEntry),
		running:         make(map[string]*jobEntry),
		workers:         make(map[string]*workerEntry),
		drained:         make(map[string]bool),
		names:           make(map[string]string),
		idempotency:     make(map[string]string),
		counts:          make(map[messages.Status]int),
		progressPending: make(map[string]*jobEntry),
		nextSeq:         1,
		now:             time.Now,
	}
}

// apply folds one journal event into the state during replay.
func (s *state) apply(_ uint64, ev *messages.Event) {
	if ev.Term > s.lastTerm {
		s.lastTerm = ev.Term
	}
	switch ev.Kind {
	case messages.EventLeader:
		return
	case messages.EventDrain, messages.EventUndrain:
		s.setDrained(ev.Worker, ev.Kind == messages.EventDrain)
		return
	}
	rec := ev.Job
	e, ok := s.jobs[rec.ID]
	if ev.Kind == messages.EventProgress {
		if ok && e.job.Status == messages.StatusRunning && e.job.Attempt == rec.Attempt {
			e.job.Progress = rec.Progress
			e.job.StatusMessage = rec.StatusMessage
		}
		return
	}
	if !ok {
		if ev.Kind != messages.EventSubmitted {
			// The job's earlier events are gone; keep the record this one carries.
			s.c.log.Warn("journal event for a job without a submitted event", "job_id", rec.ID, "event", string(ev.Kind))
		}
		e = &jobEntry{index: -1}
		s.jobs[rec.ID] = e
		s.submitted++
		if rec.IdempotencyKey != "" {
			s.idempotency[rec.IdempotencyKey] = rec.ID
		}
	} else {
		s.counts[e.job.Status]--
	}
	e.job = rec
	s.counts[rec.Status]++
	if rec.Seq >= s.nextSeq {
		s.nextSeq = rec.Seq + 1
	}
}

// finishReplay sorts the replayed jobs into the queue, the running set and
// the history.
func (s *state) finishReplay(now time.Time) {
	var finished []*jobEntry
	for _, e := range s.jobs {
		switch e.job.Status {
		case messages.StatusPending:
			s.queue.push(e)
		case messages.StatusRunning:
			e.runState = &runState{unconfirmed: true, runSent: true, accepted: true, dispatchedAt: now}
			s.running[e.job.ID] = e
			w := s.workerFor(e.job.Worker, now)
			w.assign(e)
		default:
			finished = append(finished, e)
		}
	}
	sort.Slice(finished, func(i, j int) bool {
		return completedAt(finished[i]).Before(completedAt(finished[j]))
	})
	for _, e := range finished {
		s.history.push(e)
	}
	s.trimHistory(now)
	s.dirty = true
}

func completedAt(e *jobEntry) time.Time {
	if e.job.CompletedAt != nil {
		return *e.job.CompletedAt
	}
	return e.job.CreatedAt
}

func (s *state) parkedCount() int { return len(s.parked) }

// setStatus changes a job's status and keeps the counters.
func (s *state) setStatus(e *jobEntry, st messages.Status) {
	s.counts[e.job.Status]--
	e.job.Status = st
	s.counts[st]++
}

// finish moves a job into the history with a final status.
func (s *state) finish(e *jobEntry, st messages.Status, now time.Time) {
	s.queue.remove(e)
	if e.parked {
		delete(s.parked, e.job.ID)
		e.parked = false
	}
	if w := s.workers[e.job.Worker]; w != nil {
		w.release(e)
	}
	delete(s.running, e.job.ID)
	delete(s.progressPending, e.job.ID)
	e.runState = nil

	s.setStatus(e, st)
	t := now
	e.job.CompletedAt = &t
	e.job.PendingReason = ""
	e.reason = ""
	s.history.push(e)
	s.trimHistory(now)
	s.dirty = true
}

// trimHistory drops finished jobs beyond MaxHistory or older than HistoryTTL.
func (s *state) trimHistory(now time.Time) {
	cutoff := now.Add(-s.c.cfg.HistoryTTL)
	for s.history.len() > 0 {
		oldest := s.history.oldest()
		if s.history.len() <= s.c.cfg.MaxHistory && !completedAt(oldest).Before(cutoff) {
			return
		}
		s.history.popOldest()
		s.forget(oldest)
	}
}

// forget removes a finished job from memory.
func (s *state) forget(e *jobEntry) {
	delete(s.jobs, e.job.ID)
	s.counts[e.job.Status]--
	if k := e.job.IdempotencyKey; k != "" && s.idempotency[k] == e.job.ID {
		delete(s.idempotency, k)
	}
}

// history is the finished jobs, oldest first, in a ring that grows as needed.
type history struct {
	items []*jobEntry
	head  int
	n     int
}

func (h *history) len() int { return h.n }

func (h *history) push(e *jobEntry) {
	if h.n == len(h.items) {
		grown := make([]*jobEntry, max(16, 2*len(h.items)))
		for i := 0; i < h.n; i++ {
			grown[i] = h.items[(h.head+i)%len(h.items)]
		}
		h.items, h.head = grown, 0
	}
	h.items[(h.head+h.n)%len(h.items)] = e
	h.n++
}

func (h *history) oldest() *jobEntry { return h.items[h.head] }

func (h *history) popOldest() {
	h.items[h.head] = nil
	h.head = (h.head + 1) % len(h.items)
	h.n--
}

// newest returns up to limit finished jobs, newest first; limit < 0 means all.
func (h *history) newest(limit int) []*jobEntry {
	if limit < 0 || limit > h.n {
		limit = h.n
	}
	out := make([]*jobEntry, 0, limit)
	for i := 0; i < limit; i++ {
		out = append(out, h.items[(h.head+h.n-1-i)%len(h.items)])
	}
	return out
}
