package worker

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

// handlerReturn is the return value of an in-process handler.
type handlerReturn struct {
	result any
	err    error
}

// runHandler runs an in-process handler in its own goroutine. A cancel
// cancels the handler's context. A goroutine cannot be killed, so Run waits
// for the handler to return, and logs a warning when that takes longer than
// DefaultCancelTimeout.
func (p *Plugins) runHandler(ctx context.Context, pl *plugin, t Task) Outcome {
	reporter := &handlerReporter{r: t.Reporter}
	defer reporter.close()

	hctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	returned := make(chan handlerReturn, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				p.logger.Error("plugin handler panicked", "job_id", t.Job.ID, "plugin", pl.name, "attempt", t.Job.Attempt, "error", v, "stack", string(debug.Stack()))
				returned <- handlerReturn{err: fmt.Errorf("handler panicked: %v", v)}
			}
		}()
		result, err := pl.handler(hctx, t.Job, reporter)
		returned <- handlerReturn{result: result, err: err}
	}()

	cancelled := ctx.Done()
	var overdue <-chan time.Time
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-cancelled:
			cancelled = nil
			cancel()
			if t.CancelStep != nil {
				t.CancelStep(messages.CancelCooperative)
			}
			t.Reporter.Log(messages.LogWorker, "info", "cancel requested: cancelled the handler's context")
			p.logger.Info("plugin job cancel step", "job_id", t.Job.ID, "plugin", pl.name, "attempt", t.Job.Attempt, "phase", messages.CancelCooperative)
			timer = time.NewTimer(DefaultCancelTimeout)
			overdue = timer.C

		case <-overdue:
			overdue = nil
			text := fmt.Sprintf("handler has not returned %v after its context was cancelled; an in-process handler cannot be killed, so the job keeps its slot until it returns", DefaultCancelTimeout)
			t.Reporter.Log(messages.LogWorker, "warning", text)
			p.logger.Warn(text, "job_id", t.Job.ID, "plugin", pl.name, "attempt", t.Job.Attempt)

		case ret := <-returned:
			return handlerOutcome(pl.name, ret, hctx.Err() != nil)
		}
	}
}

// handlerOutcome turns a handler's return into an Outcome. An error after
// the context was cancelled means the job was cancelled.
func handlerOutcome(name string, ret handlerReturn, cancelled bool) Outcome {
	if ret.err != nil {
		if cancelled {
			return Outcome{Status: messages.StatusCancelled, Error: ret.err.Error()}
		}
		return Outcome{Status: messages.StatusFailed, Error: ret.err.Error()}
	}

	result, err := messages.NewPayload(ret.result)
	if err != nil {
		return failed("handler of plugin %q returned a result that cannot be encoded as msgpack: %v", name, err)
	}
	return Outcome{Status: messages.StatusCompleted, Result: result}
}

// handlerReporter passes a handler's reports on until the job ends, and
// drops progress values outside -1 and 0..1 with a warning log line.
type handlerReporter struct {
	r Reporter

	mu     sync.Mutex
	closed bool
}

func (h *handlerReporter) Progress(progress float64, message string) {
	h.mu.Lock()
	defer h.mu.Unlock()

	if h.closed {
		return
	}
	if err := messages.ValidateProgress(progress); err != nil {
		h.r.Log(messages.LogWorker, "warning", fmt.Sprintf("progress from the handler dropped: %v", err))
		return
	}
	h.r.Progress(progress, message)
}

func (h *handlerReporter) Log(stream messages.LogStream, level, text string) {
	h.mu.Lock()
	defer h.mu.Unlock()

	if !h.closed {
		h.r.Log(stream, level, text)
	}
}

// close drops every later report: a handler's leftover goroutines cannot
// write into the next job.
func (h *handlerReporter) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
}
