package coordinator

import (
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetqueue/jetqueue/messages"
)

// Worker statuses shown in WorkerState.Status.
const (
	workerReady    = "ready"
	workerDraining = "draining"
	workerLost     = "lost"
)

// workerEntry is the coordinator's view of one worker: its latest
// advertisement, and the jobs and resources the coordinator assigned to it.
type workerEntry struct {
	info     messages.WorkerInfo
	lastSeen time.Time
	lost     bool
	// known is false for a worker that only appears in replayed jobs and
	// has not sent a heartbeat yet.
	known bool
	// holdUntil delays new jobs for a worker that rejected one.
	holdUntil time.Time
	// drained is set while an operator has drained the worker.
	drained bool
	// gpuStaleSince is the worker's time of the latest end of a GPU job.
	// Until a heartbeat built after it arrives, the GPU memory figures do
	// not include the memory that job's plugin still uses.
	gpuStaleSince time.Time
	// evicting marks the plugin processes the coordinator asked the worker
	// to stop, until a heartbeat no longer lists them; evictSent is when.
	evicting  map[int]bool
	evictSent map[int]time.Time

	jobs       map[string]*jobEntry
	pluginBusy map[string]int
	cpus       float64
	memoryMB   int64
	// gpuMB is the GPU memory reserved per GPU index, in MiB; gpuJobs
	// counts the jobs holding each GPU.
	gpuMB   map[int]int64
	gpuJobs map[int]int
}

func newWorkerEntry(name string, now time.Time) *workerEntry {
	return &workerEntry{
		info:       messages.WorkerInfo{Name: name},
		lastSeen:   now,
		jobs:       make(map[string]*jobEntry),
		pluginBusy: make(map[string]int),
		gpuMB:      make(map[int]int64),
		gpuJobs:    make(map[int]int),
		evicting:   make(map[int]bool),
		evictSent:  make(map[int]time.Time),
	}
}

// assign books e's resources on w.
func (w *workerEntry) assign(e *jobEntry) {
	if _, ok := w.jobs[e.job.ID]; ok {
		return
	}
	w.jobs[e.job.ID] = e
	w.pluginBusy[e.job.PluginName]++
	w.cpus += e.res.CPUs
	w.memoryMB += e.res.MemoryMB
	for _, g := range e.gpus {
		w.gpuMB[g] += e.res.GPUMemoryMB
		w.gpuJobs[g]++
	}
}

// release returns e's resources.
func (w *workerEntry) release(e *jobEntry) {
	if _, ok := w.jobs[e.job.ID]; !ok {
		return
	}
	delete(w.jobs, e.job.ID)
	w.pluginBusy[e.job.PluginName]--
	w.cpus -= e.res.CPUs
	w.memoryMB -= e.res.MemoryMB
	for _, g := range e.gpus {
		w.gpuMB[g] -= e.res.GPUMemoryMB
		w.gpuJobs[g]--
	}
}

func (w *workerEntry) status() string {
	switch {
	case w.lost:
		return workerLost
	case w.info.Draining || w.drained:
		return workerDraining
	}
	return workerReady
}

func (w *workerEntry) plugin(name string) (messages.PluginInfo, bool) {
	for _, p := range w.info.Plugins {
		if p.Name == name {
			return p, true
		}
	}
	return messages.PluginInfo{}, false
}

func (w *workerEntry) view() messages.WorkerState {
	ids := make([]string, 0, len(w.jobs))
	for id := range w.jobs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var gpus []messages.GPUState
	for _, g := range w.info.GPUs {
		gpus = append(gpus, messages.GPUState{Index: g.Index, ReservedMB: w.gpuMB[g.Index], EvictableMB: idleMemory(w, g.Index), Jobs: w.gpuJobs[g.Index]})
	}
	return messages.WorkerState{Info: w.info, Jobs: ids, LastSeen: w.lastSeen, Status: w.status(), GPUs: gpus}
}

// forgetEvicted drops an eviction mark once evictWait passed, or once a
// heartbeat built after the evict command lists the process neither as a
// plugin process nor on a GPU. That heartbeat's memory figures then show
// the memory the eviction freed.
func (w *workerEntry) forgetEvicted(hbTime, now time.Time) {
	if len(w.evicting) == 0 {
		return
	}
	live := map[int]bool{}
	for _, p := range w.info.Plugins {
		for _, proc := range p.Processes {
			live[proc.PID] = true
		}
	}
	for _, g := range w.info.GPUs {
		for _, proc := range g.Processes {
			live[proc.PID] = true
		}
	}
	for pid := range w.evicting {
		sent := w.evictSent[pid]
		if (!live[pid] && hbTime.After(sent)) || now.Sub(sent) > evictWait {
			delete(w.evicting, pid)
			delete(w.evictSent, pid)
		}
	}
}

// workerFor returns the entry of a worker, creating an unknown one.
func (s *state) workerFor(name string, now time.Time) *workerEntry {
	w := s.workers[name]
	if w == nil {
		w = newWorkerEntry(name, now)
		w.drained = s.drained[name]
		s.workers[name] = w
		s.order = nil
	}
	return w
}

