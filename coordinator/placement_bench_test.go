package coordinator

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jetqueue/jetqueue/messages"
)

// placementWorkers is the size of the fleet in the placement benchmarks.
const placementWorkers = 100

// placementState returns a state with placementWorkers workers of 8 GPUs
// with 80 GiB each, 64 CPUs and 512 GiB of memory. Every worker provides
// five plugins, "gpu-job" among them, with 4 instances each, and already
// runs jobs that hold between 0 and 3 of its GPUs, so the workers differ
// in what they have free.
func placementState(b *testing.B) *state {
	b.Helper()
	now := time.Now()
	s := newState(&Coordinator{cfg: Config{}.WithDefaults()})
	gpuPlugin := messages.Resources{GPUs: 1, GPUMemoryMB: 20_000, MemoryMB: 16_384, CPUs: 4}

	for i := range placementWorkers {
		name := fmt.Sprintf("gpu-node-%03d", i)
		w := newWorkerEntry(name, now)
		w.known = true
		w.info = messages.WorkerInfo{
			Name:              name,
			MaxJobs:           16,
			CPUs:              64,
			MemoryTotalMB:     512 << 10,
			MemoryAvailableMB: 400 << 10,
		}
		for g := range 8 {
			w.info.GPUs = append(w.info.GPUs, messages.GPU{
				Index: g, UUID: uuid.NewString(), Name: "NVIDIA A100-SXM4-80GB",
				MemoryTotalMB: 81_920, MemoryUsedMB: 1_024, MemoryFreeMB: 80_896, UtilizationPct: 0,
			})
		}
		for p, plugin := range []string{"embed", "gpu-job", "ocr", "transcode", "whisper"} {
			w.info.Plugins = append(w.info.Plugins, messages.PluginInfo{
				Name: plugin, Mode: messages.ModePersistent, Resources: gpuPlugin, Instances: 4, Warm: p % 2,
			})
		}
		for j := range i % 4 {
			e := &jobEntry{index: -1, runState: &runState{gpus: []int{j}, res: gpuPlugin}}
			e.job.ID = uuid.NewString()
			e.job.PluginName = "embed"
			w.assign(e)
		}
		s.workers[name] = w
	}
	return s
}

// BenchmarkPlaceOneJob100Workers places one GPU job among 100 workers that
// all can run it: what the scheduler does for every job it dispatches.
func BenchmarkPlaceOneJob100Workers(b *testing.B) {
	s := placementState(b)
	e := &jobEntry{index: -1, job: messages.Job{ID: uuid.NewString(), PluginName: "gpu-job"}}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		p := s.place(e, now, nil)
		if p.verdict != placeNow {
			b.Fatalf("verdict %d, want placeNow: %s", p.verdict, p.reason)
		}
	}
}

// BenchmarkPlaceWaitingJob100Workers places a job that needs more GPU
// memory than any worker has free, so every worker adds a reason: what the
// scheduler repeats on each pass while the head of the queue waits.
func BenchmarkPlaceWaitingJob100Workers(b *testing.B) {
	s := placementState(b)
	memory := int64(81_000)
	gpus := 8
	e := &jobEntry{index: -1, job: messages.Job{
		ID: uuid.NewString(), PluginName: "gpu-job",
		Requirements: &messages.Requirements{GPUs: &gpus, GPUMemoryMB: &memory},
	}}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		p := s.place(e, now, nil)
		if p.verdict != placeLater {
			b.Fatalf("verdict %d, want placeLater: %s", p.verdict, p.reason)
		}
	}
}
