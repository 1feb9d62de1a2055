package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/messages"
	"github.com/jetqueue/jetqueue/worker"
)

var (
	buildOnce   sync.Once
	builtBinary string
	buildErr    error
)

// coordinatorBinary builds the jetqueue command once per test run.
func coordinatorBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "jetqueue-failover-bin")
		if err != nil {
			buildErr = err
			return
		}
		builtBinary = filepath.Join(dir, "jetqueue")
		out, err := exec.Command("go", "build", "-o", builtBinary, "../cmd/jetqueue").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build jetqueue: %v", buildErr)
	}
	return builtBinary
}

// coordinatorProcess is a `jetqueue coordinator` child process.
type coordinatorProcess struct {
	name string
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

func (e *env) startCoordinatorProcess(name string) *coordinatorProcess {
	e.t.Helper()
	cmd := exec.Command(coordinatorBinary(e.t), "coordinator", "--nats", e.url, "--name", name, "--log-level", "info")
	var logBuf bytes.Buffer
	cmd.Stderr = &syncWriter{w: &logBuf}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start coordinator %s: %v", name, err)
	}
	p := &coordinatorProcess{name: name, cmd: cmd, log: &logBuf}
	e.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if e.t.Failed() {
			e.t.Logf("log of coordinator %s:\n%s", name, p.log.String())
		}
	})
	return p
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// newServerEnv starts a server and a client, and no coordinator.
func newServerEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	e.startServer()
	e.nc = e.connect()
	c, err := client.New(e.nc, client.WithTimeout(2*time.Second), client.WithRetry(20*time.Second))
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	e.client = c
	return e
}

// leader returns the name of the coordinator that serves the state verb.
func (e *env) leader() string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := e.client.State(ctx, messages.StateRequest{PendingLimit: 1, HistoryLimit: 1})
	if err != nil {
		return ""
	}
	return st.Leader
}

// runCounter is a worker handler that counts runs per job.
type runCounter struct {
	mu   sync.Mutex
	runs map[string]int
}

func (r *runCounter) handler(ctx context.Context, job *messages.Job, _ worker.Reporter) (any, error) {
	r.mu.Lock()
	r.runs[job.ID]++
	r.mu.Unlock()
	select {
	case <-time.After(5 * time.Millisecond):
		return "ok", nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (r *runCounter) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runs[id]
}

// submitMany submits n jobs in batches and returns their ids.
func (e *env) submitMany(n int, plugin string) []string {
	e.t.Helper()
	var ids []string
	for len(ids) < n {
		size := min(50, n-len(ids))
		reqs := make([]messages.SubmitRequest, size)
		for i := range reqs {
			reqs[i] = messages.SubmitRequest{PluginName: plugin, Kwargs: messages.MustPayload(map[string]any{"i": len(ids) + i})}
		}
		results, err := e.client.SubmitBatch(context.Background(), reqs)
		if err != nil {
			e.t.Fatalf("SubmitBatch: %v", err)
		}
		for _, r := range results {
			if r.Error != nil {
				e.t.Fatalf("batch job: %v", r.Error)
			}
			ids = append(ids, r.ID)
		}
	}
	return ids
}

func TestLeaderKilledStandbyTakesOver(t *testing.T) {
	e := newServerEnv(t)
	c1 := e.startCoordinatorProcess("c1")
	e.eventually(20*time.Second, "c1 leads", func() bool { return e.leader() == "c1" })
	c2 := e.startCoordinatorProcess("c2")

	counter := &runCounter{runs: map[string]int{}}
	for _, name := range []string{"w1", "w2"} {
		e.startWorker(worker.Config{Name: name, MaxJobs: 4}, map[string]worker.Handler{"count": counter.handler})
	}

	ids := e.submitMany(250, "count")
	e.eventually(20*time.Second, "some jobs completed", func() bool {
		st, err := e.client.State(context.Background(), messages.StateRequest{PendingLimit: 1, HistoryLimit: 1})
		return err == nil && st.Stats.Completed >= 20
	})

	killed := time.Now()
	if err := c1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 the leader: %v", err)
	}
	e.eventually(20*time.Second, "c2 leads", func() bool { return e.leader() == c2.name })
	failover := time.Since(killed)
	t.Logf("failover after kill -9 of the leader: %s", failover)
	fmt.Printf("failover after kill -9 of the leader: %s\n", failover)

	ids = append(ids, e.submitMany(250, "count")...)
	for _, id := range ids {
		j := e.wait(id, 60*time.Second)
		if j.Status != messages.StatusCompleted {
			t.Fatalf("job %s ended %s: %s", id, j.Status, j.Error)
		}
		if n := counter.count(id); n != 1 {
			t.Fatalf("job %s ran %d times, want once (requeues %+v)", id, n, j.Requeues)
		}
	}
	if failover > 10*time.Second {
		t.Errorf("failover took %s, want within the 3s lease plus replay", failover)
	}
}

