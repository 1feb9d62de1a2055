package coordinator

import (
	"fmt"
	"sort"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/micro"

	"github.com/jetqueue/jetqueue/messages"
)

// errBroken is the error of requests made while the state is rebuilt.
var errBroken = messages.Errorf(messages.CodeUnavailable, "the coordinator is rebuilding its state after a storage error; retry in a few seconds")

// submit queues one validated job and calls reply once it is durable.
func (s *state) submit(r *messages.SubmitRequest, reply func(messages.SubmitReply, error)) {
	if s.broken {
		reply(messages.SubmitReply{}, errBroken)
		return
	}
	if r.IdempotencyKey != "" {
		if id, ok := s.idempotency[r.IdempotencyKey]; ok {
			reply(messages.SubmitReply{ID: id, Seq: s.jobs[id].job.Seq, Duplicate: true}, nil)
			return
		}
	}
	e, err := s.newJob(r)
	if err != nil {
		reply(messages.SubmitReply{}, err)
		return
	}
	out := messages.SubmitReply{ID: e.job.ID, Seq: e.job.Seq}
	s.recordReply(e, messages.EventSubmitted, func(err error) { reply(out, err) })
}

// newJob creates a pending job and puts it in the queue.
func (s *state) newJob(r *messages.SubmitRequest) (*jobEntry, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("generate job id: %w", err)
	}
	maxAttempts := r.MaxAttempts
	if maxAttempts == 0 {
		maxAttempts = s.c.cfg.DefaultMaxAttempts
	}
	e := &jobEntry{
		index: -1,
		job: messages.Job{
			ID:             id.String(),
			PluginName:     s.intern(r.PluginName),
			Args:           r.Args,
			Kwargs:         r.Kwargs,
			Status:         messages.StatusPending,
			Priority:       r.Priority,
			CreatedAt:      s.now(),
			Seq:            s.nextSeq,
			MaxAttempts:    maxAttempts,
			Requirements:   r.Requirements,
			IdempotencyKey: r.IdempotencyKey,
			Labels:         r.Labels,
		},
	}
	s.nextSeq++
	s.submitted++
	s.jobs[e.job.ID] = e
	s.counts[messages.StatusPending]++
	if r.IdempotencyKey != "" {
		s.idempotency[r.IdempotencyKey] = e.job.ID
	}
	if reason := s.hopeless(e); reason != "" {
		s.park(e, reason)
		return e, nil
	}
	s.queue.push(e)
	s.dirty = true
	return e, nil
}

// submitBatch queues the valid jobs of a batch and replies once the last
// one is durable.
func (s *state) submitBatch(req micro.Request, reqs []messages.SubmitRequest) {
	if s.broken {
		s.c.respondError(req, errBroken)
		return
	}
	results := make([]messages.SubmitResult, len(reqs))
	var last *jobEntry
	for i := range reqs {
		r := &reqs[i]
		if err := messages.ValidateSubmit(r, s.c.cfg.MaxPayloadBytes); err != nil {
			results[i].Error = asAPIError(err)
			continue
		}
		if id, ok := s.idempotency[r.IdempotencyKey]; ok && r.IdempotencyKey != "" {
			results[i] = messages.SubmitResult{ID: id, Seq: s.jobs[id].job.Seq, Duplicate: true}
			continue
		}
		e, err := s.newJob(r)
		if err != nil {
			results[i].Error = asAPIError(err)
			continue
		}
		results[i] = messages.SubmitResult{ID: e.job.ID, Seq: e.job.Seq}
		if last != nil {
			s.recordReply(last, messages.EventSubmitted, nil)
		}
		last = e
	}
	if last == nil {
		s.c.respond(req, &messages.SubmitBatchReply{Results: results})
		return
	}
	// Journal writes are acknowledged in order, and each expects the one
	// before it, so the last acknowledgement covers the whole batch.
	s.recordReply(last, messages.EventSubmitted, func(err error) {
		if err != nil {
			s.c.respondError(req, err)
			return
		}
		s.c.respond(req, &messages.SubmitBatchReply{Results: results})
	})
}

// recordReply journals an event like record, but runs reply on the journal's
// acknowledgement goroutine, without a trip through the loop: replies to
// clients need no state.
func (s *state) recordReply(e *jobEntry, kind messages.EventKind, reply func(err error)) {
	ev := s.event(e, kind)
	s.c.journal.append(&ev, func(_ uint64, err error) {
		if err != nil {
			failed := err
			s.later(func() { s.journalFailed(failed) })
			err = messages.Errorf(messages.CodeUnavailable, "storing the job failed: %v; retry", err)
		}
		if reply != nil {
			reply(err)
		}
	})
}

// lookup returns a job by id or a not-found error.
func (s *state) lookup(id string) (*jobEntry, error) {
	e := s.jobs[id]
	if e == nil {
		return nil, messages.Errorf(messages.CodeNotFound, "job %s not found: check the id; finished jobs are kept for %s and at most %d of them", id, s.c.cfg.HistoryTTL, s.c.cfg.MaxHistory)
	}
	return e, nil
}