// onHeartbeat decodes a heartbeat and hands it to the loop.
func (c *Coordinator) onHeartbeat(msg *nats.Msg) {
	var hb messages.Heartbeat
	if err := messages.Decode(msg.Data, &hb); err != nil {
		c.log.Warn("dropping a heartbeat that does not decode", slog.Any("error", err))
		return
	}
	if err := messages.ValidateToken("worker name", hb.Info.Name); err != nil {
		c.log.Warn("dropping a heartbeat with an invalid worker name", slog.Any("error", err))
		return
	}
	if msg.Reply != "" {
		if !c.leaseValid() {
			return
		}
		reply := messages.HeartbeatReply{V: messages.ProtocolVersion, Leader: c.cfg.Name, LeaseMS: c.cfg.WorkerLease.Milliseconds(), Term: c.currentTerm.Load()}
		if err := msg.Respond(messages.MustEncode(&reply)); err != nil {
			c.log.Warn("acknowledge heartbeat failed", slog.String("worker", hb.Info.Name), slog.Any("error", err))
		}
	}
	c.doState(func(s *state) { s.heartbeat(&hb) })
}

// heartbeat updates the worker's entry and reconciles its jobs.
func (s *state) heartbeat(hb *messages.Heartbeat) {
	now := s.now()
	name := hb.Info.Name
	w := s.workerFor(name, now)
	restarted := w.known && w.info.Instance != "" && w.info.Instance != hb.Info.Instance
	connected := !w.known || w.lost || restarted
	if connected {
		s.c.log.Info("worker connected", slog.String("worker", name), slog.String("instance", hb.Info.Instance),
			slog.Int("max_jobs", hb.Info.MaxJobs), slog.Int("plugins", len(hb.Info.Plugins)), slog.Int("gpus", len(hb.Info.GPUs)))
	}
	changed := connected || !sameCapabilities(&w.info, &hb.Info)
	w.info = hb.Info
	w.lastSeen = now
	if hb.Time.After(w.gpuStaleSince) {
		w.gpuStaleSince = time.Time{}
	}
	w.forgetEvicted(hb.Time, now)
	w.lost = false
	w.known = true
	s.dirty = true
	if changed {
		// Parked jobs are checked against the worker's new advertisement.
		s.unparkAll()
	}

	held := make(map[string]int, len(hb.Running))
	for _, r := range hb.Running {
		held[r.ID] = r.Attempt
	}

	// Jobs the coordinator assigned to this worker but the worker does not
	// hold: after a worker restart, or a coordinator restart, they are not
	// running anywhere.
	for id, e := range w.jobs {
		if _, ok := held[id]; ok {
			e.unconfirmed = false
			continue
		}
		switch {
		case restarted:
			s.requeue(e, fmt.Sprintf("worker %s restarted and no longer runs the job", name), now, requeueLost)
		case e.unconfirmed:
			s.requeue(e, fmt.Sprintf("worker %s does not run the job after the coordinator restarted", name), now, requeueLost)
		}
	}

	if hb.Leaving {
		w.lost = true
		s.c.log.Info("worker stopped", slog.String("worker", name))
		for _, e := range w.jobs {
			s.requeue(e, fmt.Sprintf("worker %s stopped", name), now, requeueHandoff)
		}
		s.unparkAll()
		return
	}

	// Jobs the worker holds that are not its to run: stop them.
	for id, attempt := range held {
		e := s.jobs[id]
		if e != nil && e.job.Worker == name && e.job.Attempt == attempt &&
			(e.job.Status == messages.StatusRunning || e.job.Status.Final()) {
			continue
		}
		s.c.log.Warn("worker runs a job it was not assigned; cancelling it", slog.String("worker", name), slog.String("job_id", id), slog.Int("attempt", attempt))
		s.sendCancel(name, id, attempt)
	}
}

func sameCapabilities(a, b *messages.WorkerInfo) bool {
	if a.MaxJobs != b.MaxJobs || len(a.Plugins) != len(b.Plugins) || len(a.GPUs) != len(b.GPUs) || a.Draining != b.Draining {
		return false
	}
	for i := range a.Plugins {
		if a.Plugins[i].Name != b.Plugins[i].Name || a.Plugins[i].Resources != b.Plugins[i].Resources {
			return false
		}
	}
	return true
}

// checkWorkers declares silent workers lost and re-queues their jobs.
func (s *state) checkWorkers(now time.Time) {
	lease := s.c.cfg.WorkerLease
	for name, w := range s.workers {
		if w.lost || now.Sub(w.lastSeen) < lease {
			continue
		}
		w.lost = true
		s.c.log.Warn("worker lost: no heartbeat within the lease", slog.String("worker", name), slog.Duration("lease", lease), slog.Int("jobs", len(w.jobs)))
		for _, e := range w.jobs {
			s.requeue(e, fmt.Sprintf("worker %s lost: no heartbeat for %s", name, lease), now, requeueLost)
		}
		s.unparkAll()
		s.dirty = true
	}
}

// workerViews returns every worker's state, sorted by name.
func (s *state) workerViews() []messages.WorkerState {
	names := s.workerOrder()
	out := make([]messages.WorkerState, 0, len(names))
	for _, n := range names {
		out = append(out, s.workers[n].view())
	}
	return out
}

// workerOrder returns the worker names, sorted; it sorts only after a
// worker joined.
func (s *state) workerOrder() []string {
	if s.order == nil {
		s.order = make([]string, 0, len(s.workers))
		for n := range s.workers {
			s.order = append(s.order, n)
		}
		sort.Strings(s.order)
	}
	return s.order
}
