package test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/messages"
	"github.com/jetqueue/jetqueue/worker"
)

// pluginsDir is the example plugins' directory, relative to this package.
const pluginsDir = "../examples/plugins"

// processesWith returns the pids whose command line contains s.
func processesWith(s string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, d := range entries {
		var pid int
		if _, err := fmt.Sscanf(d.Name(), "%d", &pid); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if strings.Contains(string(cmdline), s) && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestStubbornCancelLeavesNoProcess(t *testing.T) {
	for _, plugin := range []string{"sleep", "sleep-exec"} {
		t.Run(plugin, func(t *testing.T) {
			e := newEnv(t, nil)
			e.startWorker(worker.Config{Name: "w1", MaxJobs: 2, PluginsDir: pluginsDir}, nil)

			id := e.submit(plugin, map[string]any{"seconds": 60, "stubborn": true})
			e.waitStatus(id, messages.StatusRunning, 20*time.Second)
			e.eventually(20*time.Second, "the stubborn child process", func() bool { return len(processesWith(id)) > 0 })

			began := time.Now()
			if _, err := e.client.Cancel(context.Background(), id); err != nil {
				t.Fatalf("cancel: %v", err)
			}
			// The sleep manifests set cancel_timeout 1s and kill_grace 1s.
			limit := 1*time.Second + 1*time.Second + 1*time.Second
			j := e.wait(id, 20*time.Second)
			took := time.Since(began)
			if j.Status != messages.StatusCancelled {
				t.Fatalf("stubborn job ended %s (%s), want cancelled", j.Status, j.Error)
			}
			if took > limit+time.Second {
				t.Fatalf("cancel took %s, want at most %s", took, limit)
			}
			if left := processesWith(id); len(left) > 0 {
				t.Fatalf("processes with the job id survived the cancel: %v", left)
			}
			if j.CancelPhase != messages.CancelKill {
				t.Fatalf("cancel phase = %q, want %q", j.CancelPhase, messages.CancelKill)
			}
			t.Logf("stubborn cancel took %s", took)

			// The persistent plugin's process had to be killed; the next job
			// gets a fresh one and completes.
			next := e.submit(plugin, map[string]any{"seconds": 0.1})
			if j := e.wait(next, 20*time.Second); j.Status != messages.StatusCompleted {
				t.Fatalf("job after the kill ended %s: %s", j.Status, j.Error)
			}
		})
	}
}

func TestCooperativeCancelOfPluginProcess(t *testing.T) {
	e := newEnv(t, nil)
	e.startWorker(worker.Config{Name: "w1", MaxJobs: 1, PluginsDir: pluginsDir}, nil)
	id := e.submit("sleep", map[string]any{"seconds": 60})
	e.eventually(20*time.Second, "progress of the sleep job", func() bool {
		j := e.get(id)
		return j.Status == messages.StatusRunning && j.Progress > 0
	})
	if _, err := e.client.Cancel(context.Background(), id); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	j := e.wait(id, 10*time.Second)
	if j.Status != messages.StatusCancelled {
		t.Fatalf("cooperative cancel ended %s (%s), want cancelled", j.Status, j.Error)
	}
	if j.CancelPhase != messages.CancelCooperative {
		t.Fatalf("cancel phase = %q, want %q: the plugin stopped on the cancel message", j.CancelPhase, messages.CancelCooperative)
	}
}

// treeDigest computes what hash-files reports for dir: regular files
// (symlinks not followed), their total size, and the SHA-256 over
// "relpath\0<hex sha256 of the file>\n" in sorted path order.
func treeDigest(t *testing.T, dir string) (files int, bytes int64, digest string) {
	t.Helper()
	type entry struct{ rel, sum string }
	var entries []entry
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		sum := sha256.Sum256(data)
		entries = append(entries, entry{filepath.ToSlash(rel), hex.EncodeToString(sum[:])})
		files++
		bytes += int64(len(data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].rel < entries[j].rel })
	h := sha256.New()
	for _, e := range entries {
		fmt.Fprintf(h, "%s\x00%s\n", e.rel, e.sum)
	}
	return files, bytes, hex.EncodeToString(h.Sum(nil))
}

func TestHashFilesOnRealDirectory(t *testing.T) {
	e := newEnv(t, nil)
	e.startWorker(worker.Config{Name: "w1", MaxJobs: 2, PluginsDir: pluginsDir}, nil)

	dir, err := filepath.Abs("../messages")
	if err != nil {
		t.Fatal(err)
	}
	files, bytes, digest := treeDigest(t, dir)

	id := e.submit("hash-files", map[string]any{"path": dir}, client.Priority(3))
	j := e.wait(id, 30*time.Second)
	if j.Status != messages.StatusCompleted {
		t.Fatalf("hash-files ended %s: %s", j.Status, j.Error)
	}
	v, err := j.Result.Value()
	if err != nil {
		t.Fatalf("decode result: %v", err)
	}
	result, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("result %v is not a map", v)
	}
	if got := fmt.Sprint(result["files"]); got != fmt.Sprint(files) {
		t.Fatalf("files = %s, want %d", got, files)
	}
	if got := fmt.Sprint(result["bytes"]); got != fmt.Sprint(bytes) {
		t.Fatalf("bytes = %s, want %d", got, bytes)
	}
	if result["sha256"] != digest {
		t.Fatalf("sha256 = %v, want %s", result["sha256"], digest)
	}
	if j.Progress != 1 {
		t.Fatalf("progress of the completed job = %v, want 1", j.Progress)
	}
}
