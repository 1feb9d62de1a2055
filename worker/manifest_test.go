package worker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

func TestParseManifestDefaults(t *testing.T) {
	m, err := ParseManifest([]byte(`{"name": "echo", "command": ["python3", "echo.py"]}`), "testdata")
	if err != nil {
		t.Fatal(err)
	}

	if m.Name != "echo" {
		t.Errorf("Name = %q, want echo", m.Name)
	}
	if m.Mode != messages.ModePersistent {
		t.Errorf("Mode = %q, want %q", m.Mode, messages.ModePersistent)
	}
	if m.CancelTimeout != DefaultCancelTimeout {
		t.Errorf("CancelTimeout = %v, want %v", m.CancelTimeout, DefaultCancelTimeout)
	}
	if m.KillGrace != DefaultKillGrace {
		t.Errorf("KillGrace = %v, want %v", m.KillGrace, DefaultKillGrace)
	}
	if m.IdleTimeout != DefaultIdleTimeout {
		t.Errorf("IdleTimeout = %v, want %v", m.IdleTimeout, DefaultIdleTimeout)
	}
	if m.Instances != 1 {
		t.Errorf("Instances = %d, want 1", m.Instances)
	}
	if m.Resources != (messages.Resources{}) {
		t.Errorf("Resources = %+v, want zero", m.Resources)
	}
	want, _ := filepath.Abs("testdata")
	if m.Dir != want {
		t.Errorf("Dir = %q, want %q", m.Dir, want)
	}
}

