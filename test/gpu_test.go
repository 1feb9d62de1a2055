package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/messages"
	"github.com/jetqueue/jetqueue/worker"
)

// fakeGPUDir holds the fake nvidia-smi and the model plugin that pretends
// to load a model into GPU memory.
const fakeGPUDir = "testdata/gpu"

// fakeGPUWorker starts a worker whose nvidia-smi is the fake, with one GPU
// of totalMB MiB of which externalMB are used outside jetqueue, and one
// model plugin per entry of models (name to model size in MiB).
func (e *env) fakeGPUWorker(name string, totalMB, externalMB int64, models map[string]int64) {
	e.t.Helper()
	dir := e.t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o755); err != nil {
		e.t.Fatal(err)
	}
	config := map[string]any{
		"gpus":      []map[string]any{{"index": 0, "uuid": "GPU-" + name, "name": "Fake A100", "memory_total_mb": totalMB, "ecc_errors": 0, "external_used_mb": externalMB}},
		"state_dir": state,
	}
	configPath := filepath.Join(dir, "fake-gpu.json")
	writeJSON(e.t, configPath, config)
	e.t.Setenv("FAKE_GPU_CONFIG", configPath)

	abs, err := filepath.Abs(fakeGPUDir)
	if err != nil {
		e.t.Fatal(err)
	}
	plugins := filepath.Join(dir, "plugins")
	if err := os.Mkdir(plugins, 0o755); err != nil {
		e.t.Fatal(err)
	}
	for model, mb := range models {
		writeJSON(e.t, filepath.Join(plugins, model+".json"), map[string]any{
			"name": model, "command": []string{"python3", filepath.Join(abs, "gpu_model.py")}, "mode": "persistent",
			"resources": map[string]any{"gpus": 1, "gpu_memory_mb": mb}, "instances": 3,
			"env": map[string]string{"GPU_MODEL_MB": fmt.Sprint(mb)}, "cancel_timeout": "1s", "kill_grace": "1s",
		})
	}
	e.startWorker(worker.Config{Name: name, MaxJobs: 4, PluginsDir: plugins, NvidiaSMI: filepath.Join(abs, "fake-nvidia-smi"), ProbeInterval: 200 * time.Millisecond}, nil)
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestGPUJobsShareByFreeMemory(t *testing.T) {
	e := newEnv(t, nil)
	e.fakeGPUWorker("gpu-host", 24_576, 0, map[string]int64{"llm": 12_288})

	var ids []string
	for i := range 3 {
		ids = append(ids, e.submit("llm", map[string]any{"seconds": 2, "i": i}))
	}
	e.eventually(20*time.Second, "two jobs running", func() bool {
		return e.get(ids[0]).Status == messages.StatusRunning && e.get(ids[1]).Status == messages.StatusRunning
	})
	third := e.get(ids[2])
	if third.Status != messages.StatusPending {
		t.Fatalf("third 12 GiB job is %s on a 24 GiB GPU with two running, want pending", third.Status)
	}
	if !strings.Contains(third.PendingReason, "12,288 MiB free") {
		t.Fatalf("pending reason %q does not say it waits for GPU memory", third.PendingReason)
	}
	for _, id := range ids {
		if j := e.wait(id, 30*time.Second); j.Status != messages.StatusCompleted {
			t.Fatalf("job %s ended %s: %s", id, j.Status, j.Error)
		}
	}
}

func TestGPUMemoryUsedOutsideIsRespected(t *testing.T) {
	e := newEnv(t, nil)
	// 16,000 MiB are taken by a process jetqueue does not know about.
	e.fakeGPUWorker("shared", 24_576, 16_000, map[string]int64{"llm": 12_288, "small": 4_096})

	big := e.submit("llm", map[string]any{"seconds": 0.2}, client.Priority(1))
	e.eventually(10*time.Second, "the big job to wait for memory", func() bool {
		return strings.Contains(e.get(big).PendingReason, "the most free is 8,576 MiB")
	})
	if j := e.get(big); j.Status != messages.StatusPending {
		t.Fatalf("12 GiB job is %s with 8.4 GiB really free, want pending", j.Status)
	}

	never := e.submit("llm", map[string]any{"seconds": 0.2}, client.Requirements(messages.Requirements{GPUs: ptrTo(2)}))
	e.eventually(10*time.Second, "a can-never-fit reason", func() bool {
		return strings.HasPrefix(e.get(never).PendingReason, "can never fit")
	})

	if _, err := e.client.Cancel(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	small := e.submit("small", map[string]any{"seconds": 0.2})
	if j := e.wait(small, 30*time.Second); j.Status != messages.StatusCompleted {
		t.Fatalf("4 GiB job ended %s: %s", j.Status, j.Error)
	}
}

func ptrTo[T any](v T) *T { return &v }

func TestEvictionFreesLeastRecentlyUsedIdlePlugin(t *testing.T) {
	e := newEnv(t, nil)
	e.fakeGPUWorker("gpu-host", 24_576, 0, map[string]int64{"old": 4_096, "recent": 8_192, "big": 16_384})

	// Two plugins finish a job each and stay loaded: 12 GiB held by idle
	// processes, 12 GiB free.
	for _, plugin := range []string{"old", "recent"} {
		if j := e.wait(e.submit(plugin, map[string]any{"seconds": 0.1}), 30*time.Second); j.Status != messages.StatusCompleted {
			t.Fatalf("%s job ended %s: %s", plugin, j.Status, j.Error)
		}
	}

	big := e.submit("big", map[string]any{"seconds": 0.1})
	j := e.wait(big, 30*time.Second)
	if j.Status != messages.StatusCompleted {
		t.Fatalf("16 GiB job ended %s: %s", j.Status, j.Error)
	}
	if !strings.Contains(j.StatusMessage, "") {
		t.Fatal("unreachable")
	}

	// The eviction stopped only the least recently used plugin.
	e.eventually(10*time.Second, "old evicted and recent still warm", func() bool {
		ws, err := e.client.Workers(context.Background())
		if err != nil || len(ws) != 1 {
			return false
		}
		procs := map[string]int{}
		for _, p := range ws[0].Info.Plugins {
			procs[p.Name] = len(p.Processes)
		}
		return procs["old"] == 0 && procs["recent"] == 1
	})

	events := e.jobEvents(big)
	var evicting string
	for _, ev := range events {
		if ev.Kind == messages.EventEvicting {
			evicting = ev.Job.StatusMessage
		}
	}
	if !strings.Contains(evicting, "old (pid") || strings.Contains(evicting, "recent") {
		t.Fatalf("evicting event says %q, want only the old plugin", evicting)
	}
}

// jobEvents returns every stored event of one job, oldest first.
func (e *env) jobEvents(id string) []messages.Event {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var out []messages.Event
	err := e.client.Watch(ctx, client.WatchFilter{JobID: id, DeliverAll: true}, func(ev messages.Event) error {
		out = append(out, ev)
		if ev.Job.Status.Final() && ev.Kind != messages.EventProgress {
			cancel()
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		e.t.Fatalf("watch events of %s: %v", id, err)
	}
	return out
}
