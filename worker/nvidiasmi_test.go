package worker

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jetqueue/jetqueue/messages"
)

// fakeGPUs are the GPUs and compute processes that testdata/nvidia-smi prints.
var fakeGPUs = []messages.GPU{
	{Index: 0, UUID: "GPU-5a3cbd2e-1f0a-4c1e-9d77-0c1a2b3c4d5e", Name: "NVIDIA A100-SXM4-80GB", MemoryTotalMB: 81920, MemoryUsedMB: 1024, MemoryFreeMB: 80468, UtilizationPct: 37,
		Processes: []messages.GPUProcess{{PID: 4242, UsedMB: 1000}}},
	{Index: 1, UUID: "GPU-9f8e7d6c-5b4a-3c2d-1e0f-a1b2c3d4e5f6", Name: "NVIDIA GeForce RTX 4090", MemoryTotalMB: 24564, MemoryUsedMB: 0, MemoryFreeMB: 24210, UtilizationPct: -1,
		Processes: []messages.GPUProcess{}},
}

func TestParseNvidiaSMI(t *testing.T) {
	out := "0, GPU-aaaa, NVIDIA H100 80GB HBM3, 81559, 4, 81001, 0, 0\r\n" +
		"\n" +
		"1, GPU-bbbb, Tesla T4, 15360, 2048, 12932, [N/A], [N/A]\n" +
		"2, GPU-cccc, Quadro RTX 6000, with comma, 24576, 1, 24212, [Not Supported], [Not Supported]\n" +
		"3, GPU-dddd, A10, 23028, 0, 22515, 12, 1\n" +
		"4, GPU-eeee, A10, 23028, 0, 22515, 12, 3\n"

	gpus, err := ParseNvidiaSMI([]byte(out))
	if err != nil {
		t.Fatal(err)
	}

	want := []messages.GPU{
		{Index: 0, UUID: "GPU-aaaa", Name: "NVIDIA H100 80GB HBM3", MemoryTotalMB: 81559, MemoryUsedMB: 4, MemoryFreeMB: 81001, UtilizationPct: 0},
		{Index: 1, UUID: "GPU-bbbb", Name: "Tesla T4", MemoryTotalMB: 15360, MemoryUsedMB: 2048, MemoryFreeMB: 12932, UtilizationPct: -1},
		{Index: 2, UUID: "GPU-cccc", Name: "Quadro RTX 6000, with comma", MemoryTotalMB: 24576, MemoryUsedMB: 1, MemoryFreeMB: 24212, UtilizationPct: -1},
		{Index: 3, UUID: "GPU-dddd", Name: "A10", MemoryTotalMB: 23028, MemoryUsedMB: 0, MemoryFreeMB: 22515, UtilizationPct: 12, Unhealthy: "1 uncorrectable ECC error"},
		{Index: 4, UUID: "GPU-eeee", Name: "A10", MemoryTotalMB: 23028, MemoryUsedMB: 0, MemoryFreeMB: 22515, UtilizationPct: 12, Unhealthy: "3 uncorrectable ECC errors"},
	}
	if !reflect.DeepEqual(gpus, want) {
		t.Errorf("ParseNvidiaSMI =\n%+v\nwant\n%+v", gpus, want)
	}
}

