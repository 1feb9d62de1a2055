package test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/coordinator"
	"github.com/jetqueue/jetqueue/messages"
	"github.com/jetqueue/jetqueue/worker"
)

func TestDispatchOrderByPriorityThenSeq(t *testing.T) {
	e := newEnv(t, nil)
	g := newGate()
	e.startWorker(worker.Config{Name: "w1", MaxJobs: 1}, map[string]worker.Handler{"gate": g.handler})

	blocker := e.submit("gate", nil)
	e.waitStatus(blocker, messages.StatusRunning, 10*time.Second)

	priorities := []int{0, 5, 5, 10, 0}
	ids := make([]string, len(priorities))
	for i, p := range priorities {
		ids[i] = e.submit("gate", map[string]any{"i": i}, client.Priority(p))
	}
	g.open()
	for _, id := range ids {
		if j := e.wait(id, 20*time.Second); j.Status != messages.StatusCompleted {
			t.Fatalf("job %s ended %s: %s", id, j.Status, j.Error)
		}
	}

	want := []string{blocker, ids[3], ids[1], ids[2], ids[0], ids[4]}
	if got := g.order(); !slices.Equal(got, want) {
		t.Fatalf("start order:\n got %v\nwant %v", got, want)
	}
}

func TestDispatchOrderFIFOWithinPriorityInOneBatch(t *testing.T) {
	e := newEnv(t, nil)
	g := newGate()
	e.startWorker(worker.Config{Name: "w1", MaxJobs: 1}, map[string]worker.Handler{"gate": g.handler})
	blocker := e.submit("gate", nil)
	e.waitStatus(blocker, messages.StatusRunning, 10*time.Second)

	// One batch creates every job within the same millisecond or so, so
	// only the submission sequence can order them.
	const n = 60
	reqs := make([]messages.SubmitRequest, n)
	for i := range reqs {
		reqs[i] = messages.SubmitRequest{PluginName: "gate", Priority: i % 3, Kwargs: messages.MustPayload(map[string]any{"i": i})}
	}
	results, err := e.client.SubmitBatch(context.Background(), reqs)
	if err != nil {
		t.Fatalf("SubmitBatch: %v", err)
	}
	var want []string
	for p := 2; p >= 0; p-- {
		for i, r := range results {
			if r.Error != nil {
				t.Fatalf("batch job %d: %v", i, r.Error)
			}
			if i%3 == p {
				want = append(want, r.ID)
			}
		}
	}
	created := map[time.Time]int{}
	for _, r := range results[:5] {
		created[e.get(r.ID).CreatedAt.Truncate(time.Millisecond)]++
	}

	g.open()
	for _, r := range results {
		e.wait(r.ID, 20*time.Second)
	}
	got := g.order()[1:]
	if !slices.Equal(got, want) {
		t.Fatalf("start order of %d batch jobs differs from priority then submission order:\n got %v\nwant %v", n, got, want)
	}
	t.Logf("first 5 jobs share %d distinct creation milliseconds", len(created))
}

