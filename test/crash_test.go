package test

import (
	"context"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/coordinator"
	"github.com/jetqueue/jetqueue/internal/embedded"
	"github.com/jetqueue/jetqueue/messages"
	"github.com/jetqueue/jetqueue/worker"
)

// stallProxy forwards TCP connections to a target and can stall them: while
// stalled it holds every byte, and the connections stay open, as in a
// network partition that no side notices at once.
type stallProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	open   chan struct{} // closed while traffic flows
	conns  []net.Conn
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target, open: make(chan struct{})}
	close(p.open)
	go p.accept()
	t.Cleanup(func() {
		p.resume()
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	return p
}

func (p *stallProxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *stallProxy) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		go p.pipe(out, in)
		go p.pipe(in, out)
	}
}

func (p *stallProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			open := p.open
			p.mu.Unlock()
			<-open
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			}
			return
		}
	}
}

func (p *stallProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open = make(chan struct{})
}

func (p *stallProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
	default:
		close(p.open)
	}
}

// runLog records when each worker ran each job.
type runLog struct {
	mu   sync.Mutex
	runs []run
}

type run struct {
	worker, job string
	start, end  time.Time
}

func (l *runLog) handler(name string, hold bool) worker.Handler {
	return func(ctx context.Context, job *messages.Job, _ worker.Reporter) (any, error) {
		l.mu.Lock()
		i := len(l.runs)
		l.runs = append(l.runs, run{worker: name, job: job.ID, start: time.Now()})
		l.mu.Unlock()
		defer func() {
			l.mu.Lock()
			l.runs[i].end = time.Now()
			l.mu.Unlock()
		}()
		if !hold {
			return name, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Minute):
			return name, nil
		}
	}
}

func (l *runLog) all() []run {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]run(nil), l.runs...)
}

