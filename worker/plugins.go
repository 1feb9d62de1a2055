package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

// Errors returned by Plugins. They come wrapped, with the plugin name.
var (
	// ErrUnknownPlugin means no manifest or handler of that name was added.
	ErrUnknownPlugin = errors.New("unknown plugin")
	// ErrPluginBusy means every instance of the plugin is running a job.
	ErrPluginBusy = errors.New("plugin busy")
	// ErrClosed means Plugins.Close was called.
	ErrClosed = errors.New("plugins closed")
)

// Reporter receives a running job's progress and log lines. Implementations
// must be safe for concurrent use. Plugins call it only while Slot.Run runs.
type Reporter interface {
	// Progress reports the fraction done, 0 to 1, or -1 while
	// indeterminate, with an optional status message. Values outside that
	// range never reach Progress: they are dropped with a warning log line.
	Progress(progress float64, message string)
	// Log reports one line of the job's log. level is "debug", "info",
	// "warning" or "error".
	Log(stream messages.LogStream, level, text string)
}

// Handler is an in-process Go plugin. ctx is cancelled when the job is
// cancelled; returning an error after ctx was cancelled ends the job
// cancelled, not failed. The result is encoded as msgpack.
type Handler func(ctx context.Context, job *messages.Job, r Reporter) (result any, err error)

// Task is one job given to a plugin.
type Task struct {
	// Job is the job to run. ID, PluginName, Args, Kwargs and Attempt are used.
	Job *messages.Job
	// GPUs are the GPU indexes the job may use. They become
	// CUDA_VISIBLE_DEVICES, comma-separated, and "" when there are none.
	GPUs []int
	// Reporter receives the job's progress and log lines. Nil discards them.
	Reporter Reporter
	// CancelStep, when not nil, is called as a cancel escalates: with
	// messages.CancelCooperative when the cancel message is sent, then
	// messages.CancelTerminate at SIGTERM and messages.CancelKill at SIGKILL.
	CancelStep func(phase messages.CancelPhase)
	// Kill, when closed, kills the job's process group with SIGKILL at once,
	// skipping the cooperative steps. An in-process handler only gets its
	// context cancelled. May be nil.
	Kill <-chan struct{}
}

// Outcome is the end state of a job: its status, and its result or error.
type Outcome struct {
	// Status is messages.StatusCompleted, messages.StatusFailed or
	// messages.StatusCancelled.
	Status messages.Status
	// Result is the msgpack-encoded result of a completed job, or nil.
	Result messages.Payload
	// Error is the reason a job failed, or how a cancelled job stopped.
	Error string
	// PID is the pid of the plugin process that ran the job, which leads
	// its process group; 0 for an in-process handler.
	PID int
	// ReleasePIDs are the pids that must leave the GPUs before the job's
	// GPU memory is free: the process and every member of its group that a
	// GPU probe listed as a compute process (see Plugins.ObserveGPUs). It is
	// set only when the group is gone by the time Run returns, and nil
	// while a persistent process stays warm with its memory.
	ReleasePIDs []int
}

func failed(format string, args ...any) Outcome {
	return Outcome{Status: messages.StatusFailed, Error: fmt.Sprintf(format, args...)}
}

// Plugins is a worker's plugin registry: the manifests and handlers it can
// run, their warm persistent processes and their running jobs. It is safe
// for concurrent use.
type Plugins struct {
	logger    *slog.Logger
	closeCtx  context.Context
	closeRuns context.CancelFunc
	closeDone chan struct{}

	mu        sync.Mutex
	plugins   map[string]*plugin
	processes map[*process]struct{} // every plugin process not yet gone
	closed    bool
	// gpusMeasured is set when the latest ObserveGPUs had the GPUs'
	// compute processes.
	gpusMeasured bool
	// runs counts Slot.Run calls and background the stops of idle
	// processes. Both are added to only under mu, before closed is set or
	// by Close as it sets it, so Close can wait for them.
	runs       sync.WaitGroup
	background sync.WaitGroup
}

// plugin is one registered plugin. The fields below mu are guarded by
// Plugins.mu.
type plugin struct {
	name      string
	mode      string
	manifest  *Manifest // nil for an in-process handler
	handler   Handler
	resources messages.Resources
	instances int

	busy     int
	lastUsed time.Time
	idle     []*process // warm persistent processes, least recently used first
}