func TestReorderPendingJob(t *testing.T) {
	e := newEnv(t, nil)
	g := newGate()
	e.startWorker(worker.Config{Name: "w1", MaxJobs: 1}, map[string]worker.Handler{"gate": g.handler})
	blocker := e.submit("gate", nil)
	e.waitStatus(blocker, messages.StatusRunning, 10*time.Second)

	a := e.submit("gate", nil, client.Priority(1))
	b := e.submit("gate", nil, client.Priority(1))
	moved, err := e.client.Reorder(context.Background(), b, 7)
	if err != nil {
		t.Fatalf("Reorder: %v", err)
	}
	if moved.Priority != 7 {
		t.Fatalf("reordered job has priority %d, want 7", moved.Priority)
	}

	st, err := e.client.State(context.Background(), messages.StateRequest{})
	if err != nil {
		t.Fatalf("State: %v", err)
	}
	if len(st.Pending) != 2 || st.Pending[0].Job.ID != b || st.Pending[0].Position != 1 {
		t.Fatalf("pending after reorder = %+v, want %s first", st.Pending, b)
	}

	_, err = e.client.Reorder(context.Background(), blocker, 3)
	if code := messages.CodeOf(err); code != messages.CodeConflict {
		t.Fatalf("reorder of a running job: code %s (%v), want conflict", code, err)
	}
	unknown := "0190c1a2-7b3c-7d4e-8f90-123456789abc"
	_, err = e.client.Reorder(context.Background(), unknown, 3)
	if code := messages.CodeOf(err); code != messages.CodeNotFound {
		t.Fatalf("reorder of an unknown job: code %s (%v), want not_found", code, err)
	}

	g.open()
	e.wait(a, 10*time.Second)
	e.wait(b, 10*time.Second)
	if got := g.order(); !slices.Equal(got, []string{blocker, b, a}) {
		t.Fatalf("start order after reorder = %v, want %v", got, []string{blocker, b, a})
	}
}

func TestCancelPendingAndRunning(t *testing.T) {
	e := newEnv(t, nil)
	g := newGate()
	e.startWorker(worker.Config{Name: "w1", MaxJobs: 1}, map[string]worker.Handler{"gate": g.handler})
	running := e.submit("gate", nil)
	e.waitStatus(running, messages.StatusRunning, 10*time.Second)
	pending := e.submit("gate", nil)

	j, err := e.client.Cancel(context.Background(), pending)
	if err != nil {
		t.Fatalf("cancel pending: %v", err)
	}
	if j.Status != messages.StatusCancelled {
		t.Fatalf("cancelled pending job has status %s, want cancelled at once", j.Status)
	}

	if _, err := e.client.Cancel(context.Background(), running); err != nil {
		t.Fatalf("cancel running: %v", err)
	}
	final := e.wait(running, 10*time.Second)
	if final.Status != messages.StatusCancelled {
		t.Fatalf("cooperatively cancelled job ended %s (%s), want cancelled", final.Status, final.Error)
	}

	_, err = e.client.Cancel(context.Background(), running)
	if code := messages.CodeOf(err); code != messages.CodeConflict {
		t.Fatalf("second cancel: code %s (%v), want conflict", code, err)
	}
	if got := g.order(); slices.Contains(got, pending) {
		t.Fatalf("the job cancelled while pending started anyway")
	}
}