func TestPartitionedWorkerStopsJobBeforeRequeue(t *testing.T) {
	e := newEnv(t, func(c *coordinator.Config) { c.WorkerLease = 2 * time.Second })
	proxy := newStallProxy(t, strings.TrimPrefix(e.url, "nats://"))
	runs := &runLog{}

	nc, err := nats.Connect(proxy.url(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	cut, err := worker.New(nc, worker.Config{Name: "cut", MaxJobs: 1, HeartbeatInterval: 200 * time.Millisecond, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := cut.Handle("hold", messages.Resources{}, runs.handler("cut", true)); err != nil {
		t.Fatal(err)
	}
	if err := cut.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = cut.Stop(ctx)
	})
	e.waitWorker("cut")

	id := e.submit("hold", nil)
	e.eventually(10*time.Second, "the job to run on the cut-off worker", func() bool {
		j := e.get(id)
		return j.Status == messages.StatusRunning && len(runs.all()) == 1
	})
	e.startWorker(worker.Config{Name: "spare", MaxJobs: 1}, map[string]worker.Handler{"hold": runs.handler("spare", false)})

	proxy.stall()
	j := e.wait(id, 20*time.Second)
	proxy.resume()

	if j.Status != messages.StatusCompleted || j.Worker != "spare" {
		t.Fatalf("job ended %s on %s, want completed on spare", j.Status, j.Worker)
	}
	if len(j.Requeues) != 1 || !strings.Contains(j.Requeues[0].Reason, "lost") {
		t.Fatalf("requeues = %+v, want one for the lost worker", j.Requeues)
	}
	all := runs.all()
	if len(all) != 2 || all[0].worker != "cut" || all[1].worker != "spare" {
		t.Fatalf("runs = %+v, want one on cut then one on spare", all)
	}
	if all[0].end.IsZero() || !all[0].end.Before(all[1].start) {
		t.Fatalf("the cut-off run ended at %s, not before the new run started at %s: two copies ran at once",
			all[0].end.Format(time.StampMicro), all[1].start.Format(time.StampMicro))
	}
	t.Logf("cut-off run stopped %s before the new run started", all[1].start.Sub(all[0].end))
}

func TestWorkerKilledJobRunsElsewhere(t *testing.T) {
	const lease = 3 * time.Second
	e := newEnv(t, func(c *coordinator.Config) { c.WorkerLease = lease })
	cmd := exec.Command(coordinatorBinary(t), "worker", "--nats", e.url, "--name", "doomed", "--plugins", pluginsDir, "--max-jobs", "1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	e.waitWorker("doomed")

	id := e.submit("sleep", map[string]any{"seconds": 60})
	// Progress shows that the plugin runs the job, not only that it was sent.
	e.eventually(20*time.Second, "the job to report progress", func() bool { return e.get(id).Progress > 0 })
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()

	runs := &runLog{}
	e.startWorker(worker.Config{Name: "rescuer", MaxJobs: 1}, map[string]worker.Handler{"sleep": runs.handler("rescuer", false)})
	j := e.wait(id, 30*time.Second)
	if j.Status != messages.StatusCompleted || j.Worker != "rescuer" || j.Attempt != 2 {
		t.Fatalf("job ended %s on %s attempt %d, want completed on rescuer attempt 2", j.Status, j.Worker, j.Attempt)
	}
	if len(j.Requeues) != 1 || !strings.Contains(j.Requeues[0].Reason, "worker doomed lost") || j.WorkerLosses != 1 {
		t.Fatalf("requeues = %+v, worker losses %d, want one loss of worker doomed", j.Requeues, j.WorkerLosses)
	}
	if after := j.Requeues[0].Time.Sub(killed); after > lease+2*time.Second {
		t.Fatalf("re-queued %s after the kill, want within the %s lease + 2s", after, lease)
	}
}

func TestNATSRestartLosesNothing(t *testing.T) {
	e := newEnv(t, nil)
	runs := &runLog{}
	e.startWorker(worker.Config{Name: "w1", MaxJobs: 2}, map[string]worker.Handler{"quick": func(ctx context.Context, job *messages.Job, r worker.Reporter) (any, error) {
		time.Sleep(20 * time.Millisecond)
		return runs.handler("w1", false)(ctx, job, r)
	}})

	var ids []string
	for i := range 30 {
		ids = append(ids, e.submit("quick", map[string]any{"i": i}))
	}

	addr := strings.TrimPrefix(e.url, "nats://")
	e.server.Shutdown()
	e.server.WaitForShutdown()
	ns, err := embedded.Start(embedded.Options{Listen: addr, DataDir: e.dir})
	if err != nil {
		t.Fatalf("restart nats-server on %s: %v", addr, err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})

	for i := range 10 {
		id, err := e.client.Submit(context.Background(), "quick", map[string]any{"after": i}, client.Priority(1))
		if err != nil {
			t.Fatalf("submit after the restart: %v", err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		if j := e.wait(id, 60*time.Second); j.Status != messages.StatusCompleted {
			t.Fatalf("job %s ended %s: %s", id, j.Status, j.Error)
		}
	}
}

func TestBadInputDoesNotDisturbGoodJobs(t *testing.T) {
	e := newEnv(t, nil)
	e.startWorker(worker.Config{Name: "w1", MaxJobs: 4}, map[string]worker.Handler{
		"echo": func(ctx context.Context, job *messages.Job, r worker.Reporter) (any, error) { return "ok", nil },
	})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	badReplies := 0
	go func() {
		defer wg.Done()
		bodies := [][]byte{{0xc1}, []byte("garbage"), {0x93, 0x01}, make([]byte, 600<<10), {0xdd, 0xff, 0xff, 0xff, 0xff}}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			verb := messages.Verbs[i%len(messages.Verbs)]
			msg, err := e.nc.Request(e.client.Subjects().API(verb), bodies[i%len(bodies)], 5*time.Second)
			if err == nil && msg.Header.Get("Nats-Service-Error-Code") != "" {
				badReplies++
			}
		}
	}()

	var ids []string
	for i := range 100 {
		ids = append(ids, e.submit("echo", map[string]any{"i": i}))
	}
	for _, id := range ids {
		if j := e.wait(id, 30*time.Second); j.Status != messages.StatusCompleted {
			t.Fatalf("good job %s ended %s", id, j.Status)
		}
	}
	close(stop)
	wg.Wait()
	if badReplies == 0 {
		t.Fatalf("no bad request got an error reply")
	}
	t.Logf("%d bad requests got error replies while 100 good jobs completed", badReplies)
}