func TestDeposedLeaderCannotWrite(t *testing.T) {
	e := newServerEnv(t)
	c1 := e.startCoordinatorProcess("c1")
	e.eventually(20*time.Second, "c1 leads", func() bool { return e.leader() == "c1" })
	c2 := e.startCoordinatorProcess("c2")

	counter := &runCounter{runs: map[string]int{}}
	e.startWorker(worker.Config{Name: "w1", MaxJobs: 4}, map[string]worker.Handler{"count": counter.handler})
	first := e.submitMany(20, "count")
	for _, id := range first {
		e.wait(id, 20*time.Second)
	}

	// Pause the leader past its lease; a standby takes over meanwhile. The
	// paused leader still has heartbeats and reports queued for it, which it
	// acts on when it resumes, before it notices it lost the lease.
	if err := c1.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP: %v", err)
	}
	e.eventually(20*time.Second, "c2 leads", func() bool { return e.leader() == c2.name })
	second := e.submitMany(40, "count")
	if err := c1.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT: %v", err)
	}
	for _, id := range second {
		if j := e.wait(id, 30*time.Second); j.Status != messages.StatusCompleted {
			t.Fatalf("job %s ended %s: %s", id, j.Status, j.Error)
		}
	}
	e.eventually(10*time.Second, "c1 to step down", func() bool {
		return bytes.Contains(syncRead(c1), []byte("stepping down")) || bytes.Contains(syncRead(c1), []byte("is not the leader"))
	})

	// Every event after c2's leader event carries c2's term.
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(context.Background(), "JQ_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	cons, err := stream.OrderedConsumer(context.Background(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var fenceTerm uint64
	var afterFence, total int
	for seen := uint64(0); seen < info.State.Msgs; seen++ {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("read event %d of %d: %v", seen+1, info.State.Msgs, err)
		}
		var ev messages.Event
		if err := messages.Decode(msg.Data(), &ev); err != nil {
			t.Fatalf("decode event: %v", err)
		}
		total++
		if ev.Kind == messages.EventLeader && ev.Leader == c2.name {
			fenceTerm = ev.Term
			continue
		}
		if fenceTerm != 0 {
			afterFence++
			if ev.Term != fenceTerm || ev.Leader != c2.name {
				t.Fatalf("event %s of job %s written by %s in term %d after %s took over in term %d", ev.Kind, ev.Job.ID, ev.Leader, ev.Term, c2.name, fenceTerm)
			}
		}
	}
	if fenceTerm == 0 || afterFence == 0 {
		t.Fatalf("found no events after %s's leader event among %d", c2.name, total)
	}
	for _, id := range append(first, second...) {
		if n := counter.count(id); n != 1 {
			t.Fatalf("job %s ran %d times, want once", id, n)
		}
	}
}

func syncRead(p *coordinatorProcess) []byte {
	w := p.cmd.Stderr.(*syncWriter)
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.w.Bytes())
}
