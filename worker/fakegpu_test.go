package worker

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

// fakeGPU is one GPU of a test/testdata/gpu/fake-nvidia-smi config.
type fakeGPU struct {
	Index          int    `json:"index"`
	UUID           string `json:"uuid"`
	Name           string `json:"name,omitempty"`
	MemoryTotalMB  int64  `json:"memory_total_mb"`
	ECCErrors      *int   `json:"ecc_errors"`
	ExternalUsedMB int64  `json:"external_used_mb,omitempty"`
}

// fakeGPUConfig is the config file of fake-nvidia-smi.
type fakeGPUConfig struct {
	GPUs            []fakeGPU `json:"gpus"`
	StateDir        string    `json:"state_dir"`
	ReleaseDelayMS  int       `json:"release_delay_ms,omitempty"`
	FailComputeApps bool      `json:"fail_compute_apps,omitempty"`
}

// gpuTestdata returns the absolute path of test/testdata/gpu.
func gpuTestdata(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "test", "testdata", "gpu"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// useFakeGPU writes cfg, with its state directory in a temporary directory,
// points FAKE_GPU_CONFIG at it for the test and the plugin processes it
// starts, and returns the path of fake-nvidia-smi.
func useFakeGPU(t *testing.T, cfg fakeGPUConfig) string {
	t.Helper()
	requirePython(t)
	dir := t.TempDir()
	cfg.StateDir = filepath.Join(dir, "state")
	if err := os.Mkdir(cfg.StateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "fake-gpu.json")
	writeFile(t, path, string(data))
	t.Setenv("FAKE_GPU_CONFIG", path)
	return filepath.Join(gpuTestdata(t), "fake-nvidia-smi")
}

// twoFakeGPUs are a healthy GPU with 1000 MiB held outside jetqueue and a
// GPU without ECC.
func twoFakeGPUs() []fakeGPU {
	zero := 0
	return []fakeGPU{
		{Index: 0, UUID: "GPU-fake-0", Name: "Fake A100", MemoryTotalMB: 24576, ECCErrors: &zero, ExternalUsedMB: 1000},
		{Index: 1, UUID: "GPU-fake-1", Name: "Fake L4", MemoryTotalMB: 16384},
	}
}

func requirePython(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatalf("python3 runs the fake GPU and its plugin and is not in PATH: %v", err)
	}
}

// addGPUPlugin registers a manifest of test/testdata/gpu.
func addGPUPlugin(t *testing.T, p *Plugins, mark, file string, edit func(*Manifest)) *Manifest {
	t.Helper()
	return addPlugin(t, p, mark, gpuTestdata(t), file, edit)
}

// probeFake runs ProbeResources with the fake and fails the test on error.
func probeFake(t *testing.T, nvidiaSMI string) Probe {
	t.Helper()
	probe, err := ProbeResources(context.Background(), nvidiaSMI)
	if err != nil {
		t.Fatalf("ProbeResources: %v", err)
	}
	return probe
}

func gpuByIndex(t *testing.T, gpus []messages.GPU, index int) messages.GPU {
	t.Helper()
	for _, g := range gpus {
		if g.Index == index {
			return g
		}
	}
	t.Fatalf("no GPU %d in %+v", index, gpus)
	return messages.GPU{}
}

func TestFakeGPUFollowsAllocation(t *testing.T) {
	nvidiaSMI := useFakeGPU(t, fakeGPUConfig{GPUs: twoFakeGPUs()})
	p, mark := newTestPlugins(t)
	addGPUPlugin(t, p, mark, "gpu-model.json", nil)

	before := gpuByIndex(t, probeFake(t, nvidiaSMI).GPUs, 0)
	if before.MemoryUsedMB != 1000 || before.MemoryFreeMB != 23576 || len(before.Processes) != 0 {
		t.Fatalf("GPU 0 before the job = %+v, want 1000 MiB used by no process, 23576 MiB free", before)
	}

	out := runJob(t, context.Background(), p, Task{Job: newJob(t, "gpu-model", nil), GPUs: []int{0}})
	pid := resultPID(t, out)
	if got := resultMap(t, out)["gpu_uuids"]; jsonText(t, got) != `["GPU-fake-0"]` {
		t.Errorf("gpu_uuids = %v, want [GPU-fake-0]: CUDA_VISIBLE_DEVICES=0 maps to GPU-fake-0", got)
	}

	loaded := probeFake(t, nvidiaSMI)
	gpu0 := gpuByIndex(t, loaded.GPUs, 0)
	if gpu0.MemoryUsedMB != 1000+12288 || gpu0.MemoryFreeMB != 24576-1000-12288 {
		t.Errorf("GPU 0 with the model loaded = %d MiB used, %d free; want %d and %d", gpu0.MemoryUsedMB, gpu0.MemoryFreeMB, 1000+12288, 24576-1000-12288)
	}
	if want := []messages.GPUProcess{{PID: pid, UsedMB: 12288}}; !slices.Equal(gpu0.Processes, want) {
		t.Errorf("GPU 0 processes = %+v, want %+v", gpu0.Processes, want)
	}
	if gpu1 := gpuByIndex(t, loaded.GPUs, 1); gpu1.MemoryUsedMB != 0 || len(gpu1.Processes) != 0 {
		t.Errorf("GPU 1 = %+v, want it untouched", gpu1)
	}

	if n := p.Evict("gpu-model"); n != 1 {
		t.Fatalf("Evict = %d, want 1", n)
	}
	released := gpuByIndex(t, probeFake(t, nvidiaSMI).GPUs, 0)
	if released.MemoryUsedMB != 1000 || len(released.Processes) != 0 {
		t.Errorf("GPU 0 after the process stopped = %+v, want 1000 MiB used by no process", released)
	}
}

