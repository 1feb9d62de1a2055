package test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/coordinator"
	"github.com/jetqueue/jetqueue/internal/embedded"
	"github.com/jetqueue/jetqueue/messages"
	"github.com/jetqueue/jetqueue/worker"
)

// env is one queue under test: a server, a coordinator and a client.
type env struct {
	t      *testing.T
	dir    string
	server *server.Server
	url    string
	nc     *nats.Conn
	coord  *coordinator.Coordinator
	client *client.Client
}

// testLogger discards logs unless JETQUEUE_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("JETQUEUE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newEnv starts a server and a coordinator; tune adjusts the coordinator
// config.
func newEnv(t *testing.T, tune func(*coordinator.Config)) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	e.startServer()
	e.nc = e.connect()
	e.startCoordinator(tune)
	c, err := client.New(e.nc, client.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	e.client = c
	return e
}

func (e *env) startServer() {
	e.t.Helper()
	ns, err := embedded.Start(embedded.Options{Listen: "127.0.0.1:-1", DataDir: e.dir})
	if err != nil {
		e.t.Fatalf("start nats-server: %v", err)
	}
	e.server = ns
	e.url = ns.ClientURL()
	e.t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
}

func (e *env) connect() *nats.Conn {
	e.t.Helper()
	nc, err := nats.Connect(e.url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		e.t.Fatalf("connect to %s: %v", e.url, err)
	}
	e.t.Cleanup(nc.Close)
	return nc
}

func (e *env) startCoordinator(tune func(*coordinator.Config)) {
	e.t.Helper()
	cfg := coordinator.Config{Name: "coordinator-test", Logger: testLogger()}
	if tune != nil {
		tune(&cfg)
	}
	c, err := coordinator.New(e.nc, cfg)
	if err != nil {
		e.t.Fatalf("coordinator.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		e.t.Fatalf("coordinator Start: %v", err)
	}
	e.coord = c
	e.t.Cleanup(func() { stopCoordinator(e.t, c) })
}

func stopCoordinator(t *testing.T, c *coordinator.Coordinator) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		t.Errorf("coordinator Stop: %v", err)
	}
}

// startWorker starts a worker on its own connection with the given
// in-process handlers.
func (e *env) startWorker(cfg worker.Config, handlers map[string]worker.Handler) *worker.Worker {
	e.t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 200 * time.Millisecond
	}
	w, err := worker.New(e.connect(), cfg)
	if err != nil {
		e.t.Fatalf("worker.New: %v", err)
	}
	for name, h := range handlers {
		if err := w.Handle(name, messages.Resources{}, h); err != nil {
			e.t.Fatalf("Handle %s: %v", name, err)
		}
	}
	if err := w.Start(context.Background()); err != nil {
		e.t.Fatalf("worker Start: %v", err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			e.t.Errorf("worker Stop: %v", err)
		}
	})
	e.waitWorker(w.Name())
	return w
}

// waitWorker waits until the coordinator lists the worker as ready.
func (e *env) waitWorker(name string) {
	e.t.Helper()
	e.eventually(10*time.Second, "worker "+name+" ready", func() bool {
		ws, err := e.client.Workers(context.Background())
		if err != nil {
			return false
		}
		for _, w := range ws {
			if w.Info.Name == name && w.Status == "ready" {
				return true
			}
		}
		return false
	})
}

// eventually polls cond until it holds or the deadline passes.
func (e *env) eventually(timeout time.Duration, what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) submit(plugin string, kwargs map[string]any, opts ...client.SubmitOption) string {
	e.t.Helper()
	id, err := e.client.Submit(context.Background(), plugin, kwargs, opts...)
	if err != nil {
		e.t.Fatalf("submit %s: %v", plugin, err)
	}
	return id
}

func (e *env) get(id string) messages.Job {
	e.t.Helper()
	j, err := e.client.Get(context.Background(), id)
	if err != nil {
		e.t.Fatalf("get %s: %v", id, err)
	}
	return j
}

func (e *env) waitStatus(id string, want messages.Status, timeout time.Duration) messages.Job {
	e.t.Helper()
	var last messages.Job
	e.eventually(timeout, "job "+id+" "+string(want), func() bool {
		last = e.get(id)
		return last.Status == want
	})
	return last
}

func (e *env) wait(id string, timeout time.Duration) messages.Job {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	j, err := e.client.WaitForJob(ctx, id)
	if err != nil {
		e.t.Fatalf("wait for %s: %v", id, err)
	}
	return j
}

// gate is an in-process handler that records start order and blocks each
// job until released or cancelled.
type gate struct {
	mu      sync.Mutex
	started []string
	release chan struct{}
}

func newGate() *gate { return &gate{release: make(chan struct{})} }

func (g *gate) handler(ctx context.Context, job *messages.Job, r worker.Reporter) (any, error) {
	g.mu.Lock()
	g.started = append(g.started, job.ID)
	g.mu.Unlock()
	select {
	case <-g.release:
		return map[string]any{"ok": true}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (g *gate) order() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.started...)
}

func (g *gate) open() { close(g.release) }
