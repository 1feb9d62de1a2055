package worker

import (
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

// processState is the lifecycle state of a plugin process in the registry.
type processState int

const (
	// processBusy is a process that runs a job. A process starts busy,
	// because the registry starts processes only for a job.
	processBusy processState = iota
	// processIdle is a warm persistent process in its plugin's idle list.
	processIdle
	// processStopping is a process that is being shut down.
	processStopping
)

// processRegistry is the registry's record of one plugin process. Every
// field is guarded by Plugins.mu.
type processRegistry struct {
	state processState
	// lastUsed is when the process last ended a job; zero before its first
	// job ended.
	lastUsed time.Time
	// gpuPIDs are the members of the process group that a GPU probe listed
	// as compute processes.
	gpuPIDs map[int]bool
	// gpuMB is the GPU memory in MiB that the group's compute processes use,
	// by GPU index, from the latest probe.
	gpuMB map[int]int64
}

// EvictResult is the outcome of EvictProcesses for each pid it was given.
type EvictResult struct {
	// Stopped are the pids of the idle processes that were stopped. They
	// are gone when EvictProcesses returns.
	Stopped []int
	// Busy are the pids of processes that run a job; they were left alone.
	Busy []int
	// Unknown are the pids that are not a live plugin process of the
	// registry, or that are already stopping.
	Unknown []int
	// ReleasePIDs are the pids that must leave the GPUs before the stopped
	// processes' GPU memory is free: each stopped process and every member
	// of its group that a GPU probe listed as a compute process.
	ReleasePIDs []int
}

// ObserveGPUs records the compute processes of the latest GPU probe, which
// Info turns into each persistent process's GPUMemoryMB. computeApps is
// true when the Processes of gpus were measured by nvidia-smi
// --query-compute-apps. When it is false, Info reports the manifests'
// gpu_memory_mb. A compute process counts for the plugin process whose
// process group it belongs to.
func (p *Plugins) ObserveGPUs(gpus []messages.GPU, computeApps bool) {
	type member struct {
		pid, pgid, gpu int
		usedMB         int64
	}
	var members []member
	if computeApps {
		for _, g := range gpus {
			for _, app := range g.Processes {
				pgid, err := syscall.Getpgid(app.PID)
				if err != nil {
					continue // the process is gone, or in another pid namespace
				}
				members = append(members, member{pid: app.PID, pgid: pgid, gpu: g.Index, usedMB: app.UsedMB})
			}
		}
	}

	p.mu.Lock()
	defer p.mu.Unlock()

	p.gpusMeasured = computeApps
	leaders := make(map[int]*process, len(p.processes))
	for proc := range p.processes {
		proc.registry.gpuMB = nil
		leaders[proc.pid] = proc
	}
	for _, m := range members {
		proc := leaders[m.pgid]
		if proc == nil {
			continue
		}
		reg := &proc.registry
		if reg.gpuPIDs == nil {
			reg.gpuPIDs = make(map[int]bool)
		}
		reg.gpuPIDs[m.pid] = true
		if reg.gpuMB == nil {
			reg.gpuMB = make(map[int]int64)
		}
		reg.gpuMB[m.gpu] += m.usedMB
	}
}

// gpuMemory returns the GPU memory in MiB that proc holds on each of its
// GPUs: the largest per-GPU sum of its group's compute processes in the
// latest probe when that probe measured them and found any memory, else
// the manifest's gpu_memory_mb. A process without GPUs holds none.
// Plugins.mu is held.
//
// NOTE: a process whose compute processes nvidia-smi does not show, as in
// a container with its own pid namespace, or that holds no memory yet, is
// reported with the manifest's figure.
func (p *Plugins) gpuMemory(pl *plugin, proc *process) int64 {
	if len(proc.gpus) == 0 {
		return 0
	}
	if p.gpusMeasured {
		var largest int64
		for _, mb := range proc.registry.gpuMB {
			largest = max(largest, mb)
		}
		if largest > 0 {
			return largest
		}
	}
	return pl.resources.GPUMemoryMB
}

// processInfos returns the live processes of a persistent plugin, least
// recently used first. A process that is stopping is listed as not busy
// until it is gone, because it holds its GPU memory until then. Plugins.mu
// is held.
func (p *Plugins) processInfos(pl *plugin) []messages.PluginProcess {
	if pl.mode != messages.ModePersistent {
		return nil
	}
	var infos []messages.PluginProcess
	for proc := range p.processes {
		if proc.plugin != pl.name || proc.isDone() {
			continue
		}
		infos = append(infos, messages.PluginProcess{
			PID:         proc.pid,
			GPUs:        slices.Clone(proc.gpus),
			Busy:        proc.registry.state == processBusy,
			LastUsed:    proc.registry.lastUsed,
			GPUMemoryMB: p.gpuMemory(pl, proc),
		})
	}
	sort.Slice(infos, func(i, j int) bool {
		if !infos[i].LastUsed.Equal(infos[j].LastUsed) {
			return infos[i].LastUsed.Before(infos[j].LastUsed)
		}
		return infos[i].PID < infos[j].PID
	})
	return infos
}

// declaredGPUMemory returns, by GPU index, the sum of the manifest
// gpu_memory_mb of every live plugin process started with that GPU: busy
// and warm ones, and ones still stopping. A worker with declared GPUs
// reports it as their used memory.
func (p *Plugins) declaredGPUMemory() map[int]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()

	usedMB := make(map[int]int64)
	for proc := range p.processes {
		pl := p.plugins[proc.plugin]
		if pl == nil || proc.isDone() {
			continue
		}
		for _, g := range proc.gpus {
			usedMB[g] += pl.resources.GPUMemoryMB
		}
	}
	return usedMB
}

