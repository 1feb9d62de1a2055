package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/jetqueue/jetqueue/coordinator"
	"github.com/jetqueue/jetqueue/internal/embedded"
	"github.com/jetqueue/jetqueue/messages"
	"github.com/jetqueue/jetqueue/worker"
)

// shutdownTimeout bounds an orderly shutdown. The worker needs the longest
// part: a running job's cancel escalation takes the plugin's cancel_timeout
// plus kill_grace (3s and 2s by default) before its report is sent.
const shutdownTimeout = 30 * time.Second

// DefaultDataDir is the directory of the JetStream store of `jetqueue
// serve` and `jetqueue nats` unless --data names another.
const DefaultDataDir = "./jetqueue-data"

func init() {
	register(serveCommand, natsCommand, coordinatorCommand, workerCommand)
}

var serveCommand = &command{
	name:     "serve",
	synopsis: "[flags]",
	summary:  "Run NATS, a coordinator and a worker in one process.",
	details: `
Starts an embedded nats-server with JetStream storing into --data, a
coordinator and a local worker that runs the plugins of --plugins, and serves
until SIGINT or SIGTERM. It then stops the worker first (running jobs are
cancelled and go back to the queue), then the coordinator, then the server,
so no plugin process outlives it. Other commands reach it at --listen.`,
	setup: setupServe,
}

func setupServe(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	var srv serverFlags
	srv.register(fs)
	prefix := fs.String("prefix", envDefault(e, "JETQUEUE_PREFIX", messages.DefaultPrefix), "subject `PREFIX` of the queue: the first token of its subjects (env JETQUEUE_PREFIX)")
	var wf workerFlags
	wf.register(fs, runtime.NumCPU())
	policy := registerPolicy(fs)
	logLevel := registerLogLevel(fs, "info")

	return func(ctx context.Context, args []string) error {
		if len(args) != 0 {
			return usagef("unexpected arguments %q: serve takes only flags", args)
		}
		if err := wf.check(); err != nil {
			return err
		}
		if err := checkPolicy(*policy); err != nil {
			return err
		}
		logger, err := newLogger(e.stderr, *logLevel)
		if err != nil {
			return err
		}

		st, err := startStack(ctx, stackConfig{
			listen:  srv.listen,
			dataDir: srv.dataDir,
			policy:  *policy,
			prefix:  *prefix,
			worker:  wf.config(*prefix, logger),
			logger:  logger,
		})
		if err != nil {
			return interrupted(ctx, err)
		}
		logger.Info("jetqueue serving", "url", st.server.ClientURL(), "data", srv.dataDir, "plugins", wf.pluginsDir)

		<-ctx.Done()
		logger.Info("shutting down: worker, then coordinator, then nats-server")
		return st.stop()
	}
}

var natsCommand = &command{
	name:     "nats",
	synopsis: "[flags]",
	summary:  "Run only the embedded nats-server with JetStream.",
	details: `
Serves until SIGINT or SIGTERM. Run coordinators and workers against it with
jetqueue coordinator and jetqueue worker.`,
	setup: setupNATS,
}

func setupNATS(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	var srv serverFlags
	srv.register(fs)
	logLevel := registerLogLevel(fs, "info")

	return func(ctx context.Context, args []string) error {
		if len(args) != 0 {
			return usagef("unexpected arguments %q: nats takes only flags", args)
		}
		logger, err := newLogger(e.stderr, *logLevel)
		if err != nil {
			return err
		}

		ns, err := embedded.Start(embedded.Options{Listen: srv.listen, DataDir: srv.dataDir, Logger: logger})
		if err != nil {
			return err
		}
		logger.Info("nats-server serving", "url", ns.ClientURL(), "data", srv.dataDir)

		<-ctx.Done()
		logger.Info("shutting down nats-server")
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil
	}
}

var coordinatorCommand = &command{
	name:     "coordinator",
	synopsis: "[flags]",
	summary:  "Run a coordinator against a NATS server.",
	details: `
Serves the API and schedules jobs until SIGINT or SIGTERM. Jobs keep their
state in JetStream, so a coordinator started later takes over.`,
	setup: setupCoordinator,
}