// cancelTimeout returns how long a job has to stop after a cancel before
// it is escalated.
func (pl *plugin) cancelTimeout() time.Duration {
	if pl.manifest == nil {
		return DefaultCancelTimeout
	}
	return pl.manifest.CancelTimeout
}

// NewPlugins returns an empty registry. A nil logger discards log output.
//
// On Linux, NewPlugins makes the calling process a child subreaper
// (PR_SET_CHILD_SUBREAPER), so that children of a plugin whose parent exits
// are re-parented to the worker and stopped with their process group. The
// setting lasts for the life of the process.
func NewPlugins(logger *slog.Logger) *Plugins {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := becomeSubreaper(); err != nil {
		logger.Warn("cannot become a child subreaper; orphaned plugin children are reaped by init", "error", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	return &Plugins{
		logger:    logger,
		closeCtx:  ctx,
		closeRuns: cancel,
		closeDone: make(chan struct{}),
		plugins:   make(map[string]*plugin),
		processes: make(map[*process]struct{}),
	}
}

// AddManifest registers a plugin from its manifest. Zero fields take their
// defaults; a relative Dir is made absolute. A name already registered is
// an error.
func (p *Plugins) AddManifest(m *Manifest) error {
	if m == nil {
		return errors.New("add plugin: manifest is nil")
	}
	c := m.withDefaults()
	if c.Dir != "" {
		dir, err := filepath.Abs(c.Dir)
		if err != nil {
			return fmt.Errorf("add plugin %q: resolve directory %q: %w", m.Name, m.Dir, err)
		}
		c.Dir = dir
	}
	if err := c.validate(); err != nil {
		return fmt.Errorf("add plugin %q: %w", m.Name, err)
	}

	return p.add(&plugin{
		name:      c.Name,
		mode:      c.Mode,
		manifest:  c,
		resources: c.Resources,
		instances: c.Instances,
	})
}

// AddHandler registers an in-process Go plugin that needs res per job. It
// runs one job at a time.
func (p *Plugins) AddHandler(name string, res messages.Resources, h Handler) error {
	return p.AddHandlerInstances(name, res, 1, h)
}

// AddHandlerInstances is AddHandler for a handler that may run instances
// jobs at once.
func (p *Plugins) AddHandlerInstances(name string, res messages.Resources, instances int, h Handler) error {
	if instances < 1 {
		return fmt.Errorf("add handler %q: instances is %d: use 1 or more", name, instances)
	}
	if err := messages.ValidateToken("plugin name", name); err != nil {
		return fmt.Errorf("add handler: %w", err)
	}
	if h == nil {
		return fmt.Errorf("add handler %q: handler is nil", name)
	}
	if err := validateResources(res); err != nil {
		return fmt.Errorf("add handler %q: %w", name, err)
	}

	return p.add(&plugin{
		name:      name,
		mode:      messages.ModeInProcess,
		handler:   h,
		resources: res,
		instances: instances,
	})
}

func (p *Plugins) add(pl *plugin) error {
	p.mu.Lock()
	defer p.mu.Unlock()

	if p.closed {
		return fmt.Errorf("add plugin %q: %w", pl.name, ErrClosed)
	}
	if _, ok := p.plugins[pl.name]; ok {
		return fmt.Errorf("add plugin %q: a plugin of that name is already registered", pl.name)
	}
	p.plugins[pl.name] = pl
	p.logger.Info("plugin registered", "plugin", pl.name, "mode", pl.mode, "instances", pl.instances)
	return nil
}

// Names returns the registered plugin names, sorted.
func (p *Plugins) Names() []string {
	p.mu.Lock()
	defer p.mu.Unlock()

	names := make([]string, 0, len(p.plugins))
	for name := range p.plugins {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Info returns every plugin and the live state of its instances, sorted by
// name. Busy counts acquired slots; Warm counts idle persistent processes
// that are still running. Processes lists a persistent plugin's live
// processes, least recently used first, with the GPU memory each holds (see
// ObserveGPUs). A process that is stopping is listed as not busy until it
// is gone.
func (p *Plugins) Info() []messages.PluginInfo {
	p.mu.Lock()
	defer p.mu.Unlock()

	infos := make([]messages.PluginInfo, 0, len(p.plugins))
	for _, pl := range p.plugins {
		warm := 0
		for _, proc := range pl.idle {
			if !proc.isDone() {
				warm++
			}
		}
		infos = append(infos, messages.PluginInfo{
			Name:      pl.name,
			Mode:      pl.mode,
			Resources: pl.resources,
			Instances: pl.instances,
			Busy:      pl.busy,
			Warm:      warm,
			LastUsed:  pl.lastUsed,
			Processes: p.processInfos(pl),
		})
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
	return infos
}

// Slot is one reserved instance of a plugin, from Acquire until Run returns
// or Release is called.
type Slot struct {
	plugins  *Plugins
	plugin   *plugin
	used     bool // guarded by Plugins.mu
	released bool // guarded by Plugins.mu
}

// Acquire reserves an instance of the named plugin for one job. It returns
// an error wrapping ErrUnknownPlugin, ErrPluginBusy or ErrClosed.
func (p *Plugins) Acquire(name string) (*Slot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()

	if p.closed {
		return nil, fmt.Errorf("acquire plugin %q: %w", name, ErrClosed)
	}
	pl, ok := p.plugins[name]
	if !ok {
		return nil, fmt.Errorf("%w %q: this worker has no manifest or handler of that name", ErrUnknownPlugin, name)
	}
	if pl.busy >= pl.instances {
		return nil, fmt.Errorf("%w: plugin %q runs %d of %d instances; retry when a job ends", ErrPluginBusy, name, pl.busy, pl.instances)
	}
	pl.busy++
	return &Slot{plugins: p, plugin: pl}, nil
}

// Release frees a slot that was acquired but not run. It is idempotent, and
// a no-op after Run.
func (s *Slot) Release() {
	p := s.plugins
	p.mu.Lock()
	defer p.mu.Unlock()

	if s.released {
		return
	}
	s.released = true
	s.plugin.busy--
	s.plugin.lastUsed = time.Now()
}

// Run runs one job and releases the slot on return. It blocks until the job
// ends, and, when the plugin's process had to be signalled or exited, until
// no process of its group is left.
//
// Cancelling ctx cancels the job: a cancel message (an in-process handler's
// context is cancelled instead), then after the manifest's CancelTimeout
// SIGTERM to the plugin's whole process group, then after KillGrace SIGKILL.
// A slot runs one job; a second Run returns a failed Outcome.
func (s *Slot) Run(ctx context.Context, t Task) Outcome {
	defer s.Release()

	p, pl := s.plugins, s.plugin
	if err := s.begin(); err != nil {
		return failed("run plugin %q: %v", pl.name, err)
	}
	defer p.runs.Done()

	if t.Job == nil || t.Job.ID == "" {
		return failed("run plugin %q: the task has no job id", pl.name)
	}
	if t.Job.PluginName != "" && t.Job.PluginName != pl.name {
		return failed("job %s is for plugin %q but was given to plugin %q", t.Job.ID, t.Job.PluginName, pl.name)
	}
	if t.Reporter == nil {
		t.Reporter = discardReporter{}
	}
	if ctx.Err() != nil {
		return Outcome{Status: messages.StatusCancelled, Error: "job cancelled before it started"}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(p.closeCtx, cancel)
	defer stop()
	if t.Kill != nil {
		// In-process handlers cannot be killed; they see their context end.
		go func() {
			select {
			case <-t.Kill:
				cancel()
			case <-ctx.Done():
			}
		}()
	}

	p.logger.Debug("plugin job starting", "job_id", t.Job.ID, "plugin", pl.name, "attempt", t.Job.Attempt, "gpus", t.GPUs)
	var out Outcome
	switch pl.mode {
	case messages.ModePersistent:
		out = p.runPersistent(ctx, pl, t)
	case messages.ModeExec:
		out = p.runExec(ctx, pl, t)
	default:
		out = p.runHandler(ctx, pl, t)
	}

	p.mu.Lock()
	pl.lastUsed = time.Now()
	p.mu.Unlock()
	p.logger.Info("plugin job ended", "job_id", t.Job.ID, "plugin", pl.name, "attempt", t.Job.Attempt, "status", out.Status, "error", out.Error)
	return out
}

// begin marks the slot used and counts the run, unless the slot was used or
// released, or the registry is closed.
func (s *Slot) begin() error {
	p := s.plugins
	p.mu.Lock()
	defer p.mu.Unlock()

	switch {
	case s.used:
		return errors.New("the slot already ran a job: acquire a new one")
	case s.released:
		return errors.New("the slot was released: acquire a new one")
	case p.closed:
		return fmt.Errorf("the job was not started: %w", ErrClosed)
	}
	s.used = true
	p.runs.Add(1)
	s.plugin.lastUsed = time.Now()
	return nil
}

// Evict stops the idle warm processes of the named plugin and returns how
// many it stopped. Each gets a shutdown message, then SIGTERM after the
// manifest's CancelTimeout and SIGKILL after KillGrace; Evict returns when
// all are gone. Busy processes are never evicted. An unknown name returns 0.
func (p *Plugins) Evict(name string) int {
	p.mu.Lock()
	pl, ok := p.plugins[name]
	if !ok || p.closed {
		p.mu.Unlock()
		return 0
	}
	victims := takeIdle(pl)
	p.background.Add(1)
	p.mu.Unlock()
	defer p.background.Done()

	if len(victims) > 0 {
		p.logger.Info("evicting idle plugin processes", "plugin", name, "count", len(victims))
	}
	stopAll(victims, pl.cancelTimeout())
	return len(victims)
}

// takeIdle removes and returns the live idle processes of pl, marked as
// stopping. Plugins.mu is held.
func takeIdle(pl *plugin) []*process {
	var live []*process
	for _, proc := range pl.idle {
		stopIdleTimer(proc)
		proc.registry.state = processStopping
		if !proc.isDone() {
			live = append(live, proc)
		}
	}
	pl.idle = nil
	return live
}

// stopAll shuts processes down in parallel and waits until all are gone.
func stopAll(procs []*process, timeout time.Duration) {
	var wg sync.WaitGroup
	for _, proc := range procs {
		wg.Go(func() { proc.shutdown(timeout) })
	}
	wg.Wait()
}

// Close cancels every running job as Run describes, stops every warm
// process and rejects later calls of Acquire and Run. It returns when all
// jobs ended and all plugin processes are gone. If ctx ends first, Close
// sends SIGKILL to every plugin process group, waits for them to go, and
// returns an error wrapping ctx.Err(). In-process handlers that ignore their
// context may still run then. Close is idempotent.
func (p *Plugins) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.closeRuns()
		var idle []*process
		for _, pl := range p.plugins {
			for _, proc := range takeIdle(pl) {
				idle = append(idle, proc)
				p.background.Go(func() { proc.shutdown(pl.cancelTimeout()) })
			}
		}
		p.logger.Info("closing plugins", "idle_processes", len(idle))
		go func() {
			p.runs.Wait()
			p.background.Wait()
			close(p.closeDone)
		}()
	}
	p.mu.Unlock()

	select {
	case <-p.closeDone:
		return nil
	case <-ctx.Done():
	}

	killed := p.killAll()
	p.logger.Warn("plugins did not stop in time; sent SIGKILL to their process groups", "count", killed, "error", ctx.Err())
	return fmt.Errorf("close plugins: %w; sent SIGKILL to %d plugin process groups", ctx.Err(), killed)
}

// killAll sends SIGKILL to every plugin process group and waits, at most
// groupGoneTimeout each, until they are gone.
func (p *Plugins) killAll() int {
	p.mu.Lock()
	procs := make([]*process, 0, len(p.processes))
	for proc := range p.processes {
		procs = append(procs, proc)
	}
	p.mu.Unlock()

	for _, proc := range procs {
		proc.signal(syscall.SIGKILL)
	}
	for _, proc := range procs {
		if !proc.waitDone(groupGoneTimeout + drainTimeout) {
			p.logger.Error("plugin process group still present after SIGKILL", "plugin", proc.plugin, "pid", proc.pid)
		}
	}
	return len(procs)
}

// track records a started process until its group is gone.
func (p *Plugins) track(proc *process) {
	p.mu.Lock()
	p.processes[proc] = struct{}{}
	p.mu.Unlock()

	go func() {
		<-proc.done
		p.mu.Lock()
		delete(p.processes, proc)
		p.mu.Unlock()
	}()
}

// discardReporter drops every report. Run uses it when Task.Reporter is nil.
type discardReporter struct{}

func (discardReporter) Progress(float64, string)               {}
func (discardReporter) Log(messages.LogStream, string, string) {}

// equalGPUs reports whether two GPU index lists name the same GPUs in the
// same order, which CUDA_VISIBLE_DEVICES depends on.
func equalGPUs(a, b []int) bool {
	return slices.Equal(a, b)
}