func TestParseNvidiaSMIEmpty(t *testing.T) {
	gpus, err := ParseNvidiaSMI([]byte("\n  \n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) != 0 {
		t.Errorf("ParseNvidiaSMI of blank output = %+v, want no GPUs", gpus)
	}
}

func TestParseNvidiaSMIRejects(t *testing.T) {
	good := "0, GPU-a, A100, 100, 1, 99, 5, 0\n"
	cases := []struct {
		name string
		line string
		want string
	}{
		{"too few fields", "0, GPU-a, A100, 100, 1, 99, 5", "7 comma-separated fields, expected 8"},
		{"query without ECC", "0, GPU-a, A100, 100, 1, 99", "6 comma-separated fields, expected 8"},
		{"error text", "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", "expected 8"},
		{"bad index", "x, GPU-a, A100, 100, 1, 99, 5, 0", `index "x"`},
		{"negative index", "-1, GPU-a, A100, 100, 1, 99, 5, 0", `index "-1"`},
		{"empty uuid", "1, , A100, 100, 1, 99, 5, 0", "uuid is empty"},
		{"memory with unit", "1, GPU-b, A100, 100 MiB, 1, 99, 5, 0", `memory.total "100 MiB"`},
		{"memory N/A", "1, GPU-b, A100, 100, [N/A], 99, 5, 0", `memory.used "[N/A]"`},
		{"negative free", "1, GPU-b, A100, 100, 1, -99, 5, 0", `memory.free "-99"`},
		{"utilisation with unit", "1, GPU-b, A100, 100, 1, 99, 5 %, 0", `utilization.gpu "5 %"`},
		{"utilisation over 100", "1, GPU-b, A100, 100, 1, 99, 101, 0", `utilization.gpu "101"`},
		{"negative ECC errors", "1, GPU-b, A100, 100, 1, 99, 5, -2", `ecc.errors.uncorrected.volatile.total "-2"`},
		{"ECC error text", "1, GPU-b, A100, 100, 1, 99, 5, [Unknown Error]", `ecc.errors.uncorrected.volatile.total "[Unknown Error]"`},
		{"duplicate index", "0, GPU-b, A100, 100, 1, 99, 5, 0", "GPU index 0 appears twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseNvidiaSMI([]byte(good + tc.line + "\n"))
			if err == nil {
				t.Fatalf("ParseNvidiaSMI(%q) succeeded, want an error", tc.line)
			}
			for _, want := range []string{"line 2", tc.want} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func FuzzParseNvidiaSMI(f *testing.F) {
	f.Add([]byte("0, GPU-a, NVIDIA A100-SXM4-80GB, 81920, 1024, 80468, 37, 0\n1, GPU-b, T4, 15360, 0, 15000, [N/A], [N/A]\n"))
	f.Add([]byte("0, GPU-a, Name, with, commas, 1, 2, 3, [Not Supported], 7"))
	f.Add([]byte(",,,,,,,\n"))
	f.Add([]byte("No devices were found\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		gpus, err := ParseNvidiaSMI(out)
		if err != nil {
			return
		}
		seen := make(map[int]bool)
		for _, g := range gpus {
			if g.Index < 0 || g.UUID == "" || g.MemoryTotalMB < 0 || g.MemoryUsedMB < 0 || g.MemoryFreeMB < 0 {
				t.Fatalf("ParseNvidiaSMI returned an invalid GPU %+v", g)
			}
			if g.UtilizationPct < -1 || g.UtilizationPct > 100 {
				t.Fatalf("ParseNvidiaSMI returned utilisation %d", g.UtilizationPct)
			}
			if g.Unhealthy != "" && !strings.HasSuffix(g.Unhealthy, "uncorrectable ECC error") && !strings.HasSuffix(g.Unhealthy, "uncorrectable ECC errors") {
				t.Fatalf("ParseNvidiaSMI returned the unhealthy reason %q", g.Unhealthy)
			}
			if seen[g.Index] {
				t.Fatalf("ParseNvidiaSMI returned index %d twice", g.Index)
			}
			seen[g.Index] = true
		}
	})
}

func fakeNvidiaSMI(t *testing.T) string {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("testdata", "nvidia-smi"))
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func TestProbeResourcesFakeNvidiaSMI(t *testing.T) {
	probe, err := ProbeResources(context.Background(), fakeNvidiaSMI(t))
	if err != nil {
		t.Fatal(err)
	}

	if !reflect.DeepEqual(probe.GPUs, fakeGPUs) {
		t.Errorf("GPUs =\n%+v\nwant\n%+v", probe.GPUs, fakeGPUs)
	}
	if !probe.ComputeApps {
		t.Error("ComputeApps is false, want true: the fake answers --query-compute-apps")
	}
	if probe.CPUs <= 0 {
		t.Errorf("CPUs = %v, want more than 0", probe.CPUs)
	}
	if probe.MemoryTotalMB <= 0 || probe.MemoryAvailableMB <= 0 || probe.MemoryAvailableMB > probe.MemoryTotalMB {
		t.Errorf("memory total %d MiB, available %d MiB: want 0 < available <= total", probe.MemoryTotalMB, probe.MemoryAvailableMB)
	}
}

func TestProbeResourcesNvidiaSMIFromPath(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile(fakeNvidiaSMI(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nvidia-smi"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)

	probe, err := ProbeResources(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(probe.GPUs) != 2 {
		t.Errorf("found %d GPUs through PATH, want 2", len(probe.GPUs))
	}
}

func TestProbeResourcesNoNvidiaSMIInPath(t *testing.T) {
	t.Setenv("PATH", t.TempDir())

	probe, err := ProbeResources(context.Background(), "")
	if err != nil {
		t.Fatalf("ProbeResources without nvidia-smi in PATH: %v, want no error", err)
	}
	if len(probe.GPUs) != 0 {
		t.Errorf("GPUs = %+v, want none", probe.GPUs)
	}
}

func TestProbeResourcesMissingNvidiaSMIPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nvidia-smi")

	probe, err := ProbeResources(context.Background(), path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ProbeResources(%q) error = %v, want fs.ErrNotExist", path, err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the path", err)
	}
	if len(probe.GPUs) != 0 {
		t.Errorf("GPUs = %+v, want none", probe.GPUs)
	}
	if probe.CPUs <= 0 || probe.MemoryTotalMB <= 0 {
		t.Errorf("probe = %+v: want CPU and memory figures despite the GPU error", probe)
	}
}

func TestProbeResourcesFailingNvidiaSMI(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nvidia-smi")
	script := "#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"\nexit 9\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	_, err := ProbeResources(context.Background(), path)
	if err == nil {
		t.Fatal("ProbeResources succeeded, want an error")
	}
	for _, want := range []string{"exit status 9", "couldn't communicate"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestParseComputeApps(t *testing.T) {
	out := "1234, GPU-aaaa, 12288\r\n" +
		"\n" +
		"1240, GPU-aaaa, [N/A]\n" +
		" 99 , GPU-bbbb , 0 \n"

	apps, err := ParseComputeApps([]byte(out))
	if err != nil {
		t.Fatal(err)
	}

	want := []ComputeApp{
		{PID: 1234, GPUUUID: "GPU-aaaa", UsedMB: 12288},
		{PID: 1240, GPUUUID: "GPU-aaaa", UsedMB: 0},
		{PID: 99, GPUUUID: "GPU-bbbb", UsedMB: 0},
	}
	if !reflect.DeepEqual(apps, want) {
		t.Errorf("ParseComputeApps =\n%+v\nwant\n%+v", apps, want)
	}
}

func TestParseComputeAppsNone(t *testing.T) {
	for _, out := range []string{"", "\n", "No running processes found\n"} {
		apps, err := ParseComputeApps([]byte(out))
		if err != nil {
			t.Errorf("ParseComputeApps(%q): %v", out, err)
		}
		if len(apps) != 0 {
			t.Errorf("ParseComputeApps(%q) = %+v, want no processes", out, apps)
		}
	}
}

func TestParseComputeAppsRejects(t *testing.T) {
	good := "1234, GPU-a, 100\n"
	cases := []struct {
		name string
		line string
		want string
	}{
		{"too few fields", "1234, GPU-a", "2 comma-separated fields, expected 3"},
		{"too many fields", "1234, GPU-a, 100, python3", "4 comma-separated fields, expected 3"},
		{"bad pid", "x, GPU-a, 100", `pid "x"`},
		{"zero pid", "0, GPU-a, 100", `pid "0"`},
		{"empty uuid", "1234, , 100", "gpu_uuid is empty"},
		{"memory with unit", "1234, GPU-a, 100 MiB", `used_memory "100 MiB"`},
		{"negative memory", "1234, GPU-a, -1", `used_memory "-1"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseComputeApps([]byte(good + tc.line + "\n"))
			if err == nil {
				t.Fatalf("ParseComputeApps(%q) succeeded, want an error", tc.line)
			}
			for _, want := range []string{"line 2", tc.want} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func FuzzParseComputeApps(f *testing.F) {
	f.Add([]byte("1234, GPU-a, 12288\n1240, GPU-b, [N/A]\n"))
	f.Add([]byte("No running processes found\n"))
	f.Add([]byte(",,\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		apps, err := ParseComputeApps(out)
		if err != nil {
			return
		}
		for _, app := range apps {
			if app.PID <= 0 || app.GPUUUID == "" || app.UsedMB < 0 {
				t.Fatalf("ParseComputeApps returned an invalid process %+v", app)
			}
		}
	})
}

func TestProbeResourcesComputeAppsFail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nvidia-smi")
	script := "#!/bin/sh\ncase \"$1\" in\n--query-gpu=*) echo '0, GPU-a, A100, 100, 1, 99, 5, 0' ;;\n*) echo 'Failed to query compute apps' >&2; exit 3 ;;\nesac\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	probe, err := ProbeResources(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "Failed to query compute apps") {
		t.Errorf("error = %v, want the compute-apps failure", err)
	}
	if len(probe.GPUs) != 1 || probe.GPUs[0].UUID != "GPU-a" {
		t.Errorf("GPUs = %+v, want GPU-a despite the compute-apps failure", probe.GPUs)
	}
	if probe.ComputeApps {
		t.Error("ComputeApps is true after the compute-apps query failed")
	}
}