// releasePIDs returns proc's pid and the pids of its group that a GPU probe
// listed, sorted. Plugins.mu is held.
func releasePIDs(proc *process) []int {
	pids := []int{proc.pid}
	for pid := range proc.registry.gpuPIDs {
		if pid != proc.pid {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

// processReleasePIDs is releasePIDs with Plugins.mu taken.
func (p *Plugins) processReleasePIDs(proc *process) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return releasePIDs(proc)
}

// EvictProcesses stops the idle persistent processes among pids, to free
// the memory they hold, and returns when they are gone. Each gets a
// shutdown message, then SIGTERM after its manifest's CancelTimeout and
// SIGKILL after KillGrace, all in parallel. A process that runs a job is
// never stopped: its pid is returned in Busy. reason is logged with each
// eviction.
func (p *Plugins) EvictProcesses(pids []int, reason string) EvictResult {
	var res EvictResult
	type victim struct {
		pl   *plugin
		proc *process
	}
	var victims []victim

	p.mu.Lock()
	live := make(map[int]*process, len(p.processes))
	for proc := range p.processes {
		if !proc.isDone() {
			live[proc.pid] = proc
		}
	}
	seen := make(map[int]bool)
	for _, pid := range pids {
		if seen[pid] {
			continue
		}
		seen[pid] = true
		proc := live[pid]
		switch {
		case p.closed || proc == nil || proc.registry.state == processStopping:
			res.Unknown = append(res.Unknown, pid)
		case proc.registry.state == processBusy:
			res.Busy = append(res.Busy, pid)
		default:
			pl := p.plugins[proc.plugin]
			i := slices.Index(pl.idle, proc)
			if i < 0 {
				res.Unknown = append(res.Unknown, pid)
				continue
			}
			pl.idle = slices.Delete(pl.idle, i, i+1)
			stopIdleTimer(proc)
			proc.registry.state = processStopping
			victims = append(victims, victim{pl: pl, proc: proc})
			res.Stopped = append(res.Stopped, pid)
			p.logger.Info("evicting idle plugin process", "plugin", pl.name, "pid", pid, "gpus", proc.gpus,
				"gpu_memory_mb", p.gpuMemory(pl, proc), "idle_for", time.Since(proc.registry.lastUsed).Round(time.Millisecond), "reason", reason)
		}
	}
	if len(victims) == 0 {
		p.mu.Unlock()
		return res
	}
	p.background.Add(1)
	p.mu.Unlock()
	defer p.background.Done()

	var wg sync.WaitGroup
	for _, v := range victims {
		wg.Go(func() { v.proc.shutdown(v.pl.cancelTimeout()) })
	}
	wg.Wait()

	p.mu.Lock()
	for _, v := range victims {
		res.ReleasePIDs = append(res.ReleasePIDs, releasePIDs(v.proc)...)
	}
	p.mu.Unlock()
	slices.Sort(res.ReleasePIDs)
	return res
}