func setupCoordinator(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	var conn connFlags
	conn.register(fs, e)
	name := fs.String("name", "", "`NAME` of this coordinator in logs and state (default: the host name)")
	replicas := fs.Int("replicas", 1, "replica `COUNT` of the JetStream streams and the leader bucket: 1 on a single server, 3 on a 3-node cluster. Every coordinator of a queue needs the same count")
	policy := registerPolicy(fs)
	logLevel := registerLogLevel(fs, "info")

	return func(ctx context.Context, args []string) error {
		if len(args) != 0 {
			return usagef("unexpected arguments %q: coordinator takes only flags", args)
		}
		if err := checkPolicy(*policy); err != nil {
			return err
		}
		if *replicas < 1 || *replicas > 5 {
			return usagef("invalid --replicas %d: use 1 on a single server, 3 on a 3-node cluster, at most 5", *replicas)
		}
		logger, err := newLogger(e.stderr, *logLevel)
		if err != nil {
			return err
		}
		nc, err := conn.connect("jetqueue coordinator", serviceOptions(logger)...)
		if err != nil {
			return err
		}
		defer nc.Close()

		c, err := coordinator.New(nc, coordinator.Config{Name: *name, Prefix: conn.prefix, Replicas: *replicas, Policy: *policy, Logger: logger})
		if err != nil {
			return err
		}
		if err := c.Start(ctx); err != nil {
			return err
		}

		<-ctx.Done()
		stopCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		return c.Stop(stopCtx)
	}
}

var workerCommand = &command{
	name:     "worker",
	synopsis: "[flags]",
	summary:  "Run a worker against a NATS server.",
	details: `
Advertises this machine's CPUs, memory, GPUs and the plugins of --plugins,
and runs the jobs the coordinator assigns until SIGINT or SIGTERM. It then
cancels its running jobs, which go back to the queue, and stops every plugin
process before it exits.`,
	setup: setupWorker,
}

func setupWorker(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	var conn connFlags
	conn.register(fs, e)
	var wf workerFlags
	wf.register(fs, runtime.NumCPU())
	logLevel := registerLogLevel(fs, "info")

	return func(ctx context.Context, args []string) error {
		if len(args) != 0 {
			return usagef("unexpected arguments %q: worker takes only flags", args)
		}
		if err := wf.check(); err != nil {
			return err
		}
		logger, err := newLogger(e.stderr, *logLevel)
		if err != nil {
			return err
		}
		nc, err := conn.connect("jetqueue worker", serviceOptions(logger)...)
		if err != nil {
			return err
		}
		defer nc.Close()

		w, err := worker.New(nc, wf.config(conn.prefix, logger))
		if err != nil {
			return err
		}
		if err := w.Start(ctx); err != nil {
			return err
		}

		<-ctx.Done()
		stopCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		return w.Stop(stopCtx)
	}
}

// serverFlags configure the embedded nats-server.
type serverFlags struct {
	dataDir string
	listen  string
}

func (s *serverFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.dataDir, "data", DefaultDataDir, "`DIR` where JetStream stores the queue; it survives restarts")
	fs.StringVar(&s.listen, "listen", embedded.DefaultListen, "`HOST:PORT` that NATS clients connect to; port -1 picks a free port")
}

// workerFlags configure a worker.
type workerFlags struct {
	name       string
	pluginsDir string
	maxJobs    int
	nvidiaSMI  string
	gpus       gpusFlag
}

func (w *workerFlags) register(fs *flag.FlagSet, defaultMaxJobs int) {
	fs.StringVar(&w.name, "name", "", "worker `NAME`: letters, digits, '-' and '_' (default: the host name)")
	fs.StringVar(&w.pluginsDir, "plugins", "./plugins", "`DIR` of plugin manifests, one JSON file per plugin")
	fs.IntVar(&w.maxJobs, "max-jobs", defaultMaxJobs, "how many jobs the worker runs at once")
	fs.StringVar(&w.nvidiaSMI, "nvidia-smi", "", "`PATH` of nvidia-smi for the GPU probe (default: looked up in PATH; none found means no GPUs)")
	fs.Var(&w.gpus, "gpus", "declare the GPUs by hand instead of running nvidia-smi, for other accelerators or machines without it: "+
		"`SPEC` is INDEX:MEMORY_MIB[:NAME] per GPU, comma-separated, such as 0:24576,1:24576:Gaudi2. "+
		"Used memory is then what this worker's plugin processes declare in their manifests")
}

func (w *workerFlags) config(prefix string, logger *slog.Logger) worker.Config {
	return worker.Config{
		Name:       w.name,
		Prefix:     prefix,
		PluginsDir: w.pluginsDir,
		MaxJobs:    w.maxJobs,
		NvidiaSMI:  w.nvidiaSMI,
		StaticGPUs: w.gpus.gpus,
		Logger:     logger,
	}
}

// check returns a usage error for flags that contradict each other.
func (w *workerFlags) check() error {
	if len(w.gpus.gpus) > 0 && w.nvidiaSMI != "" {
		return usagef("--gpus and --nvidia-smi are both set: declared GPUs replace nvidia-smi, so give one")
	}
	return nil
}

// gpusFlag is the --gpus flag: GPUs declared as worker.ParseGPUSpec reads
// them. The spec is checked as the flags are parsed.
type gpusFlag struct {
	spec string
	gpus []messages.GPU
}

