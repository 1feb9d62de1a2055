package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetqueue/jetqueue/messages"
)

// runningJob is a job this worker holds, from its run command until the
// coordinator acknowledged its final report.
type runningJob struct {
	job     messages.Job
	attempt int
	cancel  context.CancelCauseFunc
	// ended is set once the plugin is done: the job then holds no slot,
	// only a final report that awaits its acknowledgement.
	ended bool
	// kill is closed to kill the job at once, when the worker lost contact
	// with the coordinator.
	kill   chan struct{}
	killed bool
}

// stop starts the cancel of the job; cause explains it in the report.
func (j *runningJob) stop(cause error) {
	j.cancel(cause)
}

// onCommand handles the coordinator's commands in the order they arrive.
func (w *Worker) onCommand(msg *nats.Msg) {
	var cmd messages.WorkerCommand
	if err := messages.Decode(msg.Data, &cmd); err != nil {
		w.log.Warn("dropping a command that does not decode", slog.Any("error", err))
		w.replyCommand(msg, err)
		return
	}
	if !w.currentTerm(cmd.Term) {
		w.log.Warn("rejecting a command of a deposed leader", slog.String("kind", cmd.Kind), slog.Uint64("term", cmd.Term))
		w.replyCommand(msg, messages.Errorf(messages.CodeStaleCommand, "term %d is older than the current leader's", cmd.Term))
		return
	}
	switch cmd.Kind {
	case messages.CommandRun:
		w.replyCommand(msg, w.startJob(&cmd))
	case messages.CommandCancel:
		w.cancelJob(cmd.JobID, cmd.Attempt)
	case messages.CommandEvict:
		if err := w.startEviction(msg, &cmd); err != nil {
			w.replyCommand(msg, err)
		}
	default:
		w.log.Warn("dropping a command of unknown kind", slog.String("kind", cmd.Kind))
		w.replyCommand(msg, messages.Errorf(messages.CodeInvalid, "unknown command kind %q: expected run, cancel or evict", cmd.Kind))
	}
}

// currentTerm records term and reports whether it is not older than the
// newest term seen.
func (w *Worker) currentTerm(term uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if term < w.term {
		return false
	}
	w.term = term
	return true
}

func (w *Worker) replyCommand(msg *nats.Msg, err error) {
	if msg.Reply == "" {
		return
	}
	var reply messages.CommandReply
	if err != nil {
		var apiErr *messages.Error
		if !errors.As(err, &apiErr) {
			apiErr = &messages.Error{Code: messages.CodeInternal, Message: err.Error()}
		}
		reply.Error = apiErr
	}
	if err := msg.Respond(messages.MustEncode(&reply)); err != nil {
		w.log.Warn("reply to command failed", slog.Any("error", err))
	}
}

