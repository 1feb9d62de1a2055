package coordinator

import (
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

// evictWait is how long an eviction may take before the coordinator sends
// the command again. A worker stops a process within its cancel_timeout +
// kill_grace.
const evictWait = 15 * time.Second

// gpuRoom returns the memory a job can still get on GPU g of w, in MiB: the
// live free memory, but no more than the total less what the coordinator
// reserved for running jobs, so memory used outside jetqueue counts too.
func gpuRoom(w *workerEntry, g messages.GPU) int64 {
	return min(g.MemoryFreeMB, g.MemoryTotalMB-w.gpuMB[g.Index])
}

// pickGPUs chooses res.GPUs healthy GPUs on w with enough room, preferring
// the GPUs with the least room that still fits. A job that requests no GPU
// memory gets GPUs that no other job uses.
func pickGPUs(w *workerEntry, res messages.Resources) ([]int, string) {
	type option struct {
		index int
		free  int64
	}
	var options []option
	var mostFree int64 = -1
	mostFreeIndex := -1
	for _, g := range w.info.GPUs {
		if g.Unhealthy != "" {
			continue
		}
		free := gpuRoom(w, g)
		if free > mostFree {
			mostFree, mostFreeIndex = free, g.Index
		}
		if res.GPUMemoryMB == 0 && w.gpuJobs[g.Index] > 0 {
			continue
		}
		if free >= res.GPUMemoryMB {
			options = append(options, option{g.Index, free})
		}
	}
	if len(options) < res.GPUs {
		if res.GPUMemoryMB == 0 {
			return nil, fmt.Sprintf("worker %s has %d of %d GPUs without a job, the job needs %d", w.info.Name, len(options), len(w.info.GPUs), res.GPUs)
		}
		reason := fmt.Sprintf("waits for %d GPU with %s MiB free; the most free is %s MiB on %s GPU %d",
			res.GPUs, mib(res.GPUMemoryMB), mib(max(mostFree, 0)), w.info.Name, mostFreeIndex)
		if idle := idleMemory(w, mostFreeIndex); idle > 0 {
			reason += fmt.Sprintf(" (%s MiB more held by idle plugins)", mib(idle))
		}
		return nil, reason
	}
	sort.Slice(options, func(i, j int) bool {
		if options[i].free != options[j].free {
			return options[i].free < options[j].free
		}
		return options[i].index < options[j].index
	})
	gpus := make([]int, res.GPUs)
	for i := range gpus {
		gpus[i] = options[i].index
	}
	sort.Ints(gpus)
	return gpus, ""
}

// warmProcessFor returns the GPUs of an idle warm process of plugin on w
// that a job needing res can run in: its model is loaded already, so the
// job needs no more memory there. It returns nil when there is none.
func warmProcessFor(w *workerEntry, plugin string, res messages.Resources) []int {
	info, ok := w.plugin(plugin)
	if !ok {
		return nil
	}
	for _, p := range info.Processes {
		if p.Busy || len(p.GPUs) != res.GPUs || w.evicting[p.PID] {
			continue
		}
		usable := true
		for _, g := range p.GPUs {
			gpu, ok := gpuByIndex(w, g)
			if !ok || gpu.Unhealthy != "" || w.gpuJobs[g] > 0 && res.GPUMemoryMB == 0 {
				usable = false
			}
		}
		if usable {
			return slices.Clone(p.GPUs)
		}
	}
	return nil
}

func gpuByIndex(w *workerEntry, index int) (messages.GPU, bool) {
	for _, g := range w.info.GPUs {
		if g.Index == index {
			return g, true
		}
	}
	return messages.GPU{}, false
}

// idleProcess is an idle plugin process that holds GPU memory.
type idleProcess struct {
	plugin string
	messages.PluginProcess
}

// idleProcesses returns w's idle persistent processes that hold memory on
// GPU g, least recently used first, leaving out those being evicted.
func idleProcesses(w *workerEntry, g int) []idleProcess {
	var out []idleProcess
	for _, info := range w.info.Plugins {
		for _, p := range info.Processes {
			if p.Busy || w.evicting[p.PID] || !slices.Contains(p.GPUs, g) || p.GPUMemoryMB <= 0 {
				continue
			}
			out = append(out, idleProcess{plugin: info.Name, PluginProcess: p})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastUsed.Before(out[j].LastUsed) })
	return out
}

// idleMemory returns the GPU memory that idle plugin processes hold on GPU
// g of w, in MiB.
func idleMemory(w *workerEntry, g int) int64 {
	var total int64
	for _, p := range idleProcesses(w, g) {
		total += p.GPUMemoryMB
	}
	return total
}

// evictPlan is a set of idle plugin processes on one worker whose eviction
// makes room for a waiting job.
type evictPlan struct {
	worker *workerEntry
	pids   []int
	names  []string
	gpus   []int
}

// planEviction finds the fewest least recently used idle processes on w
// whose eviction leaves room for a job that needs res, or nil. Busy
// processes are never evicted.
func planEviction(w *workerEntry, res messages.Resources) *evictPlan {
	if res.GPUs == 0 || res.GPUMemoryMB == 0 || len(w.jobs) >= w.info.MaxJobs {
		return nil
	}
	if len(w.evicting) > 0 {
		// The memory of processes being evicted is not free yet; plan again
		// once the worker's figures show what the eviction freed.
		return nil
	}
	type option struct {
		index int
		procs []idleProcess
	}
	var options []option
	for _, g := range w.info.GPUs {
		if g.Unhealthy != "" || g.MemoryTotalMB-w.gpuMB[g.Index] < res.GPUMemoryMB {
			continue
		}
		room := gpuRoom(w, g)
		var chosen []idleProcess
		for _, p := range idleProcesses(w, g.Index) {
			if room >= res.GPUMemoryMB {
				break
			}
			chosen = append(chosen, p)
			room += p.GPUMemoryMB
		}
		if room >= res.GPUMemoryMB {
			options = append(options, option{g.Index, chosen})
		}
	}
	if len(options) < res.GPUs {
		return nil
	}
	sort.Slice(options, func(i, j int) bool { return len(options[i].procs) < len(options[j].procs) })

	plan := &evictPlan{worker: w}
	for _, o := range options[:res.GPUs] {
		plan.gpus = append(plan.gpus, o.index)
		for _, p := range o.procs {
			if !slices.Contains(plan.pids, p.PID) {
				plan.pids = append(plan.pids, p.PID)
				plan.names = append(plan.names, fmt.Sprintf("%s (pid %d)", p.plugin, p.PID))
			}
		}
	}
	if len(plan.pids) == 0 {
		return nil
	}
	return plan
}

// sendEvict commands a worker to stop idle plugin processes for a waiting job,
// once per process until evictWait passes, and records the eviction as an
// event of the waiting job.
func (s *state) sendEvict(e *jobEntry, plan *evictPlan, now time.Time) {
	w := plan.worker
	var fresh []int
	for _, pid := range plan.pids {
		if at, ok := w.evictSent[pid]; !ok || now.Sub(at) > evictWait {
			fresh = append(fresh, pid)
		}
	}
	if len(fresh) == 0 {
		return
	}
	for _, pid := range fresh {
		w.evictSent[pid] = now
		w.evicting[pid] = true
	}

	reason := fmt.Sprintf("evicting idle %s on worker %s to free GPU memory for job %s", strings.Join(plan.names, ", "), w.info.Name, e.job.ID)
	cmd := messages.WorkerCommand{V: messages.ProtocolVersion, Kind: messages.CommandEvict, Evict: plan.pids, Reason: reason, Term: s.c.term}
	data, err := messages.Encode(&cmd)
	if err == nil {
		err = s.c.nc.Publish(s.c.subj.WorkerCommand(w.info.Name), data)
	}
	if err != nil {
		s.c.log.Error("send evict command failed", slog.String("worker", w.info.Name), slog.Any("error", err))
		return
	}
	s.c.log.Info("evicting idle plugin processes", slog.String("worker", w.info.Name), slog.String("job_id", e.job.ID), slog.Any("pids", plan.pids))
	e.job.StatusMessage = reason
	s.record(e, messages.EventEvicting, nil)
}
