package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/coordinator"
	"github.com/jetqueue/jetqueue/internal/embedded"
	"github.com/jetqueue/jetqueue/messages"
	"github.com/jetqueue/jetqueue/worker"
)

// Plugins that every benchmark worker registers as in-process handlers.
const (
	// pluginNoop returns at once: the end-to-end jobs. With more than one
	// no-op handler per worker, the handlers are named pluginNoop-1,
	// pluginNoop-2 and so on.
	pluginNoop = "bench-noop"
	// pluginProbe reports its start time, then returns: the start latency.
	pluginProbe = "bench-probe"
	// pluginBlock reports its start time, then returns once its context is
	// cancelled: the cancel latency.
	pluginBlock = "bench-block"
	// pluginNone is provided by no worker, so its jobs stay pending.
	pluginNone = "bench-pending"
)

// benchKwargs are the kwargs of every benchmark job: a tiny payload, so the
// figures measure the queue and not the size of its jobs.
var benchKwargs = messages.MustPayload(map[string]any{"n": 1})

// setupTimeout bounds starting or stopping one component.
const setupTimeout = 30 * time.Second

// started is a handler's report that a job began.
type started struct {
	id string
	at time.Time
}

// handlers are the in-process plugins of the benchmark workers.
type handlers struct {
	// starts receives the start of every probe and block job. It is
	// buffered, and a full buffer drops starts rather than block a worker.
	starts chan started
}

func newHandlers() *handlers {
	return &handlers{starts: make(chan started, 4096)}
}

func (h *handlers) noop(context.Context, *messages.Job, worker.Reporter) (any, error) {
	return nil, nil
}

func (h *handlers) probe(_ context.Context, job *messages.Job, _ worker.Reporter) (any, error) {
	h.report(job.ID)
	return nil, nil
}

func (h *handlers) block(ctx context.Context, job *messages.Job, _ worker.Reporter) (any, error) {
	h.report(job.ID)
	<-ctx.Done()
	return nil, ctx.Err()
}

func (h *handlers) report(id string) {
	select {
	case h.starts <- started{id: id, at: time.Now()}:
	default:
	}
}

// cluster is an embedded nats-server with a coordinator and workers, each
// on its own TCP connection over loopback, plus a client on another.
type cluster struct {
	cfg      Config
	server   *server.Server
	handlers *handlers

	coordConn   *nats.Conn
	coord       *coordinator.Coordinator
	workerConns []*nats.Conn
	workers     []*worker.Worker
	clientConn  *nats.Conn
	client      *client.Client
	// extra are connections of the other measurements, closed with the
	// cluster.
	extra []*nats.Conn
}

// startCluster starts the server, the coordinator, cfg.Workers workers and
// a client, and waits until the coordinator lists every worker as ready.
// On error it stops what it started.
func startCluster(ctx context.Context, cfg Config, dataDir string) (c *cluster, err error) {
	c = &cluster{cfg: cfg, handlers: newHandlers()}
	defer func() {
		if err != nil {
			c.stop()
			c = nil
		}
	}()

	c.server, err = embedded.Start(embedded.Options{Listen: "127.0.0.1:-1", DataDir: dataDir, Logger: serverLogger(cfg.Logger)})
	if err != nil {
		return c, err
	}

	c.coordConn, err = c.connect("bench coordinator")
	if err != nil {
		return c, err
	}
	c.coord, err = startCoordinator(ctx, c.coordConn, messages.DefaultPrefix, cfg.Logger)
	if err != nil {
		return c, err
	}

	for i := range cfg.Workers {
		if err := c.startWorker(ctx, fmt.Sprintf("bench-worker-%d", i+1)); err != nil {
			return c, err
		}
	}

	c.clientConn, err = c.connect("bench client")
	if err != nil {
		return c, err
	}
	c.client, err = client.New(c.clientConn, client.WithTimeout(setupTimeout))
	if err != nil {
		return c, err
	}
	return c, c.waitWorkers(ctx)
}

// serverLogger passes the nats-server only warnings and errors: its
// notices would drown the benchmark's output.
func serverLogger(l *slog.Logger) *slog.Logger {
	if !l.Enabled(context.Background(), slog.LevelWarn) {
		return nil
	}
	return l
}

// connect opens a TCP connection to the cluster's server.
func (c *cluster) connect(name string) (*nats.Conn, error) {
	nc, err := nats.Connect(c.server.ClientURL(), nats.Name(name))
	if err != nil {
		return nil, fmt.Errorf("connect %s to %s: %w", name, c.server.ClientURL(), err)
	}
	c.extra = append(c.extra, nc)
	return nc, nil
}

// startCoordinator creates and starts a coordinator on prefix.
func startCoordinator(ctx context.Context, nc *nats.Conn, prefix string, logger *slog.Logger) (*coordinator.Coordinator, error) {
	coord, err := coordinator.New(nc, coordinator.Config{Name: "bench-coordinator-" + prefix, Prefix: prefix, Logger: logger})
	if err != nil {
		return nil, err
	}
	startCtx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	if err := coord.Start(startCtx); err != nil {
		return nil, err
	}
	return coord, nil
}

func stopCoordinator(coord *coordinator.Coordinator) error {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	return coord.Stop(ctx)
}

// startWorker starts a worker with the benchmark handlers.
func (c *cluster) startWorker(ctx context.Context, name string) error {
	nc, err := c.connect("bench " + name)
	if err != nil {
		return err
	}
	w, err := worker.New(nc, worker.Config{Name: name, MaxJobs: c.cfg.MaxJobs, Logger: c.cfg.Logger})
	if err != nil {
		return err
	}
	plugins := map[string]worker.Handler{
		pluginProbe: c.handlers.probe,
		pluginBlock: c.handlers.block,
	}
	for _, name := range c.noopPlugins() {
		plugins[name] = c.handlers.noop
	}
	for plugin, h := range plugins {
		if err := w.Handle(plugin, messages.Resources{}, h); err != nil {
			return err
		}
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	c.workerConns = append(c.workerConns, nc)
	c.workers = append(c.workers, w)
	return nil
}

// noopPlugins returns the names of the no-op plugins of every worker.
func (c *cluster) noopPlugins() []string {
	if c.cfg.NoopHandlers == 1 {
		return []string{pluginNoop}
	}
	names := make([]string, c.cfg.NoopHandlers)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", pluginNoop, i+1)
	}
	return names
}

// waitWorkers polls the coordinator until it lists every worker as ready.
func (c *cluster) waitWorkers(ctx context.Context) error {
	deadline := time.Now().Add(setupTimeout)
	for {
		ws, err := c.client.Workers(ctx)
		ready := 0
		for _, w := range ws {
			if w.Status == "ready" {
				ready++
			}
		}
		if err == nil && ready == len(c.workers) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d workers ready after %s (last error: %v)", ready, len(c.workers), setupTimeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// queueConns returns the connections whose messages count as the queue's:
// the client's, the coordinator's and the workers'.
func (c *cluster) queueConns() []*nats.Conn {
	return append([]*nats.Conn{c.clientConn, c.coordConn}, c.workerConns...)
}

// stop stops the workers, the coordinator, the connections and the server,
// in that order, and returns the errors it met.
func (c *cluster) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()

	var errs []error
	for _, w := range c.workers {
		if err := w.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop worker %s: %w", w.Name(), err))
		}
	}
	if c.coord != nil {
		if err := c.coord.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop coordinator: %w", err))
		}
	}
	for _, nc := range c.extra {
		nc.Close()
	}
	if c.server != nil {
		c.server.Shutdown()
		c.server.WaitForShutdown()
	}
	return errors.Join(errs...)
}
