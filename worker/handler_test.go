package worker

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

func TestHandlerResult(t *testing.T) {
	p, _ := newTestPlugins(t)
	err := p.AddHandler("double", messages.Resources{CPUs: 0.5}, func(ctx context.Context, job *messages.Job, r Reporter) (any, error) {
		v, err := job.Kwargs.Value()
		if err != nil {
			return nil, err
		}
		n, _ := asInt(v.(map[string]any)["n"])
		r.Progress(0.5, "halfway")
		r.Progress(2, "too far")
		r.Log(messages.LogPlugin, "info", "doubling")
		return map[string]any{"double": n * 2}, nil
	})
	if err != nil {
		t.Fatal(err)
	}

	rec := &recorder{}
	out := runJob(t, context.Background(), p, Task{Job: newJob(t, "double", map[string]any{"n": 21}), Reporter: rec})

	if n, _ := asInt(resultMap(t, out)["double"]); n != 42 {
		t.Errorf("result = %v, want double 42", resultMap(t, out))
	}
	if got := rec.progressValues(); !reflect.DeepEqual(got, []float64{0.5}) {
		t.Errorf("progress = %v, want [0.5]: 2 is out of range", got)
	}
	if _, ok := rec.findLog(messages.LogWorker, "progress 2 is out of range"); !ok {
		t.Errorf("job log %+v lacks the dropped progress warning", rec.logLines())
	}
	if _, ok := rec.findLog(messages.LogPlugin, "doubling"); !ok {
		t.Errorf("job log %+v lacks the handler's line", rec.logLines())
	}
	info := p.Info()
	if info[0].Mode != messages.ModeInProcess || info[0].Resources.CPUs != 0.5 || info[0].LastUsed.IsZero() {
		t.Errorf("Info = %+v, want an in-process plugin with cpus 0.5 and a last use", info)
	}
}

func TestHandlerError(t *testing.T) {
	p, _ := newTestPlugins(t)
	if err := p.AddHandler("fail", messages.Resources{}, func(context.Context, *messages.Job, Reporter) (any, error) {
		return nil, errors.New("input rejected")
	}); err != nil {
		t.Fatal(err)
	}

	out := runJob(t, context.Background(), p, Task{Job: newJob(t, "fail", nil)})

	wantStatus(t, out, messages.StatusFailed)
	if out.Error != "input rejected" {
		t.Errorf("error = %q, want the handler's", out.Error)
	}
}

func TestHandlerPanic(t *testing.T) {
	p, _ := newTestPlugins(t)
	if err := p.AddHandler("panic", messages.Resources{}, func(context.Context, *messages.Job, Reporter) (any, error) {
		panic("index out of range")
	}); err != nil {
		t.Fatal(err)
	}

	out := runJob(t, context.Background(), p, Task{Job: newJob(t, "panic", nil)})

	wantStatus(t, out, messages.StatusFailed)
	if !strings.Contains(out.Error, "handler panicked: index out of range") {
		t.Errorf("error = %q, want the panic value", out.Error)
	}
}

func TestHandlerCancel(t *testing.T) {
	p, _ := newTestPlugins(t)
	started := make(chan struct{})
	leaked := make(chan Reporter, 1)
	if err := p.AddHandler("wait", messages.Resources{}, func(ctx context.Context, job *messages.Job, r Reporter) (any, error) {
		close(started)
		leaked <- r
		<-ctx.Done()
		return nil, ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	rec, steps := &recorder{}, &phases{}
	done := runAsync(t, ctx, p, Task{Job: newJob(t, "wait", nil), Reporter: rec, CancelStep: steps.step})
	<-started
	cancel()

	var out Outcome
	select {
	case out = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the cancel")
	}
	wantStatus(t, out, messages.StatusCancelled)
	if got := steps.get(); !reflect.DeepEqual(got, []messages.CancelPhase{messages.CancelCooperative}) {
		t.Errorf("cancel phases = %v, want [cooperative]", got)
	}

	// A report through the handler's Reporter after Run returned is dropped.
	before := len(rec.logLines())
	(<-leaked).Log(messages.LogPlugin, "info", "too late")
	if len(rec.logLines()) != before {
		t.Errorf("a report after Run returned reached the job: %+v", rec.logLines())
	}
}

func TestHandlerResultNotEncodable(t *testing.T) {
	p, _ := newTestPlugins(t)
	if err := p.AddHandler("chan", messages.Resources{}, func(context.Context, *messages.Job, Reporter) (any, error) {
		return make(chan int), nil
	}); err != nil {
		t.Fatal(err)
	}

	out := runJob(t, context.Background(), p, Task{Job: newJob(t, "chan", nil)})

	wantStatus(t, out, messages.StatusFailed)
	if !strings.Contains(out.Error, "cannot be encoded as msgpack") {
		t.Errorf("error = %q, want an encoding error", out.Error)
	}
}