func TestProgressBelongsToOneJob(t *testing.T) {
	e := newEnv(t, nil)
	step := make(chan struct{})
	handler := func(ctx context.Context, job *messages.Job, r worker.Reporter) (any, error) {
		r.Progress(0.5, "half")
		r.Log(messages.LogPlugin, "info", "line of "+job.ID)
		select {
		case <-step:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		r.Progress(0.9, "almost")
		return "done", nil
	}
	e.startWorker(worker.Config{Name: "w1", MaxJobs: 1}, map[string]worker.Handler{"steps": handler})

	first := e.submit("steps", nil)
	e.eventually(10*time.Second, "first job at progress 0.5", func() bool { return e.get(first).Progress == 0.5 })
	second := e.submit("steps", nil)
	step <- struct{}{}
	done := e.wait(first, 10*time.Second)
	if done.Progress != 1 {
		t.Fatalf("completed job progress = %v, want 1", done.Progress)
	}

	j := e.waitStatus(second, messages.StatusRunning, 10*time.Second)
	if j.Progress != 0 && j.Progress != 0.5 {
		t.Fatalf("second job started with progress %v, want 0 (or its own 0.5)", j.Progress)
	}
	close(step)
	e.wait(second, 10*time.Second)

	for _, id := range []string{first, second} {
		logs, err := e.client.Logs(context.Background(), id, 0)
		if err != nil {
			t.Fatalf("logs of %s: %v", id, err)
		}
		if len(logs.Lines) == 0 {
			t.Fatalf("job %s has no log lines", id)
		}
		for _, l := range logs.Lines {
			if l.JobID != id || l.Text != "line of "+id {
				t.Fatalf("log of job %s contains a line of another job: %+v", id, l)
			}
		}
	}
}

func TestUnknownPluginWaitsWithReason(t *testing.T) {
	e := newEnv(t, nil)
	g := newGate()
	e.startWorker(worker.Config{Name: "w1", MaxJobs: 2}, map[string]worker.Handler{"gate": g.handler})
	defer g.open()

	id := e.submit("whisper", nil, client.Priority(100))
	e.eventually(5*time.Second, "a pending reason about the plugin", func() bool {
		return e.get(id).PendingReason == "no connected worker provides plugin whisper"
	})

	// The unknown plugin's job does not hold up others behind it.
	other := e.submit("gate", nil)
	e.waitStatus(other, messages.StatusRunning, 10*time.Second)
	if j := e.get(id); j.Status != messages.StatusPending {
		t.Fatalf("job of unknown plugin is %s, want pending", j.Status)
	}
}

func TestMalformedRequestsGetErrors(t *testing.T) {
	e := newEnv(t, nil)
	e.startWorker(worker.Config{Name: "w1", MaxJobs: 2}, map[string]worker.Handler{
		"echo": func(ctx context.Context, job *messages.Job, r worker.Reporter) (any, error) { return "ok", nil },
	})

	bodies := [][]byte{{0xc1}, []byte("not msgpack"), {0x81, 0xa2, 'i', 'd'}, {0xdf, 0xff, 0xff, 0xff, 0xff}}
	for _, verb := range messages.Verbs {
		for _, body := range bodies {
			msg, err := e.nc.Request(e.client.Subjects().API(verb), body, 5*time.Second)
			if err != nil {
				t.Fatalf("%s with body %x: %v", verb, body, err)
			}
			code := msg.Header.Get("Nats-Service-Error-Code")
			if code == "" && verb != messages.VerbState && verb != messages.VerbWorkers {
				t.Fatalf("%s with body %x: no error header, reply %x", verb, body, msg.Data)
			}
			if code != "" {
				var apiErr messages.Error
				if err := messages.Decode(msg.Data, &apiErr); err != nil || apiErr.Message == "" {
					t.Fatalf("%s with body %x: error body %x does not decode to an error: %v", verb, body, msg.Data, err)
				}
			}
		}
	}

	bad := []messages.SubmitRequest{
		{PluginName: "bad.name"},
		{PluginName: "echo", Priority: 1 << 40},
		{PluginName: "echo", Kwargs: make(messages.Payload, 300<<10)},
	}
	for _, r := range bad {
		_, err := e.client.SubmitRequest(context.Background(), r)
		var apiErr *messages.Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("submit %+v: got %v, want an API error", r.PluginName, err)
		}
	}

	id := e.submit("echo", nil)
	if j := e.wait(id, 10*time.Second); j.Status != messages.StatusCompleted {
		t.Fatalf("good job after bad requests ended %s", j.Status)
	}
}

