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

// fakeGPUs are the GPUs that testdata/nvidia-smi prints.
var fakeGPUs = []messages.GPU{
	{Index: 0, UUID: "GPU-5a3cbd2e-1f0a-4c1e-9d77-0c1a2b3c4d5e", Name: "NVIDIA A100-SXM4-80GB", MemoryTotalMB: 81920, MemoryUsedMB: 1024, MemoryFreeMB: 80468, UtilizationPct: 37},
	{Index: 1, UUID: "GPU-9f8e7d6c-5b4a-3c2d-1e0f-a1b2c3d4e5f6", Name: "NVIDIA GeForce RTX 4090", MemoryTotalMB: 24564, MemoryUsedMB: 0, MemoryFreeMB: 24210, UtilizationPct: -1},
}

func TestParseNvidiaSMI(t *testing.T) {
	out := "0, GPU-aaaa, NVIDIA H100 80GB HBM3, 81559, 4, 81001, 0\r\n" +
		"\n" +
		"1, GPU-bbbb, Tesla T4, 15360, 2048, 12932, [N/A]\n" +
		"2, GPU-cccc, Quadro RTX 6000, with comma, 24576, 1, 24212, [Not Supported]\n"

	gpus, err := ParseNvidiaSMI([]byte(out))
	if err != nil {
		t.Fatal(err)
	}

	want := []messages.GPU{
		{Index: 0, UUID: "GPU-aaaa", Name: "NVIDIA H100 80GB HBM3", MemoryTotalMB: 81559, MemoryUsedMB: 4, MemoryFreeMB: 81001, UtilizationPct: 0},
		{Index: 1, UUID: "GPU-bbbb", Name: "Tesla T4", MemoryTotalMB: 15360, MemoryUsedMB: 2048, MemoryFreeMB: 12932, UtilizationPct: -1},
		{Index: 2, UUID: "GPU-cccc", Name: "Quadro RTX 6000, with comma", MemoryTotalMB: 24576, MemoryUsedMB: 1, MemoryFreeMB: 24212, UtilizationPct: -1},
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
	good := "0, GPU-a, A100, 100, 1, 99, 5\n"
	cases := []struct {
		name string
		line string
		want string
	}{
		{"too few fields", "0, GPU-a, A100, 100, 1, 99", "6 comma-separated fields, expected 7"},
		{"error text", "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", "expected 7"},
		{"bad index", "x, GPU-a, A100, 100, 1, 99, 5", `index "x"`},
		{"negative index", "-1, GPU-a, A100, 100, 1, 99, 5", `index "-1"`},
		{"empty uuid", "1, , A100, 100, 1, 99, 5", "uuid is empty"},
		{"memory with unit", "1, GPU-b, A100, 100 MiB, 1, 99, 5", `memory.total "100 MiB"`},
		{"memory N/A", "1, GPU-b, A100, 100, [N/A], 99, 5", `memory.used "[N/A]"`},
		{"negative free", "1, GPU-b, A100, 100, 1, -99, 5", `memory.free "-99"`},
		{"utilisation with unit", "1, GPU-b, A100, 100, 1, 99, 5 %", `utilization.gpu "5 %"`},
		{"utilisation over 100", "1, GPU-b, A100, 100, 1, 99, 101", `utilization.gpu "101"`},
		{"duplicate index", "0, GPU-b, A100, 100, 1, 99, 5", "GPU index 0 appears twice"},
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
	f.Add([]byte("0, GPU-a, NVIDIA A100-SXM4-80GB, 81920, 1024, 80468, 37\n1, GPU-b, T4, 15360, 0, 15000, [N/A]\n"))
	f.Add([]byte("0, GPU-a, Name, with, commas, 1, 2, 3, [Not Supported]"))
	f.Add([]byte(",,,,,,\n"))
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
