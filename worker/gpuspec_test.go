package worker

import (
	"reflect"
	"strings"
	"testing"

	"github.com/jetqueue/jetqueue/messages"
)

func TestParseGPUSpec(t *testing.T) {
	gpus, err := ParseGPUSpec(" 0:24576, 1:24576:Gaudi2 ,3:8192:Name: with colon")
	if err != nil {
		t.Fatal(err)
	}

	want := []messages.GPU{
		{Index: 0, Name: "GPU", MemoryTotalMB: 24576, UtilizationPct: -1},
		{Index: 1, Name: "Gaudi2", MemoryTotalMB: 24576, UtilizationPct: -1},
		{Index: 3, Name: "Name: with colon", MemoryTotalMB: 8192, UtilizationPct: -1},
	}
	if !reflect.DeepEqual(gpus, want) {
		t.Errorf("ParseGPUSpec =\n%+v\nwant\n%+v", gpus, want)
	}
}

func TestParseGPUSpecRejects(t *testing.T) {
	cases := []struct {
		name string
		spec string
		want string
	}{
		{"empty", " ", "GPU spec is empty"},
		{"index only", "0", `entry 1 "0": expected INDEX:MEMORY_MIB[:NAME]`},
		{"empty entry", "0:1024,", `entry 2 "": expected INDEX:MEMORY_MIB[:NAME]`},
		{"bad index", "a:1024", `index "a" is not a GPU index`},
		{"negative index", "-1:1024", `index "-1" is not a GPU index`},
		{"memory with unit", "0:24GiB", `memory "24GiB" is not a size in MiB`},
		{"zero memory", "0:0", `memory "0" is not a size in MiB`},
		{"empty name", "0:1024:", "name is empty"},
		{"duplicate index", "0:1024,0:2048", "GPU index 0 is declared twice"},
		{"too many", strings.Repeat("0:1,", 64) + "0:1", "65 GPUs declared: use at most 64"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseGPUSpec(tc.spec)
			if err == nil {
				t.Fatalf("ParseGPUSpec(%q) succeeded, want an error", tc.spec)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestConfigStaticGPUs(t *testing.T) {
	gpus := []messages.GPU{{Index: 0, MemoryTotalMB: 1024}}
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"with nvidia-smi", Config{StaticGPUs: gpus, NvidiaSMI: "/usr/bin/nvidia-smi"}, "both StaticGPUs and NvidiaSMI"},
		{"no memory", Config{StaticGPUs: []messages.GPU{{Index: 0}}}, "GPU 0 has 0 MiB of memory"},
		{"negative index", Config{StaticGPUs: []messages.GPU{{Index: -2, MemoryTotalMB: 1}}}, "GPU index -2 is negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.WithDefaults().validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("validate = %v, want an error containing %q", err, tc.want)
			}
		})
	}

	cfg := Config{StaticGPUs: gpus}.WithDefaults()
	if err := cfg.validate(); err != nil {
		t.Errorf("validate of one declared GPU: %v", err)
	}
	cfg.StaticGPUs[0].Name = "changed"
	if gpus[0].Name != "" {
		t.Error("WithDefaults shares StaticGPUs with the caller's slice")
	}
}