func TestFakeGPUDropsKilledProcess(t *testing.T) {
	nvidiaSMI := useFakeGPU(t, fakeGPUConfig{GPUs: twoFakeGPUs()})
	p, mark := newTestPlugins(t)
	addGPUPlugin(t, p, mark, "gpu-model.json", nil)

	kill := make(chan struct{})
	done := runAsync(t, context.Background(), p, Task{Job: newJob(t, "gpu-model", map[string]any{"seconds": 30}), GPUs: []int{1}, Kill: kill})
	waitFor(t, 10*time.Second, "the model to load on GPU 1", func() bool {
		return len(gpuByIndex(t, probeFake(t, nvidiaSMI).GPUs, 1).Processes) == 1
	})
	close(kill)
	out := <-done
	if out.Status == messages.StatusCompleted {
		t.Fatalf("killed job completed: %+v", out)
	}

	gpu1 := gpuByIndex(t, probeFake(t, nvidiaSMI).GPUs, 1)
	if gpu1.MemoryUsedMB != 0 || len(gpu1.Processes) != 0 {
		t.Errorf("GPU 1 after SIGKILL = %+v, want the allocation of the dead process dropped", gpu1)
	}
	if !slices.Equal(out.ReleasePIDs, []int{out.PID}) {
		t.Errorf("ReleasePIDs = %v, want [%d], the killed process", out.ReleasePIDs, out.PID)
	}
}

func TestFakeGPUHealthAndExternalUse(t *testing.T) {
	three := 3
	gpus := twoFakeGPUs()
	gpus[1].ECCErrors = &three
	gpus[1].ExternalUsedMB = 16000
	nvidiaSMI := useFakeGPU(t, fakeGPUConfig{GPUs: gpus})

	probe := probeFake(t, nvidiaSMI)
	gpu0, gpu1 := gpuByIndex(t, probe.GPUs, 0), gpuByIndex(t, probe.GPUs, 1)
	if gpu0.Unhealthy != "" {
		t.Errorf("GPU 0 Unhealthy = %q, want healthy with 0 ECC errors", gpu0.Unhealthy)
	}
	if gpu1.Unhealthy != "3 uncorrectable ECC errors" {
		t.Errorf("GPU 1 Unhealthy = %q, want \"3 uncorrectable ECC errors\"", gpu1.Unhealthy)
	}
	if gpu1.MemoryUsedMB != 16000 || gpu1.MemoryFreeMB != 384 {
		t.Errorf("GPU 1 = %d MiB used, %d free; want 16000 and 384 from external use", gpu1.MemoryUsedMB, gpu1.MemoryFreeMB)
	}
	if gpu0.Name != "Fake A100" || gpu1.UtilizationPct != 0 {
		t.Errorf("GPUs = %+v, want the configured names and 0%% utilisation", probe.GPUs)
	}

	noECC := twoFakeGPUs()
	noECC[0].ECCErrors = nil
	nvidiaSMI = useFakeGPU(t, fakeGPUConfig{GPUs: noECC})
	if g := gpuByIndex(t, probeFake(t, nvidiaSMI).GPUs, 0); g.Unhealthy != "" {
		t.Errorf("GPU without ECC ([N/A]) Unhealthy = %q, want healthy", g.Unhealthy)
	}
}

func TestFakeGPUComputeAppsFailure(t *testing.T) {
	nvidiaSMI := useFakeGPU(t, fakeGPUConfig{GPUs: twoFakeGPUs(), FailComputeApps: true})

	probe, err := ProbeResources(context.Background(), nvidiaSMI)
	if err == nil || !strings.Contains(err.Error(), "compute") {
		t.Errorf("error = %v, want the compute-apps failure", err)
	}
	if len(probe.GPUs) != 2 || probe.ComputeApps {
		t.Errorf("probe = %+v, want both GPUs and ComputeApps false", probe)
	}
}

// startInGroup starts `sleep 60` in process group pgid and kills it when
// the test ends.
func startInGroup(t *testing.T, pgid int) int {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pgid: pgid}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a process in group %d: %v", pgid, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd.Process.Pid
}

// writeAllocation records GPU memory for pid the way gpu_model.py does.
func writeAllocation(t *testing.T, pid int, uuid string, usedMB int64) {
	t.Helper()
	var cfg fakeGPUConfig
	data, err := os.ReadFile(os.Getenv("FAKE_GPU_CONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	alloc, err := json.Marshal(map[string]any{"pid": pid, "gpu_uuid": uuid, "used_mb": usedMB})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(cfg.StateDir, "test-"+uuid+".json"), string(alloc))
}