// cancel cancels a pending job at once, or sends the worker of a running
// job a cancel command.
func (s *state) cancel(req micro.Request, id string) {
	e, err := s.lookup(id)
	if err == nil && s.broken {
		err = errBroken
	}
	if err != nil {
		s.c.respondError(req, err)
		return
	}
	switch e.job.Status {
	case messages.StatusPending:
		e.job.Error = "cancelled while pending"
		s.finish(e, messages.StatusCancelled, s.now())
		s.replyJob(req, e, messages.EventCancelled)
	case messages.StatusRunning:
		if e.job.CancelPhase != messages.CancelNone {
			s.c.respond(req, &messages.JobReply{Job: s.view(e)})
			return
		}
		e.job.CancelPhase = messages.CancelRequested
		if e.runSent {
			s.sendCancel(e.job.Worker, e.job.ID, e.job.Attempt)
		}
		s.replyJob(req, e, messages.EventCancelRequested)
	default:
		s.c.respondError(req, messages.Errorf(messages.CodeConflict, "job %s is already %s: only pending and running jobs can be cancelled", id, e.job.Status))
	}
}

// reorder gives a pending job a new priority.
func (s *state) reorder(req micro.Request, id string, priority int) {
	e, err := s.lookup(id)
	if err == nil && s.broken {
		err = errBroken
	}
	if err != nil {
		s.c.respondError(req, err)
		return
	}
	if e.job.Status != messages.StatusPending {
		s.c.respondError(req, messages.Errorf(messages.CodeConflict, "job %s is %s: only pending jobs can be reordered", id, e.job.Status))
		return
	}
	e.job.Priority = priority
	s.queue.fix(e)
	s.dirty = true
	s.replyJob(req, e, messages.EventReordered)
}

// replyJob journals an event for e and replies with its record once durable.
func (s *state) replyJob(req micro.Request, e *jobEntry, kind messages.EventKind) {
	view := s.view(e)
	s.recordReply(e, kind, func(err error) {
		if err != nil {
			s.c.respondError(req, err)
			return
		}
		s.c.respond(req, &messages.JobReply{Job: view})
	})
}

// view returns e's record with its pending reason filled in.
func (s *state) view(e *jobEntry) messages.Job {
	j := e.job
	if j.Status == messages.StatusPending {
		j.PendingReason = s.pendingReason(e)
	}
	return j
}

// pendingReason explains why a pending job waits.
func (s *state) pendingReason(e *jobEntry) string {
	switch {
	case e.parked:
		return e.reason
	case s.queue.peek() == e && e.reason != "":
		return e.reason
	case s.queue.peek() == e:
		return s.quickReason(e)
	}
	ahead := 0
	for _, o := range s.queue.items {
		if o != e && before(o, e) {
			ahead++
		}
	}
	reason := fmt.Sprintf("behind %d jobs ahead of it in the queue", ahead)
	if s.blocked != "" {
		reason += "; the first " + s.blocked
	}
	return reason
}

// intern returns one shared copy of a plugin name, so pending jobs of one
// plugin do not each hold their own. Plugin names are few.
func (s *state) intern(name string) string {
	if shared, ok := s.names[name]; ok {
		return shared
	}
	s.names[name] = name
	return name
}

// quickReason is the reason of a job the scheduler has not looked at yet.
func (s *state) quickReason(e *jobEntry) string {
	for _, w := range s.workers {
		if _, ok := w.plugin(e.job.PluginName); ok && !w.lost && w.known {
			return "queued: waits for the scheduler"
		}
	}
	return noProvider(e.job.PluginName)
}

// noProvider is the pending reason of a job whose plugin no connected
// worker provides.
func noProvider(plugin string) string {
	return "no connected worker provides plugin " + plugin
}

// snapshot returns the whole queue for the state verb.
func (s *state) snapshot(pendingLimit, historyLimit int) messages.StateReply {
	if pendingLimit == 0 {
		pendingLimit = 1000
	}
	if historyLimit == 0 {
		historyLimit = 100
	}
	reply := messages.StateReply{
		Running: make([]messages.Job, 0, len(s.running)),
		Pending: []messages.PendingJob{},
		History: []messages.Job{},
		Workers: s.workerViews(),
		Leader:  s.c.cfg.Name,
		Time:    s.now(),
		Stats: messages.Stats{
			Pending:   s.counts[messages.StatusPending],
			Running:   s.counts[messages.StatusRunning],
			Completed: s.counts[messages.StatusCompleted],
			Failed:    s.counts[messages.StatusFailed],
			Cancelled: s.counts[messages.StatusCancelled],
			Submitted: s.submitted,
		},
	}
	for _, e := range s.running {
		reply.Running = append(reply.Running, e.job)
	}
	sort.Slice(reply.Running, func(i, j int) bool { return reply.Running[i].Seq < reply.Running[j].Seq })

	pending := make([]*jobEntry, 0, len(s.queue.items)+len(s.parked))
	pending = append(pending, s.queue.items...)
	for _, e := range s.parked {
		pending = append(pending, e)
	}
	sort.Slice(pending, func(i, j int) bool { return before(pending[i], pending[j]) })
	if pendingLimit > 0 && len(pending) > pendingLimit {
		pending = pending[:pendingLimit]
	}
	ahead := 0
	for i, e := range pending {
		j := e.job
		switch {
		case e.parked:
			j.PendingReason = e.reason
		case ahead == 0:
			j.PendingReason = s.pendingReason(e)
		default:
			j.PendingReason = fmt.Sprintf("behind %d jobs ahead of it in the queue", ahead)
			if s.blocked != "" {
				j.PendingReason += "; the first " + s.blocked
			}
		}
		if !e.parked {
			ahead++
		}
		reply.Pending = append(reply.Pending, messages.PendingJob{Position: i + 1, Job: j})
	}

	for _, e := range s.history.newest(historyLimit) {
		reply.History = append(reply.History, e.job)
	}
	return reply
}
