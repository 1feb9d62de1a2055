package coordinator

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetqueue/jetqueue/messages"
)

// onReport decodes a worker's job report and hands it to the loop.
func (c *Coordinator) onReport(msg *nats.Msg) {
	var r messages.Report
	if err := messages.Decode(msg.Data, &r); err != nil {
		c.log.Warn("rejecting a worker report that does not decode", slog.Any("error", err))
		c.replyReport(msg, err)
		return
	}
	c.doState(func(s *state) { s.report(msg, &r) })
}

// replyReport acknowledges a final report, with err nil, or rejects it.
func (c *Coordinator) replyReport(msg *nats.Msg, err error) {
	if msg.Reply == "" {
		return
	}
	var reply messages.ReportReply
	if err != nil {
		reply.Error = asAPIError(err)
	}
	if e := msg.Respond(messages.MustEncode(&reply)); e != nil {
		c.log.Warn("acknowledge worker report failed", slog.Any("error", e))
	}
}

// report applies a worker's report to its job.
func (s *state) report(msg *nats.Msg, r *messages.Report) {
	now := s.now()
	e := s.jobs[r.JobID]
	owned := e != nil && e.job.Worker == r.Worker && e.job.Attempt == r.Attempt

	if r.Kind == messages.ReportProgress || r.Kind == messages.ReportCancelStep {
		if !owned || e.job.Status != messages.StatusRunning {
			return
		}
		s.progress(e, r, now)
		return
	}

	switch {
	case s.broken:
		s.c.replyReport(msg, errBroken)
		return
	case !owned:
		s.c.replyReport(msg, messages.Errorf(messages.CodeStaleCommand, "job %s attempt %d is not assigned to worker %s", r.JobID, r.Attempt, r.Worker))
		return
	case e.job.Status.Final():
		// A repeated report whose acknowledgement was lost.
		s.c.replyReport(msg, nil)
		return
	case e.job.Status != messages.StatusRunning:
		s.c.replyReport(msg, messages.Errorf(messages.CodeStaleCommand, "job %s is %s, not running", r.JobID, e.job.Status))
		return
	}

	var (
		status messages.Status
		kind   messages.EventKind
	)
	switch r.Kind {
	case messages.ReportCompleted:
		status, kind = messages.StatusCompleted, messages.EventCompleted
		e.job.Result = r.Result
		e.job.Progress = 1
		if len(r.Result) > s.c.cfg.MaxPayloadBytes {
			status, kind = messages.StatusFailed, messages.EventFailed
			e.job.Result = nil
			e.job.Error = fmt.Sprintf("the result takes %d bytes: the limit is %d; write large results to a file and return its path", len(r.Result), s.c.cfg.MaxPayloadBytes)
		}
	case messages.ReportFailed:
		status, kind = messages.StatusFailed, messages.EventFailed
		e.job.Error = r.Error
	case messages.ReportCancelled:
		if e.job.CancelPhase == messages.CancelNone {
			// No client requested this cancel: the worker is shutting down.
			// The job goes back to the queue.
			s.requeue(e, fmt.Sprintf("worker %s stopped the job: %s", r.Worker, r.Error), now, requeueHandoff)
			s.c.replyReport(msg, nil)
			return
		}
		status, kind = messages.StatusCancelled, messages.EventCancelled
		e.job.Error = r.Error
		if r.CancelPhase != messages.CancelNone {
			e.job.CancelPhase = r.CancelPhase
		}
	default:
		s.c.replyReport(msg, messages.Errorf(messages.CodeInvalid, "unknown report kind %q: expected progress, cancel_step, completed, failed or cancelled", r.Kind))
		return
	}

	if r.StatusMessage != "" {
		e.job.StatusMessage = r.StatusMessage
	}
	if w := s.workers[r.Worker]; w != nil && len(e.gpus) > 0 && r.Time.After(w.gpuStaleSince) {
		w.gpuStaleSince = r.Time
	}
	s.finish(e, status, now)
	s.record(e, kind, func(err error) {
		if err != nil {
			err = messages.Errorf(messages.CodeUnavailable, "storing the report failed: %v; retry", err)
		}
		s.c.replyReport(msg, err)
	})
}

// progress records a progress value or cancel step; the event is rate
// limited per job, the latest value winning.
func (s *state) progress(e *jobEntry, r *messages.Report, now time.Time) {
	if r.Kind == messages.ReportCancelStep {
		// Steps of a cancel that no client requested (a worker shutting down) leave
		// the record alone: that job goes back to the queue.
		if e.job.CancelPhase != messages.CancelNone && r.CancelPhase != messages.CancelNone {
			e.job.CancelPhase = r.CancelPhase
			s.record(e, messages.EventCancelRequested, nil)
		}
		return
	}
	if messages.ValidateProgress(r.Progress) != nil {
		return
	}
	e.job.Progress = r.Progress
	e.job.StatusMessage = r.StatusMessage
	if now.Sub(e.lastProgress) >= s.c.cfg.ProgressInterval {
		delete(s.progressPending, e.job.ID)
		s.emitProgress(e, now)
		return
	}
	e.progressDirty = true
	s.progressPending[e.job.ID] = e
}

// rejectionHold is how long a worker that rejected a job gets no new jobs.
const rejectionHold = time.Second

// onDispatchReply handles a worker's reply to a run command. The reply
// subject ends in <job_id>.<attempt>.
func (c *Coordinator) onDispatchReply(msg *nats.Msg) {
	rest := strings.TrimPrefix(msg.Subject, c.dispatchInbox+".")
	id, attemptText, ok := strings.Cut(rest, ".")
	attempt, err := strconv.Atoi(attemptText)
	if !ok || err != nil {
		c.log.Warn("dropping a dispatch reply on an unexpected subject", slog.String("subject", msg.Subject))
		return
	}

	var rejection *messages.Error
	switch {
	case len(msg.Data) == 0 && msg.Header.Get("Status") == "503":
		rejection = messages.Errorf(messages.CodeUnavailable, "no worker listens on its command subject")
	default:
		var reply messages.CommandReply
		if err := messages.Decode(msg.Data, &reply); err != nil {
			rejection = messages.Errorf(messages.CodeBadRequest, "undecodable reply: %v", err)
		} else {
			rejection = reply.Error
		}
	}
	c.doState(func(s *state) { s.dispatchReply(id, attempt, rejection) })
}

func (s *state) dispatchReply(id string, attempt int, rejection *messages.Error) {
	e := s.jobs[id]
	if e == nil || e.job.Status != messages.StatusRunning || e.job.Attempt != attempt {
		return
	}
	if rejection == nil {
		e.accepted = true
		return
	}
	s.c.log.Warn("worker rejected a job", slog.String("job_id", id), slog.String("worker", e.job.Worker), slog.Any("error", rejection))
	if w := s.workers[e.job.Worker]; w != nil {
		// Give the worker a moment to send a fresh heartbeat, so the next
		// placement does not repeat the rejected one in a tight loop.
		w.holdUntil = s.now().Add(rejectionHold)
	}
	s.requeue(e, fmt.Sprintf("worker %s rejected the job: %s", e.job.Worker, rejection.Message), s.now(), requeueRejected)
}