func (f *gpusFlag) String() string { return f.spec }

func (f *gpusFlag) Set(spec string) error {
	gpus, err := worker.ParseGPUSpec(spec)
	if err != nil {
		return err
	}
	f.spec, f.gpus = spec, gpus
	return nil
}

// registerPolicy registers the --policy flag of the scheduling policy.
func registerPolicy(fs *flag.FlagSet) *string {
	return fs.String("policy", coordinator.PolicyStrict, "scheduling `POLICY`: strict (nothing starts ahead of a waiting job) or backfill (later jobs may use resources no waiting job ahead of them can use); see docs/SCHEDULING.md")
}

func checkPolicy(policy string) error {
	if policy != coordinator.PolicyStrict && policy != coordinator.PolicyBackfill {
		return usagef("invalid --policy %q: use %s or %s", policy, coordinator.PolicyStrict, coordinator.PolicyBackfill)
	}
	return nil
}

func registerLogLevel(fs *flag.FlagSet, level string) *string {
	return fs.String("log-level", level, "lowest level logged on stderr: debug, info, warn or error")
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("invalid --log-level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// serviceOptions keep a long-running process connected: it reconnects
// without limit and logs each disconnect and reconnect.
func serviceOptions(logger *slog.Logger) []nats.Option {
	return []nats.Option{
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			// Close calls the handler too, with a nil error.
			if err == nil || nc.IsClosed() {
				return
			}
			logger.Warn("disconnected from NATS; reconnecting", "error", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted())
		}),
	}
}

// stackConfig configures an embedded server, a coordinator and a worker in
// one process.
type stackConfig struct {
	listen  string
	dataDir string
	policy  string
	// progressInterval overrides the coordinator's ProgressInterval when set.
	progressInterval time.Duration
	prefix           string
	worker           worker.Config
	logger           *slog.Logger
}

// stack is an embedded nats-server with a coordinator and a worker, each on
// its own in-process connection.
type stack struct {
	server      *server.Server
	conns       []*nats.Conn
	coordinator *coordinator.Coordinator
	worker      *worker.Worker
	logger      *slog.Logger
}

// startStack starts the server, the coordinator and the worker, in that
// order. On error it stops what it started.
func startStack(ctx context.Context, cfg stackConfig) (st *stack, err error) {
	st = &stack{logger: cfg.logger}
	defer func() {
		if err != nil {
			st.stop()
			st = nil
		}
	}()

	st.server, err = embedded.Start(embedded.Options{Listen: cfg.listen, DataDir: cfg.dataDir, Logger: cfg.logger})
	if err != nil {
		return st, err
	}

	coordConn, err := st.connect("jetqueue coordinator")
	if err != nil {
		return st, err
	}
	st.coordinator, err = coordinator.New(coordConn, coordinator.Config{Prefix: cfg.prefix, Policy: cfg.policy, ProgressInterval: cfg.progressInterval, Logger: cfg.logger})
	if err != nil {
		return st, err
	}
	if err := st.coordinator.Start(ctx); err != nil {
		return st, err
	}

	workerConn, err := st.connect("jetqueue worker")
	if err != nil {
		return st, err
	}
	st.worker, err = worker.New(workerConn, cfg.worker)
	if err != nil {
		return st, err
	}
	if err := st.worker.Start(ctx); err != nil {
		return st, err
	}
	return st, nil
}

// connect opens an in-process connection to the stack's server. stop
// closes it.
func (st *stack) connect(name string) (*nats.Conn, error) {
	nc, err := nats.Connect("", nats.InProcessServer(st.server), nats.Name(name))
	if err != nil {
		return nil, fmt.Errorf("connect in process to the embedded nats-server: %w", err)
	}
	st.conns = append(st.conns, nc)
	return nc, nil
}

// stop shuts the stack down in order: the worker first, so its running jobs
// are cancelled and reported while the coordinator still listens, then the
// coordinator, then the connections and the server. It logs and returns
// the first error and carries on past it.
func (st *stack) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()

	var errs []error
	if st.worker != nil {
		if err := st.worker.Stop(ctx); err != nil {
			st.logger.Error("worker shutdown failed", "error", err)
			errs = append(errs, err)
		}
	}
	if st.coordinator != nil {
		if err := st.coordinator.Stop(ctx); err != nil {
			st.logger.Error("coordinator shutdown failed", "error", err)
			errs = append(errs, err)
		}
	}
	for _, nc := range st.conns {
		nc.Close()
	}
	if st.server != nil {
		st.server.Shutdown()
		st.server.WaitForShutdown()
	}
	return errors.Join(errs...)
}
