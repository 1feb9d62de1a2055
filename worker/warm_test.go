package worker

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

// processByPID returns the plugin's process with pid from Info.
func processByPID(t *testing.T, p *Plugins, plugin string, pid int) (messages.PluginProcess, bool) {
	t.Helper()
	for _, info := range p.Info() {
		if info.Name != plugin {
			continue
		}
		for _, proc := range info.Processes {
			if proc.PID == pid {
				return proc, true
			}
		}
	}
	return messages.PluginProcess{}, false
}

func pluginInfo(t *testing.T, p *Plugins, plugin string) messages.PluginInfo {
	t.Helper()
	for _, info := range p.Info() {
		if info.Name == plugin {
			return info
		}
	}
	t.Fatalf("Info has no plugin %q", plugin)
	return messages.PluginInfo{}
}

func TestInfoProcessesWarmAndBusy(t *testing.T) {
	nvidiaSMI := useFakeGPU(t, fakeGPUConfig{GPUs: twoFakeGPUs()})
	p, mark := newTestPlugins(t)
	// The process allocates 5000 MiB although the manifest declares 12288,
	// so Info shows which figure it reports.
	addGPUPlugin(t, p, mark, "gpu-model.json", func(m *Manifest) {
		m.Instances = 2
		m.Env["GPU_MODEL_MB"] = "5000"
	})

	jobEnded := time.Now()
	warm := resultPID(t, runJob(t, context.Background(), p, Task{Job: newJob(t, "gpu-model", nil), GPUs: []int{0}}))
	kill := make(chan struct{})
	busyDone := runAsync(t, context.Background(), p, Task{Job: newJob(t, "gpu-model", map[string]any{"seconds": 30}), GPUs: []int{1}, Kill: kill})
	var busy int
	waitFor(t, 10*time.Second, "the busy process to load its model", func() bool {
		for _, proc := range gpuByIndex(t, probeFake(t, nvidiaSMI).GPUs, 1).Processes {
			busy = proc.PID
		}
		return busy != 0
	})

	// A second member of the warm process's group holds 700 MiB more.
	member := startInGroup(t, warm)
	writeAllocation(t, member, "GPU-fake-0", 700)
	probe := probeFake(t, nvidiaSMI)
	p.ObserveGPUs(probe.GPUs, probe.ComputeApps)

	info := pluginInfo(t, p, "gpu-model")
	if info.Busy != 1 || info.Warm != 1 || len(info.Processes) != 2 {
		t.Fatalf("Info = %+v, want 1 busy and 1 warm process listed", info)
	}
	if info.Processes[0].PID != busy {
		t.Errorf("Processes[0] is pid %d, want the busy process %d first: it has never ended a job", info.Processes[0].PID, busy)
	}
	warmInfo, _ := processByPID(t, p, "gpu-model", warm)
	busyInfo, _ := processByPID(t, p, "gpu-model", busy)
	if warmInfo.PID != warm || warmInfo.Busy || !slices.Equal(warmInfo.GPUs, []int{0}) {
		t.Errorf("warm process = %+v, want pid %d, idle, GPUs [0]", warmInfo, warm)
	}
	if warmInfo.LastUsed.Before(jobEnded) {
		t.Errorf("warm process LastUsed = %v, want after the job ended (%v)", warmInfo.LastUsed, jobEnded)
	}
	if warmInfo.GPUMemoryMB != 5000+700 {
		t.Errorf("warm process GPUMemoryMB = %d, want 5700: its own 5000 MiB plus its group member's 700", warmInfo.GPUMemoryMB)
	}
	if busyInfo.PID != busy || !busyInfo.Busy || !slices.Equal(busyInfo.GPUs, []int{1}) || !busyInfo.LastUsed.IsZero() {
		t.Errorf("busy process = %+v, want pid %d, busy, GPUs [1], never used before", busyInfo, busy)
	}
	if busyInfo.GPUMemoryMB != 5000 {
		t.Errorf("busy process GPUMemoryMB = %d, want the measured 5000", busyInfo.GPUMemoryMB)
	}

	// Without measured compute processes, Info reports the manifest's figure.
	p.ObserveGPUs(probe.GPUs, false)
	if got, _ := processByPID(t, p, "gpu-model", warm); got.GPUMemoryMB != 12288 {
		t.Errorf("unmeasured GPUMemoryMB = %d, want the manifest's 12288", got.GPUMemoryMB)
	}

	close(kill)
	<-busyDone
	if _, ok := processByPID(t, p, "gpu-model", busy); ok {
		t.Errorf("killed process %d still listed", busy)
	}
}

func TestInfoProcessesExecPluginHasNone(t *testing.T) {
	p, mark := newTestPlugins(t)
	addProbe(t, p, mark, "probe-exec.json", nil)

	resultPID(t, runJob(t, context.Background(), p, Task{Job: newJob(t, "probe-exec", nil)}))
	if info := pluginInfo(t, p, "probe-exec"); len(info.Processes) != 0 {
		t.Errorf("exec plugin Processes = %+v, want none", info.Processes)
	}
}

