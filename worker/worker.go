package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetqueue/jetqueue/messages"
)

// Version is the worker's software version, sent in its advertisement.
const Version = "0.1.0"

// Worker runs jobs that the coordinator assigns to it. It advertises its
// resources and plugins in heartbeats, runs each job in a plugin, streams
// progress and log lines back, and honours cancels.
type Worker struct {
	cfg      Config
	nc       *nats.Conn
	js       jetstream.JetStream
	subj     messages.Subjects
	log      *slog.Logger
	plugins  *Plugins
	instance string
	started  time.Time

	mu   sync.Mutex
	jobs map[string]*runningJob
	// active counts the held jobs whose plugin has not ended yet.
	active int
	// cancelled remembers cancels for jobs this worker does not hold, so a
	// run command that arrives after its cancel is rejected.
	cancelled map[string]time.Time
	probe     Probe
	stopping  bool

	// probeMu serializes storing probes. probeBegan is when the stored
	// probe began, and probeStored is closed and replaced at every store.
	probeMu       sync.Mutex
	probeBegan    time.Time
	probeStored   chan struct{}
	probeFailures int
	// probeNow carries requests for a probe to the probe loop.
	probeNow chan struct{}

	sub      *nats.Subscription
	ackSub   *nats.Subscription
	ackInbox string
	// lastAck is when the leader last acknowledged a heartbeat, and lease
	// the worker lease it announced.
	lastAck time.Time
	lease   time.Duration
	// term is the newest leadership term seen; commands and
	// acknowledgements of older terms come from a deposed leader.
	term     uint64
	wake     chan struct{}
	stopBg   context.CancelFunc
	bg       sync.WaitGroup
	jobsDone sync.WaitGroup
	// evictions counts evict commands being carried out.
	evictions sync.WaitGroup

	startOnce sync.Once
	stopOnce  sync.Once
	running   bool
}

// New returns a Worker that will use nc, with the plugins of
// cfg.PluginsDir loaded. Call Handle to add in-process plugins, then Start.
func New(nc *nats.Conn, cfg Config) (*Worker, error) {
	if nc == nil {
		return nil, errors.New("worker: nil NATS connection")
	}
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	subj, _ := messages.NewSubjects(cfg.Prefix)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024))
	if err != nil {
		return nil, fmt.Errorf("worker: JetStream context: %w", err)
	}
	log := cfg.Logger.With(slog.String("worker", cfg.Name))

	w := &Worker{
		cfg:         cfg,
		nc:          nc,
		js:          js,
		subj:        subj,
		log:         log,
		plugins:     NewPlugins(log),
		instance:    uuid.NewString(),
		jobs:        make(map[string]*runningJob),
		cancelled:   make(map[string]time.Time),
		wake:        make(chan struct{}, 1),
		probeStored: make(chan struct{}),
		probeNow:    make(chan struct{}, 1),
	}
	if cfg.PluginsDir != "" {
		manifests, err := LoadManifests(cfg.PluginsDir)
		if err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
		for _, m := range manifests {
			if err := w.plugins.AddManifest(m); err != nil {
				return nil, fmt.Errorf("worker: %w", err)
			}
		}
	}
	return w, nil
}

// Handle registers an in-process plugin that may run up to MaxJobs jobs at
// once. Call it before Start.
func (w *Worker) Handle(name string, res messages.Resources, h Handler) error {
	return w.plugins.AddHandlerInstances(name, res, w.cfg.MaxJobs, h)
}

// Name returns the worker's name.
func (w *Worker) Name() string { return w.cfg.Name }

// Start probes resources, subscribes to commands and starts heartbeats.
func (w *Worker) Start(ctx context.Context) error {
	err := errors.New("worker: Start called twice")
	w.startOnce.Do(func() { err = w.start(ctx) })
	return err
}

func (w *Worker) start(ctx context.Context) error {
	w.started = time.Now()
	w.storeProbe(w.measure(ctx))
	w.mu.Lock()
	probe := w.probe
	gpus := len(w.advertisedGPUs())
	w.mu.Unlock()

	sub, err := w.nc.Subscribe(w.subj.WorkerCommand(w.cfg.Name), w.onCommand)
	if err != nil {
		return fmt.Errorf("worker: subscribe %s: %w", w.subj.WorkerCommand(w.cfg.Name), err)
	}
	w.sub = sub
	w.ackInbox = w.nc.NewRespInbox()
	ackSub, err := w.nc.Subscribe(w.ackInbox, w.onHeartbeatAck)
	if err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("worker: subscribe %s: %w", w.ackInbox, err)
	}
	w.ackSub = ackSub
	w.mu.Lock()
	w.lastAck = time.Now()
	w.lease = defaultLease
	w.mu.Unlock()
	if err := w.nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		_ = ackSub.Unsubscribe()
		return fmt.Errorf("worker: flush subscription: %w", err)
	}

	bgCtx, cancel := context.WithCancel(context.Background())
	w.stopBg = cancel
	w.bg.Add(2)
	go w.heartbeatLoop(bgCtx)
	go w.probeLoop(bgCtx)
	w.running = true
	w.log.Info("worker started", slog.Int("max_jobs", w.cfg.MaxJobs), slog.Any("plugins", w.plugins.Names()),
		slog.Float64("cpus", probe.CPUs), slog.Int64("memory_mb", probe.MemoryTotalMB), slog.Int("gpus", gpus), slog.Bool("declared_gpus", len(w.cfg.StaticGPUs) > 0))
	return nil
}

