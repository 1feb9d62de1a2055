package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

func TestWorkersTableShowsGPULedger(t *testing.T) {
	ws := messages.WorkerState{
		Info: messages.WorkerInfo{
			Name: "gpu-host-3", MaxJobs: 4,
			GPUs: []messages.GPU{
				{Index: 0, Name: "A100", MemoryTotalMB: 24576, MemoryFreeMB: 11264, UtilizationPct: 40},
				{Index: 1, Name: "A100", MemoryTotalMB: 24576, MemoryFreeMB: 24576, UtilizationPct: -1, Unhealthy: "2 uncorrectable ECC errors"},
			},
			Plugins: []messages.PluginInfo{{Name: "whisper", Warm: 1, Processes: []messages.PluginProcess{{PID: 42, GPUs: []int{0}, GPUMemoryMB: 8192}}}},
		},
		Status: "ready",
		GPUs:   []messages.GPUState{{Index: 0, ReservedMB: 4096, EvictableMB: 8192, Jobs: 1}, {Index: 1}},
	}
	var out bytes.Buffer
	if err := printWorkers(&out, []messages.WorkerState{ws}, time.Now()); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		"GPU 0 A100: 11264 of 24576 MiB free, 4096 MiB reserved by 1 jobs, 8192 MiB held by idle plugins, 40% busy",
		"UNHEALTHY: 2 uncorrectable ECC errors",
		"plugin whisper pid 42 warm on GPUs [0], 8192 MiB each",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("workers table lacks %q:\n%s", want, text)
		}
	}
}