func TestEvictProcessesSkipsBusy(t *testing.T) {
	p, mark := newTestPlugins(t)
	addProbe(t, p, mark, "probe.json", func(m *Manifest) { m.Instances = 2 })

	// Different GPU sets keep the busy job off the warm process.
	idle := resultPID(t, runJob(t, context.Background(), p, Task{Job: newJob(t, "probe", nil), GPUs: []int{0}}))
	busyDone := runAsync(t, context.Background(), p, Task{Job: newJob(t, "probe", map[string]any{
		"actions": []any{map[string]any{"sleep": 1.5}},
	}), GPUs: []int{1}})
	var busy int
	waitFor(t, 10*time.Second, "the second process to start", func() bool {
		for _, proc := range pluginInfo(t, p, "probe").Processes {
			if proc.Busy {
				busy = proc.PID
			}
		}
		return busy != 0
	})

	onlyBusy := p.EvictProcesses([]int{busy}, "test: busy only")
	if len(onlyBusy.Stopped) != 0 || !slices.Equal(onlyBusy.Busy, []int{busy}) {
		t.Errorf("EvictProcesses(busy) = %+v, want nothing stopped and pid %d busy", onlyBusy, busy)
	}

	res := p.EvictProcesses([]int{idle, busy, idle, 1 << 30}, "test: make room")
	if !slices.Equal(res.Stopped, []int{idle}) {
		t.Errorf("Stopped = %v, want [%d]", res.Stopped, idle)
	}
	if !slices.Equal(res.Busy, []int{busy}) {
		t.Errorf("Busy = %v, want [%d]", res.Busy, busy)
	}
	if !slices.Equal(res.Unknown, []int{1 << 30}) {
		t.Errorf("Unknown = %v, want [%d]", res.Unknown, 1<<30)
	}
	if !slices.Equal(res.ReleasePIDs, []int{idle}) {
		t.Errorf("ReleasePIDs = %v, want [%d]", res.ReleasePIDs, idle)
	}
	if processAlive(idle) {
		t.Errorf("evicted process %d still runs", idle)
	}
	if !processAlive(busy) {
		t.Fatalf("busy process %d was stopped", busy)
	}

	out := <-busyDone
	if got := resultPID(t, out); got != busy {
		t.Errorf("busy job ran in pid %d, want %d", got, busy)
	}
	if out.ReleasePIDs != nil {
		t.Errorf("ReleasePIDs of a job whose process stays warm = %v, want nil", out.ReleasePIDs)
	}
	again := p.EvictProcesses([]int{idle}, "test: twice")
	if !slices.Equal(again.Unknown, []int{idle}) {
		t.Errorf("evicting a stopped process again = %+v, want it unknown", again)
	}
}

func TestDeclaredGPUMemoryStaticGPUs(t *testing.T) {
	useFakeGPU(t, fakeGPUConfig{GPUs: twoFakeGPUs()})
	p, mark := newTestPlugins(t)
	addGPUPlugin(t, p, mark, "gpu-model.json", nil)
	addGPUPlugin(t, p, mark, "gpu-small.json", nil)
	declared, err := ParseGPUSpec("0:24576,1:16384:Gaudi2")
	if err != nil {
		t.Fatal(err)
	}

	resultPID(t, runJob(t, context.Background(), p, Task{Job: newJob(t, "gpu-model", nil), GPUs: []int{1}}))
	resultPID(t, runJob(t, context.Background(), p, Task{Job: newJob(t, "gpu-small", nil), GPUs: []int{1}}))

	gpus := staticGPUs(declared, p.declaredGPUMemory())
	want := []messages.GPU{
		{Index: 0, Name: "GPU", MemoryTotalMB: 24576, MemoryFreeMB: 24576, UtilizationPct: -1},
		{Index: 1, Name: "Gaudi2", MemoryTotalMB: 16384, MemoryUsedMB: 16384, MemoryFreeMB: 0, UtilizationPct: -1},
	}
	if !slices.EqualFunc(gpus, want, func(a, b messages.GPU) bool {
		return a.Index == b.Index && a.Name == b.Name && a.MemoryTotalMB == b.MemoryTotalMB && a.MemoryUsedMB == b.MemoryUsedMB && a.MemoryFreeMB == b.MemoryFreeMB && a.UtilizationPct == b.UtilizationPct
	}) {
		t.Errorf("staticGPUs =\n%+v\nwant\n%+v (12288 + 4096 MiB held on GPU 1, capped at its total)", gpus, want)
	}

	p.Evict("gpu-model")
	gpus = staticGPUs(declared, p.declaredGPUMemory())
	if gpus[1].MemoryUsedMB != 4096 || gpus[1].MemoryFreeMB != 16384-4096 {
		t.Errorf("GPU 1 after evicting gpu-model = %+v, want 4096 MiB used", gpus[1])
	}
}

func TestInfoListsStoppingProcess(t *testing.T) {
	p, mark := newTestPlugins(t)
	addProbe(t, p, mark, "probe.json", func(m *Manifest) { m.CancelTimeout = 500 * time.Millisecond })

	// The process ignores its shutdown message, so it stops only at SIGTERM.
	pid := resultPID(t, runJob(t, context.Background(), p, Task{Job: newJob(t, "probe", map[string]any{
		"actions": []any{map[string]any{"ignore_shutdown": true}},
	})}))
	evicted := make(chan EvictResult, 1)
	go func() { evicted <- p.EvictProcesses([]int{pid}, "test: stop slowly") }()

	waitFor(t, 5*time.Second, "the process to be stopping", func() bool { return pluginInfo(t, p, "probe").Warm == 0 })
	info := pluginInfo(t, p, "probe")
	if len(info.Processes) != 1 || info.Processes[0].PID != pid || info.Processes[0].Busy {
		t.Errorf("Processes while stopping = %+v, want pid %d listed as not busy", info.Processes, pid)
	}

	res := <-evicted
	if !slices.Equal(res.Stopped, []int{pid}) {
		t.Errorf("Stopped = %v, want [%d]", res.Stopped, pid)
	}
	if info := pluginInfo(t, p, "probe"); len(info.Processes) != 0 {
		t.Errorf("Processes after the process is gone = %+v, want none", info.Processes)
	}
}