// Stop drains the worker: it takes no new jobs, cancels running ones with
// the full cancel escalation (the coordinator re-queues them), delivers
// their reports, stops every plugin process and sends the coordinator a last
// heartbeat marked leaving. It is idempotent and safe before Start.
func (w *Worker) Stop(ctx context.Context) error {
	var err error
	w.stopOnce.Do(func() {
		w.mu.Lock()
		w.stopping = true
		for _, j := range w.jobs {
			j.stop(errWorkerStopping)
		}
		w.mu.Unlock()

		done := make(chan struct{})
		go func() {
			w.jobsDone.Wait()
			w.evictions.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			err = fmt.Errorf("worker: stop: jobs still running: %w", ctx.Err())
		}
		w.evictions.Wait()

		if e := w.plugins.Close(ctx); e != nil && err == nil {
			err = fmt.Errorf("worker: stop plugins: %w", e)
		}
		if !w.running {
			return
		}
		if w.sub != nil {
			_ = w.sub.Unsubscribe()
		}
		if w.ackSub != nil {
			_ = w.ackSub.Unsubscribe()
		}
		w.stopBg()
		w.bg.Wait()
		w.sendHeartbeat(true)
		_ = w.nc.Flush()
		w.log.Info("worker stopped")
	})
	return err
}

var errWorkerStopping = errors.New("the worker is stopping")

// heartbeatLoop publishes a heartbeat every interval and whenever woken,
// and checks that the leader still acknowledges them.
func (w *Worker) heartbeatLoop(ctx context.Context) {
	defer w.bg.Done()
	ticker := time.NewTicker(w.cfg.HeartbeatInterval)
	defer ticker.Stop()
	fence := time.NewTicker(fenceCheck)
	defer fence.Stop()
	w.sendHeartbeat(false)
	for {
		select {
		case <-ctx.Done():
			return
		case <-fence.C:
			w.checkContact()
			continue
		case <-ticker.C:
		case <-w.wake:
		}
		w.sendHeartbeat(false)
	}
}

// defaultLease is the worker lease assumed until the leader announces its
// own: the coordinator's default.
const defaultLease = 10 * time.Second

// fenceCheck is how often the worker checks for lost contact.
const fenceCheck = 250 * time.Millisecond

// onHeartbeatAck records the leader's acknowledgement of a heartbeat.
func (w *Worker) onHeartbeatAck(msg *nats.Msg) {
	var reply messages.HeartbeatReply
	if err := messages.Decode(msg.Data, &reply); err != nil {
		return // a no-responders status while no coordinator leads
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if reply.Term < w.term {
		return
	}
	w.term = reply.Term
	w.lastAck = time.Now()
	if reply.LeaseMS > 0 {
		w.lease = time.Duration(reply.LeaseMS) * time.Millisecond
	}
}

// checkContact kills every running job when no heartbeat was acknowledged
// for half the lease. The coordinator re-queues a silent worker's jobs
// once the lease has passed, so by then they must be gone from here: a
// partition must not leave a job running in two places.
func (w *Worker) checkContact() {
	w.mu.Lock()
	defer w.mu.Unlock()
	silent := time.Since(w.lastAck)
	if silent <= w.lease/2 {
		return
	}
	killed := 0
	for _, j := range w.jobs {
		if j.ended || j.killed {
			continue
		}
		j.killed = true
		close(j.kill)
		killed++
	}
	if killed > 0 {
		w.log.Error("no contact with the coordinator; killing running jobs so they cannot run twice",
			slog.Duration("silent", silent), slog.Duration("lease", w.lease), slog.Int("jobs", killed))
	}
}

// poke requests a heartbeat now.
func (w *Worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Worker) sendHeartbeat(leaving bool) {
	hb := w.heartbeat(leaving)
	data, err := messages.Encode(&hb)
	if err == nil {
		err = w.nc.PublishRequest(w.subj.Heartbeat(), w.ackInbox, data)
	}
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		w.log.Warn("send heartbeat failed", slog.Any("error", err))
	}
}

// heartbeat builds the worker's advertisement and the jobs it holds.
func (w *Worker) heartbeat(leaving bool) messages.Heartbeat {
	w.mu.Lock()
	defer w.mu.Unlock()

	host, _ := os.Hostname()
	hb := messages.Heartbeat{
		V: messages.ProtocolVersion,
		Info: messages.WorkerInfo{
			Name:              w.cfg.Name,
			Instance:          w.instance,
			Version:           Version,
			Host:              host,
			StartedAt:         w.started,
			MaxJobs:           w.cfg.MaxJobs,
			CPUs:              w.probe.CPUs,
			MemoryTotalMB:     w.probe.MemoryTotalMB,
			MemoryAvailableMB: w.probe.MemoryAvailableMB,
			GPUs:              w.advertisedGPUs(),
			Plugins:           w.plugins.Info(),
			Draining:          w.stopping,
		},
		Time:    time.Now(),
		Leaving: leaving,
	}
	for id, j := range w.jobs {
		hb.Running = append(hb.Running, messages.RunningJob{ID: id, Attempt: j.attempt})
	}
	sort.Slice(hb.Running, func(a, b int) bool { return hb.Running[a].ID < hb.Running[b].ID })

	// Forget old cancels of jobs that never arrived.
	for id, at := range w.cancelled {
		if time.Since(at) > cancelMemory {
			delete(w.cancelled, id)
		}
	}
	return hb
}

// cancelMemory is how long a cancel for an unknown job is remembered.
const cancelMemory = 10 * time.Minute