func TestCoordinatorRestartKeepsQueue(t *testing.T) {
	e := newEnv(t, nil)
	var ids []string
	for i := range 20 {
		ids = append(ids, e.submit("later", map[string]any{"i": i}, client.Priority(i%4)))
	}
	stopCoordinator(t, e.coord)
	e.startCoordinator(nil)

	st, err := e.client.State(context.Background(), messages.StateRequest{})
	if err != nil {
		t.Fatalf("State after restart: %v", err)
	}
	if len(st.Pending) != len(ids) {
		t.Fatalf("pending after restart = %d, want %d", len(st.Pending), len(ids))
	}
	for i := 1; i < len(st.Pending); i++ {
		a, b := st.Pending[i-1].Job, st.Pending[i].Job
		if a.Priority < b.Priority || (a.Priority == b.Priority && a.Seq > b.Seq) {
			t.Fatalf("pending order broken at %d after restart: %d/%d before %d/%d", i, a.Priority, a.Seq, b.Priority, b.Seq)
		}
	}

	g := newGate()
	g.open()
	e.startWorker(worker.Config{Name: "w1", MaxJobs: 4}, map[string]worker.Handler{"later": g.handler})
	for _, id := range ids {
		if j := e.wait(id, 20*time.Second); j.Status != messages.StatusCompleted {
			t.Fatalf("job %s ended %s after restart", id, j.Status)
		}
	}
	next := e.submit("later", nil)
	if j := e.get(next); j.Seq <= uint64(len(ids)) {
		t.Fatalf("seq after restart = %d, want > %d", j.Seq, len(ids))
	}
}

func TestLostWorkerJobIsRequeued(t *testing.T) {
	e := newEnv(t, func(c *coordinator.Config) { c.WorkerLease = time.Second })
	g := newGate()
	nc := e.connect()
	w, err := worker.New(nc, worker.Config{Name: "doomed", MaxJobs: 1, HeartbeatInterval: 100 * time.Millisecond, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Handle("gate", messages.Resources{}, g.handler); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.waitWorker("doomed")
	id := e.submit("gate", nil)
	// The job counts as an attempt only once the worker runs it.
	e.eventually(10*time.Second, "the job to run on the doomed worker", func() bool { return len(g.order()) == 1 })

	// Cut the worker off: its heartbeats stop, its job keeps "running" there.
	nc.Close()
	defer func() { _ = w.Stop(context.Background()) }()

	e.startWorker(worker.Config{Name: "rescuer", MaxJobs: 1}, map[string]worker.Handler{"gate": func(ctx context.Context, job *messages.Job, r worker.Reporter) (any, error) {
		return fmt.Sprint("attempt ", job.Attempt), nil
	}})
	j := e.wait(id, 15*time.Second)
	if j.Status != messages.StatusCompleted || j.Worker != "rescuer" || j.Attempt != 2 {
		t.Fatalf("job after worker loss: status %s worker %s attempt %d, want completed on rescuer attempt 2", j.Status, j.Worker, j.Attempt)
	}
	if len(j.Requeues) != 1 || j.Requeues[0].Worker != "doomed" {
		t.Fatalf("requeues = %+v, want one from worker doomed", j.Requeues)
	}
	g.open()
}

func TestCancelRacingDispatchNeverLeavesJobRunning(t *testing.T) {
	e := newEnv(t, nil)
	var mu sync.Mutex
	active := map[string]bool{}
	handler := func(ctx context.Context, job *messages.Job, r worker.Reporter) (any, error) {
		mu.Lock()
		active[job.ID] = true
		mu.Unlock()
		defer func() {
			mu.Lock()
			delete(active, job.ID)
			mu.Unlock()
		}()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	e.startWorker(worker.Config{Name: "w1", MaxJobs: 4}, map[string]worker.Handler{"forever": handler})

	// Each cancel follows its submit at once, so it meets the job pending,
	// in the middle of its dispatch, or running.
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.submit("forever", nil)
		if _, err := e.client.Cancel(context.Background(), ids[i]); err != nil {
			t.Fatalf("cancel %d: %v", i, err)
		}
	}
	for _, id := range ids {
		if j := e.wait(id, 20*time.Second); j.Status != messages.StatusCancelled {
			t.Fatalf("job %s ended %s, want cancelled", id, j.Status)
		}
	}
	e.eventually(10*time.Second, "no handler still running", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(active) == 0
	})
	st, err := e.client.State(context.Background(), messages.StateRequest{})
	if err != nil {
		t.Fatalf("State: %v", err)
	}
	if len(st.Running) != 0 {
		t.Fatalf("%d jobs still running after every cancel", len(st.Running))
	}
}
