package cli

import (
	"flag"
	"io"
	"reflect"
	"testing"

	"github.com/jetqueue/jetqueue/messages"
)

func TestWorkerGPUsFlag(t *testing.T) {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var wf workerFlags
	wf.register(fs, 1)
	if _, err := parseInterspersed(fs, []string{"--gpus", "0:24576, 1:8192:Gaudi2"}); err != nil {
		t.Fatal(err)
	}

	cfg := wf.config("jq", nil)
	want := []messages.GPU{
		{Index: 0, Name: "GPU", MemoryTotalMB: 24576, UtilizationPct: -1},
		{Index: 1, Name: "Gaudi2", MemoryTotalMB: 8192, UtilizationPct: -1},
	}
	if !reflect.DeepEqual(cfg.StaticGPUs, want) {
		t.Errorf("StaticGPUs =\n%+v\nwant\n%+v", cfg.StaticGPUs, want)
	}
	if err := wf.check(); err != nil {
		t.Errorf("check: %v", err)
	}
	if got := fs.Lookup("gpus").Value.String(); got != "0:24576, 1:8192:Gaudi2" {
		t.Errorf("flag value = %q, want the spec as given", got)
	}
}

func TestWorkerGPUsFlagRejects(t *testing.T) {
	for _, command := range []string{"worker", "serve"} {
		res := runCLI(t, nil, command, "--gpus", "0:lots")
		if res.code != ExitUsage {
			t.Errorf("%s --gpus 0:lots exited %d, want %d", command, res.code, ExitUsage)
		}
		wantContains(t, command+" stderr", res.stderr, "flag -gpus", `memory "lots" is not a size in MiB`)

		res = runCLI(t, nil, command, "--gpus", "0:1024", "--nvidia-smi", "/usr/bin/nvidia-smi")
		if res.code != ExitUsage {
			t.Errorf("%s with --gpus and --nvidia-smi exited %d, want %d", command, res.code, ExitUsage)
		}
		wantContains(t, command+" stderr", res.stderr, "--gpus and --nvidia-smi are both set")
	}
}