// startJob accepts a run command and starts the job, or returns why not.
func (w *Worker) startJob(cmd *messages.WorkerCommand) error {
	if cmd.Job == nil {
		return messages.Errorf(messages.CodeInvalid, "run command without a job")
	}
	job := *cmd.Job
	if err := messages.ValidateJobID(job.ID); err != nil {
		return err
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopping {
		return messages.Errorf(messages.CodeUnavailable, "worker %s is stopping", w.cfg.Name)
	}
	if held, ok := w.jobs[job.ID]; ok {
		if held.attempt == job.Attempt {
			return nil // a repeated command
		}
		return messages.Errorf(messages.CodeConflict, "worker %s still runs attempt %d of job %s", w.cfg.Name, held.attempt, job.ID)
	}
	if _, ok := w.cancelled[job.ID]; ok {
		delete(w.cancelled, job.ID)
		return messages.Errorf(messages.CodeConflict, "job %s was cancelled before it reached worker %s", job.ID, w.cfg.Name)
	}
	if w.active >= w.cfg.MaxJobs {
		return messages.Errorf(messages.CodeWorkerFull, "worker %s runs %d of %d jobs", w.cfg.Name, w.active, w.cfg.MaxJobs)
	}
	slot, err := w.plugins.Acquire(job.PluginName)
	switch {
	case errors.Is(err, ErrPluginBusy):
		return messages.Errorf(messages.CodeWorkerFull, "%v", err)
	case err != nil:
		return messages.Errorf(messages.CodeInvalid, "%v", err)
	}

	ctx, cancel := context.WithCancelCause(context.Background())
	j := &runningJob{job: job, attempt: job.Attempt, cancel: cancel, kill: make(chan struct{})}
	w.jobs[job.ID] = j
	w.active++
	w.jobsDone.Add(1)
	go w.runJob(ctx, j, slot, cmd.GPUs)
	w.requestProbe()
	return nil
}

// cancelJob cancels a held job, or remembers the cancel for a job whose run
// command has not arrived.
func (w *Worker) cancelJob(id string, attempt int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	j, ok := w.jobs[id]
	if !ok {
		w.cancelled[id] = time.Now()
		return
	}
	if (attempt != 0 && j.attempt != attempt) || j.ended {
		return
	}
	w.log.Info("cancelling job", slog.String("job_id", id), slog.Int("attempt", j.attempt))
	j.stop(errCancelRequested)
}

var errCancelRequested = errors.New("cancelled on request")

// runJob runs one job to its end and reports the outcome. For a job that
// had GPUs, the final report first waits until the job's ended processes
// left them, then for a probe taken after that, which a heartbeat follows.
// So the coordinator never offers GPU memory that the job still fills.
// After any job, a probe and a heartbeat follow.
func (w *Worker) runJob(ctx context.Context, j *runningJob, slot *Slot, gpus []int) {
	defer w.jobsDone.Done()
	log := w.log.With(slog.String("job_id", j.job.ID), slog.String("plugin", j.job.PluginName), slog.Int("attempt", j.attempt))
	log.Info("job started", slog.Any("gpus", gpus))
	began := time.Now()

	rep := newReporter(w, j)
	outcome := slot.Run(ctx, Task{
		Job:        &j.job,
		GPUs:       gpus,
		Reporter:   rep,
		CancelStep: rep.cancelStep,
		Kill:       j.kill,
	})
	rep.close()
	w.mu.Lock()
	j.ended = true
	w.active--
	w.mu.Unlock()

	report := messages.Report{
		V:       messages.ProtocolVersion,
		Worker:  w.cfg.Name,
		JobID:   j.job.ID,
		Attempt: j.attempt,
		Time:    time.Now(),
		Error:   outcome.Error,
	}
	switch outcome.Status {
	case messages.StatusCompleted:
		report.Kind = messages.ReportCompleted
		report.Result = outcome.Result
		report.Progress = 1
	case messages.StatusCancelled:
		report.Kind = messages.ReportCancelled
		report.CancelPhase = rep.phase()
		if cause := context.Cause(ctx); cause != nil && report.Error == "" {
			report.Error = cause.Error()
		}
	default:
		report.Kind = messages.ReportFailed
	}
	log.Info("job ended", slog.String("status", string(outcome.Status)), slog.Duration("took", time.Since(began)), slog.String("error", outcome.Error))

	rep.flushLogs()
	if len(gpus) > 0 {
		w.waitGPURelease(outcome.ReleasePIDs, log)
		w.awaitProbe()
	}
	w.deliver(&report, log)

	w.mu.Lock()
	delete(w.jobs, j.job.ID)
	w.mu.Unlock()
	w.requestProbe()
}

// retryableReport reports whether a rejected final report should be sent
// again: the coordinator failed to store it, or no longer leads.
func retryableReport(code messages.ErrorCode) bool {
	return code == messages.CodeUnavailable || code == messages.CodeInternal || code == messages.CodeNotLeader
}

// deliver sends a final report until the coordinator acknowledges or
// rejects it, or ReportDeadline passes.
func (w *Worker) deliver(r *messages.Report, log *slog.Logger) {
	data := messages.MustEncode(r)
	deadline := time.Now().Add(w.cfg.ReportDeadline)
	backoff := 100 * time.Millisecond
	for tries := 1; ; tries++ {
		msg, err := w.nc.Request(w.subj.Report(), data, w.cfg.ReportTimeout)
		if err == nil {
			var reply messages.ReportReply
			if err = messages.Decode(msg.Data, &reply); err == nil {
				switch {
				case reply.Error == nil:
					return
				case retryableReport(reply.Error.Code):
					// The coordinator could not store the report, as while it
					// rebuilds its state; the report still counts.
					err = reply.Error
				default:
					log.Warn("coordinator rejected the final report", slog.Any("error", reply.Error))
					return
				}
			}
		}
		if time.Now().After(deadline) || w.nc.IsClosed() {
			log.Error("giving up on the final report", slog.Int("tries", tries), slog.Bool("connection_closed", w.nc.IsClosed()), slog.Any("error", err))
			return
		}
		if tries == 1 || tries%10 == 0 {
			log.Warn("final report not acknowledged; retrying", slog.Int("tries", tries), slog.Any("error", err))
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
}

// reporter forwards a job's progress to the coordinator, at most once per
// ProgressInterval with the latest value winning, and its log lines to
// JQ_LOGS.
type reporter struct {
	w   *Worker
	job *runningJob

	mu          sync.Mutex
	last        time.Time
	pending     *messages.Report
	timer       *time.Timer
	cancelPhase messages.CancelPhase
	closed      bool
	logErrors   int
}

func newReporter(w *Worker, j *runningJob) *reporter {
	return &reporter{w: w, job: j}
}

// Progress implements Reporter.
func (r *reporter) Progress(progress float64, message string) {
	rep := &messages.Report{
		V: messages.ProtocolVersion, Kind: messages.ReportProgress, Worker: r.w.cfg.Name,
		JobID: r.job.job.ID, Attempt: r.job.attempt, Time: time.Now(),
		Progress: progress, StatusMessage: message,
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	wait := r.w.cfg.ProgressInterval - time.Since(r.last)
	if wait <= 0 {
		r.last = time.Now()
		r.publish(rep)
		return
	}
	r.pending = rep
	if r.timer == nil {
		r.timer = time.AfterFunc(wait, r.flushProgress)
	}
}

func (r *reporter) flushProgress() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timer = nil
	if r.pending == nil || r.closed {
		return
	}
	r.last = time.Now()
	r.publish(r.pending)
	r.pending = nil
}

// publish sends a progress report; the caller holds r.mu.
func (r *reporter) publish(rep *messages.Report) {
	if err := r.w.nc.Publish(r.w.subj.Report(), messages.MustEncode(rep)); err != nil {
		r.w.log.Warn("send progress failed", slog.String("job_id", rep.JobID), slog.Any("error", err))
	}
}

// Log implements Reporter.
func (r *reporter) Log(stream messages.LogStream, level, text string) {
	line := messages.LogLine{
		JobID: r.job.job.ID, Attempt: r.job.attempt, Time: time.Now(),
		Stream: stream, Level: level, Text: text,
	}
	msg := nats.NewMsg(r.w.subj.Log(line.JobID))
	msg.Data = messages.MustEncode(&line)
	if _, err := r.w.js.PublishMsgAsync(msg); err != nil {
		r.mu.Lock()
		r.logErrors++
		n := r.logErrors
		r.mu.Unlock()
		if n == 1 || n%1000 == 0 {
			r.w.log.Warn("publish log line failed", slog.String("job_id", line.JobID), slog.Int("failures", n), slog.Any("error", err))
		}
	}
}

// cancelStep reports how far a cancel has escalated.
func (r *reporter) cancelStep(phase messages.CancelPhase) {
	r.mu.Lock()
	r.cancelPhase = phase
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return
	}
	rep := &messages.Report{
		V: messages.ProtocolVersion, Kind: messages.ReportCancelStep, Worker: r.w.cfg.Name,
		JobID: r.job.job.ID, Attempt: r.job.attempt, Time: time.Now(), CancelPhase: phase,
	}
	if err := r.w.nc.Publish(r.w.subj.Report(), messages.MustEncode(rep)); err != nil {
		r.w.log.Warn("send cancel step failed", slog.String("job_id", rep.JobID), slog.Any("error", err))
	}
}

func (r *reporter) phase() messages.CancelPhase {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cancelPhase
}

// close drops progress that has not been sent: the final report supersedes it.
func (r *reporter) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.pending = nil
	if r.timer != nil {
		r.timer.Stop()
	}
}

// flushLogs waits, briefly, until JetStream stored the job's log lines, so
// the log is complete when the job's final status is visible.
func (r *reporter) flushLogs() {
	select {
	case <-r.w.js.PublishAsyncComplete():
	case <-time.After(5 * time.Second):
		r.w.log.Warn("log lines not acknowledged within 5s", slog.String("job_id", r.job.job.ID))
	}
}
