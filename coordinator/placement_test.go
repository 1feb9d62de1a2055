package coordinator

import (
	"strings"
	"testing"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

// gpuWorker returns a known worker with one plugin and the given GPUs.
func gpuWorker(s *state, name string, plugin messages.PluginInfo, gpus ...messages.GPU) *workerEntry {
	w := s.workerFor(name, time.Now())
	w.known = true
	w.info = messages.WorkerInfo{Name: name, MaxJobs: 8, CPUs: 8, MemoryTotalMB: 64_000, GPUs: gpus, Plugins: []messages.PluginInfo{plugin}}
	return w
}

func gpu(index int, totalMB, usedMB int64) messages.GPU {
	return messages.GPU{Index: index, UUID: "GPU-" + string(rune('a'+index)), MemoryTotalMB: totalMB, MemoryUsedMB: usedMB, MemoryFreeMB: totalMB - usedMB}
}

func modelPlugin(name string, memoryMB int64) messages.PluginInfo {
	return messages.PluginInfo{Name: name, Mode: messages.ModePersistent, Instances: 4,
		Resources: messages.Resources{GPUs: 1, GPUMemoryMB: memoryMB}}
}

func pendingJob(plugin string, seq uint64) *jobEntry {
	return &jobEntry{index: -1, job: messages.Job{ID: "job-" + string(rune('0'+seq)), PluginName: plugin, Seq: seq, Status: messages.StatusPending}}
}

// run books the job on w as running with the placement's GPUs.
func run(w *workerEntry, e *jobEntry, p placement) {
	e.runState = &runState{gpus: p.gpus, res: p.res}
	w.assign(e)
}

func TestPlacementTwoOfThreeFitOneGPU(t *testing.T) {
	s := newState(&Coordinator{})
	w := gpuWorker(s, "gpu-host-1", modelPlugin("llm", 12_288), gpu(0, 24_576, 0))
	now := time.Now()

	for i := 1; i <= 2; i++ {
		e := pendingJob("llm", uint64(i))
		p := s.place(e, now, nil)
		if p.verdict != placeNow || len(p.gpus) != 1 || p.gpus[0] != 0 {
			t.Fatalf("job %d: verdict %d gpus %v (%s), want placed on GPU 0", i, p.verdict, p.gpus, p.reason)
		}
		run(w, e, p)
	}
	p := s.place(pendingJob("llm", 3), now, nil)
	if p.verdict != placeLater {
		t.Fatalf("third job verdict %d, want it to wait", p.verdict)
	}
	if !strings.Contains(p.reason, "12,288 MiB free") || !strings.Contains(p.reason, "gpu-host-1 GPU 0") {
		t.Fatalf("reason %q does not say what it waits for and where the most is free", p.reason)
	}
}

func TestPlacementRespectsMemoryUsedOutside(t *testing.T) {
	s := newState(&Coordinator{})
	// Another tenant fills 20 GiB of the first GPU; jetqueue reserved nothing.
	gpuWorker(s, "shared", modelPlugin("llm", 12_288), gpu(0, 24_576, 20_480), gpu(1, 24_576, 0))
	p := s.place(pendingJob("llm", 1), time.Now(), nil)
	if p.verdict != placeNow || p.gpus[0] != 1 {
		t.Fatalf("placed on %v (%s), want GPU 1, the one with the memory really free", p.gpus, p.reason)
	}
}

func TestPlacementSkipsUnhealthyGPU(t *testing.T) {
	s := newState(&Coordinator{})
	bad := gpu(0, 24_576, 0)
	bad.Unhealthy = "2 uncorrectable ECC errors"
	gpuWorker(s, "w", modelPlugin("llm", 1024), bad)
	p := s.place(pendingJob("llm", 1), time.Now(), nil)
	if p.verdict != placeNever || !strings.Contains(p.reason, "healthy") {
		t.Fatalf("verdict %d reason %q, want never with a word on the unhealthy GPU", p.verdict, p.reason)
	}
}

func TestPlacementNeverFitsSaysSo(t *testing.T) {
	s := newState(&Coordinator{})
	plugin := modelPlugin("big", 40_000)
	plugin.Resources.GPUs = 4
	gpuWorker(s, "w", plugin, gpu(0, 24_576, 0), gpu(1, 24_576, 0))
	p := s.place(pendingJob("big", 1), time.Now(), nil)
	if p.verdict != placeNever || !strings.HasPrefix(p.reason, "can never fit") || !strings.Contains(p.reason, "needs 4") {
		t.Fatalf("verdict %d reason %q, want a can-never-fit reason", p.verdict, p.reason)
	}
}

func TestEvictionPicksLeastRecentlyUsedIdle(t *testing.T) {
	s := newState(&Coordinator{})
	old := time.Now().Add(-time.Hour)
	recent := time.Now().Add(-time.Minute)
	other := modelPlugin("tts", 8_192)
	other.Processes = []messages.PluginProcess{
		{PID: 11, GPUs: []int{0}, LastUsed: recent, GPUMemoryMB: 8_192},
		{PID: 12, GPUs: []int{0}, LastUsed: old, GPUMemoryMB: 8_192},
		{PID: 13, GPUs: []int{0}, Busy: true, LastUsed: old.Add(-time.Hour), GPUMemoryMB: 8_192},
	}
	w := gpuWorker(s, "w", modelPlugin("llm", 12_288), gpu(0, 40_960, 3*8_192))
	w.info.Plugins = append(w.info.Plugins, other)

	// 16 GiB are free; the job needs 24 GiB, so one idle process must go.
	res := messages.Resources{GPUs: 1, GPUMemoryMB: 24_576}
	plan := planEviction(w, res)
	if plan == nil || len(plan.pids) != 1 || plan.pids[0] != 12 {
		t.Fatalf("eviction plan %+v, want only pid 12, the least recently used idle process", plan)
	}

	// With more memory needed, both idle processes go, never the busy one.
	res.GPUMemoryMB = 32_768
	plan = planEviction(w, res)
	if plan == nil || len(plan.pids) != 2 {
		t.Fatalf("eviction plan %+v, want the two idle processes", plan)
	}
	for _, pid := range plan.pids {
		if pid == 13 {
			t.Fatalf("plan evicts busy pid 13: %+v", plan)
		}
	}

	// More than idle processes can free: no plan.
	res.GPUMemoryMB = 40_000
	if plan := planEviction(w, res); plan != nil {
		t.Fatalf("plan %+v for memory only the busy process holds, want none", plan)
	}
}

func TestWarmProcessIsReused(t *testing.T) {
	s := newState(&Coordinator{})
	plugin := modelPlugin("llm", 12_288)
	plugin.Processes = []messages.PluginProcess{{PID: 7, GPUs: []int{1}, LastUsed: time.Now(), GPUMemoryMB: 12_288}}
	// GPU 1 is nearly full because the warm model itself sits there.
	gpuWorker(s, "w", plugin, gpu(0, 24_576, 0), gpu(1, 24_576, 20_000))
	p := s.place(pendingJob("llm", 1), time.Now(), nil)
	if p.verdict != placeNow || len(p.gpus) != 1 || p.gpus[0] != 1 {
		t.Fatalf("placed on %v (%s), want GPU 1 where the model is warm", p.gpus, p.reason)
	}
}

func TestBackfillKeepsGPUsForWaitingJob(t *testing.T) {
	s := newState(&Coordinator{})
	cpuPlugin := messages.PluginInfo{Name: "cpu", Mode: messages.ModeExec, Instances: 4}
	w := gpuWorker(s, "w", modelPlugin("llm", 20_000), gpu(0, 24_576, 0), gpu(1, 24_576, 0))
	w.info.Plugins = append(w.info.Plugins, cpuPlugin, modelPlugin("small", 2_000))
	now := time.Now()

	// A running job takes 10 GiB on each GPU, so the 20 GiB job waits.
	for i, g := range []int{0, 1} {
		e := pendingJob("small", uint64(10+i))
		run(w, e, placement{gpus: []int{g}, res: messages.Resources{GPUs: 1, GPUMemoryMB: 10_000}})
	}
	head := s.place(pendingJob("llm", 1), now, nil)
	if head.verdict != placeLater {
		t.Fatalf("head verdict %d, want it to wait", head.verdict)
	}

	ahead := []placement{head}
	if p := s.place(pendingJob("small", 2), now, ahead); p.verdict == placeNow {
		t.Fatalf("a small GPU job backfilled onto GPU %v that the waiting job needs", p.gpus)
	}
	if p := s.place(pendingJob("cpu", 3), now, ahead); p.verdict != placeNow {
		t.Fatalf("a CPU job could not backfill (%s), though the waiting job cannot use its slot", p.reason)
	}
}