func TestParseManifestAllFields(t *testing.T) {
	data := `{"name": "hash-files", "command": ["python3", "hash_files.py"], "mode": "exec",
		"resources": {"gpus": 2, "gpu_memory_mb": 8000, "memory_mb": 256, "cpus": 1.5},
		"cancel_timeout": "4s", "kill_grace": "500ms", "idle_timeout": "1m", "instances": 3,
		"env": {"HF_HOME": "/models"}}`
	m, err := ParseManifest([]byte(data), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	if m.Mode != messages.ModeExec {
		t.Errorf("Mode = %q, want exec", m.Mode)
	}
	wantRes := messages.Resources{GPUs: 2, GPUMemoryMB: 8000, MemoryMB: 256, CPUs: 1.5}
	if m.Resources != wantRes {
		t.Errorf("Resources = %+v, want %+v", m.Resources, wantRes)
	}
	if m.CancelTimeout != 4*time.Second || m.KillGrace != 500*time.Millisecond || m.IdleTimeout != time.Minute {
		t.Errorf("durations = %v, %v, %v; want 4s, 500ms, 1m", m.CancelTimeout, m.KillGrace, m.IdleTimeout)
	}
	if m.Instances != 3 {
		t.Errorf("Instances = %d, want 3", m.Instances)
	}
	if m.Env["HF_HOME"] != "/models" {
		t.Errorf("Env = %v, want HF_HOME=/models", m.Env)
	}
	if strings.Join(m.Command, " ") != "python3 hash_files.py" {
		t.Errorf("Command = %q", m.Command)
	}
}

func TestParseManifestAliases(t *testing.T) {
	cases := []struct {
		name string
		json string
		want messages.Resources
	}{
		{
			name: "top level",
			json: `{"name": "a", "command": ["x"], "requires_gpu": true, "min_gpu_vram_mb": 4096, "min_system_ram_mb": 2048}`,
			want: messages.Resources{GPUs: 1, GPUMemoryMB: 4096, MemoryMB: 2048},
		},
		{
			name: "in resources",
			json: `{"name": "a", "command": ["x"], "resources": {"requires_gpu": true, "min_gpu_vram_mb": 100, "min_system_ram_mb": 200, "cpus": 2}}`,
			want: messages.Resources{GPUs: 1, GPUMemoryMB: 100, MemoryMB: 200, CPUs: 2},
		},
		{
			name: "requires_gpu keeps gpus",
			json: `{"name": "a", "command": ["x"], "requires_gpu": true, "resources": {"gpus": 4}}`,
			want: messages.Resources{GPUs: 4},
		},
		{
			name: "requires_gpu false",
			json: `{"name": "a", "command": ["x"], "requires_gpu": false}`,
			want: messages.Resources{},
		},
		{
			name: "alias equal to key",
			json: `{"name": "a", "command": ["x"], "resources": {"memory_mb": 64, "min_system_ram_mb": 64}}`,
			want: messages.Resources{MemoryMB: 64},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseManifest([]byte(tc.json), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if m.Resources != tc.want {
				t.Errorf("Resources = %+v, want %+v", m.Resources, tc.want)
			}
		})
	}
}

func TestParseManifestIdleTimeout(t *testing.T) {
	cases := map[string]time.Duration{
		`0`:       DefaultIdleTimeout,
		`"0s"`:    DefaultIdleTimeout,
		`"never"`: -1,
		`"-1s"`:   -1,
		`-1`:      -1,
		`"90s"`:   90 * time.Second,
	}
	for value, want := range cases {
		data := `{"name": "a", "command": ["x"], "idle_timeout": ` + value + `}`
		m, err := ParseManifest([]byte(data), t.TempDir())
		if err != nil {
			t.Errorf("idle_timeout %s: %v", value, err)
			continue
		}
		if m.IdleTimeout != want {
			t.Errorf("idle_timeout %s: IdleTimeout = %v, want %v", value, m.IdleTimeout, want)
		}
	}
}

func TestParseManifestRejects(t *testing.T) {
	cases := []struct {
		name string
		json string
		want []string // substrings of the error
	}{
		{"not JSON", `{"name": `, []string{"not valid JSON"}},
		{"not an object", `["name"]`, []string{"not a JSON object"}},
		{"trailing data", `{"name": "a", "command": ["x"]} {}`, []string{"after its closing brace"}},
		{"duplicate key", `{"name": "a", "name": "b", "command": ["x"]}`, []string{`"name" twice`}},
		{"unknown key", `{"name": "a", "command": ["x"], "gpu": 1}`, []string{`unknown key "gpu"`, "remove it"}},
		{"unknown resource key", `{"name": "a", "command": ["x"], "resources": {"vram": 1}}`, []string{`unknown key "vram" in resources`}},
		{"resources not an object", `{"name": "a", "command": ["x"], "resources": 3}`, []string{"resources is not a JSON object"}},
		{"name missing", `{"command": ["x"]}`, []string{"field name is missing"}},
		{"name null", `{"name": null, "command": ["x"]}`, []string{"field name is null"}},
		{"name with space", `{"name": "my plugin", "command": ["x"]}`, []string{"field name", `"my plugin"`, "use only letters"}},
		{"name not a string", `{"name": 7, "command": ["x"]}`, []string{"field name is 7", "a string"}},
		{"command missing", `{"name": "a"}`, []string{"field command is empty"}},
		{"command empty", `{"name": "a", "command": []}`, []string{"field command is empty"}},
		{"command empty program", `{"name": "a", "command": [""]}`, []string{"field command is empty"}},
		{"command a string", `{"name": "a", "command": "python3 x.py"}`, []string{"field command is", "an array of strings"}},
		{"bad mode", `{"name": "a", "command": ["x"], "mode": "daemon"}`, []string{"field mode", `"daemon"`, `"persistent"`, `"exec"`}},
		{"empty mode", `{"name": "a", "command": ["x"], "mode": ""}`, []string{"field mode is empty"}},
		{"in-process mode", `{"name": "a", "command": ["x"], "mode": "in-process"}`, []string{"field mode", `"in-process"`}},
		{"negative gpus", `{"name": "a", "command": ["x"], "resources": {"gpus": -1}}`, []string{"field gpus is -1", "negative"}},
		{"too many gpus", `{"name": "a", "command": ["x"], "resources": {"gpus": 65}}`, []string{"resources.gpus is 65"}},
		{"fractional gpus", `{"name": "a", "command": ["x"], "resources": {"gpus": 0.5}}`, []string{"field gpus is 0.5", "integer"}},
		{"negative memory", `{"name": "a", "command": ["x"], "resources": {"memory_mb": -5}}`, []string{"field memory_mb is -5"}},
		{"negative alias", `{"name": "a", "command": ["x"], "min_system_ram_mb": -5}`, []string{"field min_system_ram_mb is -5"}},
		{"negative gpu memory", `{"name": "a", "command": ["x"], "min_gpu_vram_mb": -1}`, []string{"field min_gpu_vram_mb is -1"}},
		{"negative cpus", `{"name": "a", "command": ["x"], "resources": {"cpus": -0.5}}`, []string{"field cpus is -0.5"}},
		{"cpus a string", `{"name": "a", "command": ["x"], "resources": {"cpus": "2"}}`, []string{`field cpus is "2"`, "a number"}},
		{"alias conflict", `{"name": "a", "command": ["x"], "resources": {"memory_mb": 1, "min_system_ram_mb": 2}}`, []string{"memory_mb is 1", "min_system_ram_mb is 2"}},
		{"top and resources differ", `{"name": "a", "command": ["x"], "memory_mb": 1, "resources": {"memory_mb": 2}}`, []string{"unknown key \"memory_mb\""}},
		{"requires_gpu top and resources differ", `{"name": "a", "command": ["x"], "requires_gpu": true, "resources": {"requires_gpu": false}}`, []string{"requires_gpu is true at the top level but false in resources"}},
		{"requires_gpu false with gpus", `{"name": "a", "command": ["x"], "requires_gpu": false, "resources": {"gpus": 1}}`, []string{"requires_gpu is false but gpus is 1"}},
		{"requires_gpu true with gpus 0", `{"name": "a", "command": ["x"], "requires_gpu": true, "resources": {"gpus": 0}}`, []string{"requires_gpu is true but gpus is 0"}},
		{"requires_gpu not a bool", `{"name": "a", "command": ["x"], "requires_gpu": "yes"}`, []string{`field requires_gpu is "yes"`, "true or false"}},
		{"bad duration", `{"name": "a", "command": ["x"], "cancel_timeout": "3 seconds"}`, []string{"field cancel_timeout", `"3 seconds"`, "not a duration"}},
		{"duration as number", `{"name": "a", "command": ["x"], "kill_grace": 2}`, []string{"field kill_grace is the number 2", "Go duration string"}},
		{"negative cancel_timeout", `{"name": "a", "command": ["x"], "cancel_timeout": "-1s"}`, []string{"field cancel_timeout", `"-1s"`, "positive"}},
		{"negative kill_grace", `{"name": "a", "command": ["x"], "kill_grace": -1}`, []string{"field kill_grace is the number -1"}},
		{"bad idle_timeout", `{"name": "a", "command": ["x"], "idle_timeout": "soon"}`, []string{"field idle_timeout", `"soon"`, `"never"`}},
		{"instances zero", `{"name": "a", "command": ["x"], "instances": 0}`, []string{"field instances is 0", "1 or more"}},
		{"instances negative", `{"name": "a", "command": ["x"], "instances": -2}`, []string{"field instances is -2"}},
		{"instances fractional", `{"name": "a", "command": ["x"], "instances": 1.5}`, []string{"field instances is 1.5", "an integer"}},
		{"env not strings", `{"name": "a", "command": ["x"], "env": {"A": 1}}`, []string{"field env is", "string values"}},
		{"env bad key", `{"name": "a", "command": ["x"], "env": {"A=B": "1"}}`, []string{`invalid variable name "A=B"`}},
		{"env reserved key", `{"name": "a", "command": ["x"], "env": {"CUDA_VISIBLE_DEVICES": "0"}}`, []string{"env sets CUDA_VISIBLE_DEVICES", "remove it"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := ParseManifest([]byte(tc.json), dir)
			if err == nil {
				t.Fatalf("ParseManifest(%s) succeeded, want an error", tc.json)
			}
			for _, want := range append(tc.want, dir) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestLoadManifestsExamples(t *testing.T) {
	manifests, err := LoadManifests(filepath.Join("..", "examples", "plugins"))
	if err != nil {
		t.Fatal(err)
	}

	byName := make(map[string]*Manifest)
	for _, m := range manifests {
		byName[m.Name] = m
		if !filepath.IsAbs(m.Dir) {
			t.Errorf("%s: Dir %q is not absolute", m.Name, m.Dir)
		}
	}
	want := map[string]string{
		"hash-files": messages.ModePersistent,
		"compress":   messages.ModeExec,
		"sleep":      messages.ModePersistent,
		"sleep-exec": messages.ModeExec,
	}
	if len(byName) != len(want) {
		t.Errorf("loaded %d manifests, want %d", len(byName), len(want))
	}
	for name, mode := range want {
		m, ok := byName[name]
		if !ok {
			t.Errorf("manifest %q not loaded", name)
			continue
		}
		if m.Mode != mode {
			t.Errorf("%s: Mode = %q, want %q", name, m.Mode, mode)
		}
	}
	if m := byName["hash-files"]; m != nil && m.Resources.MemoryMB != 256 {
		t.Errorf("hash-files: memory_mb = %d, want 256", m.Resources.MemoryMB)
	}
	for _, name := range []string{"sleep", "sleep-exec"} {
		if m := byName[name]; m != nil && (m.CancelTimeout != time.Second || m.KillGrace != time.Second) {
			t.Errorf("%s: cancel_timeout %v, kill_grace %v; want 1s and 1s", name, m.CancelTimeout, m.KillGrace)
		}
	}
}

func TestLoadManifestsErrorNamesFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "good.json"), `{"name": "good", "command": ["x"]}`)
	bad := filepath.Join(dir, "bad.json")
	writeFile(t, bad, `{"name": "bad", "command": ["x"], "instances": "two"}`)

	_, err := LoadManifests(dir)
	if err == nil {
		t.Fatal("LoadManifests succeeded, want an error")
	}
	for _, want := range []string{bad, "field instances", `"two"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestLoadManifestsDuplicateName(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.json"), `{"name": "same", "command": ["x"]}`)
	writeFile(t, filepath.Join(dir, "b.json"), `{"name": "same", "command": ["y"]}`)

	_, err := LoadManifests(dir)
	if err == nil || !strings.Contains(err.Error(), `both name plugin "same"`) {
		t.Fatalf("LoadManifests error = %v, want a duplicate name error", err)
	}
}

func TestLoadManifestsMissingDir(t *testing.T) {
	_, err := LoadManifests(filepath.Join(t.TempDir(), "absent"))
	if err == nil || !strings.Contains(err.Error(), "absent") {
		t.Fatalf("LoadManifests error = %v, want one naming the directory", err)
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"name": "hash-files", "command": ["python3", "hash_files.py"], "mode": "persistent", "resources": {"memory_mb": 256}}`))
	f.Add([]byte(`{"name": "a", "command": ["x"], "requires_gpu": true, "min_gpu_vram_mb": 1, "idle_timeout": "never"}`))
	f.Add([]byte(`{"name": "a", "command": ["x"], "resources": {"cpus": 1e308, "gpus": 1}, "env": {"A": "b"}}`))
	f.Add([]byte(`{"name": "a", "command": ["x"], "cancel_timeout": 0, "kill_grace": "1h", "instances": 9}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data, "/plugins")
		if err != nil {
			return
		}
		if err := m.validate(); err != nil {
			t.Fatalf("ParseManifest returned a manifest that fails validation: %v", err)
		}
		if m.CancelTimeout <= 0 || m.KillGrace <= 0 || m.IdleTimeout == 0 || m.Instances < 1 {
			t.Fatalf("ParseManifest returned a manifest without defaults: %+v", m)
		}
	})
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
