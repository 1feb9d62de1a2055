package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

// hashTree computes the hash-files result for dir the way the plugin
// documents it: regular files only, symlinks skipped, sorted relative
// paths, SHA-256 over "relpath\0hex\n" per file.
func hashTree(t *testing.T, dir string) (files int, size int64, digest string) {
	t.Helper()
	type entry struct {
		rel string
		sum string
	}
	var entries []entry
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		sum := sha256.Sum256(data)
		entries = append(entries, entry{filepath.ToSlash(rel), hex.EncodeToString(sum[:])})
		size += int64(len(data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].rel < entries[j].rel })
	h := sha256.New()
	for _, e := range entries {
		h.Write([]byte(e.rel + "\x00" + e.sum + "\n"))
	}
	return len(entries), size, hex.EncodeToString(h.Sum(nil))
}

func TestHashFilesDirectory(t *testing.T) {
	p, mark := newTestPlugins(t)
	addPlugin(t, p, mark, examplesDir(t), "hash-files.json", nil)

	dir := t.TempDir()
	for name, content := range map[string]string{
		"a.txt":                 "alpha\n",
		"empty":                 "",
		"sub/b.bin":             strings.Repeat("\x00\x01\x02", 400000),
		"sub/deeper/c with spc": "gamma",
		"sub/deeper/Z":          "upper case sorts first",
		"z-last/d":              "delta",
	} {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, content)
	}
	if err := os.Symlink("a.txt", filepath.Join(dir, "link-to-file")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub", filepath.Join(dir, "link-to-dir")); err != nil {
		t.Fatal(err)
	}
	wantFiles, wantBytes, wantDigest := hashTree(t, dir)
	if wantFiles != 6 {
		t.Fatalf("test tree has %d regular files, want 6", wantFiles)
	}

	rec := &recorder{}
	out := runJob(t, context.Background(), p, Task{Job: newJob(t, "hash-files", map[string]any{"path": dir}), Reporter: rec})

	result := resultMap(t, out)
	if n, _ := asInt(result["files"]); n != wantFiles {
		t.Errorf("files = %v, want %d", result["files"], wantFiles)
	}
	if n, _ := asInt(result["bytes"]); int64(n) != wantBytes {
		t.Errorf("bytes = %v, want %d", result["bytes"], wantBytes)
	}
	if result["sha256"] != wantDigest {
		t.Errorf("sha256 = %v, want %s", result["sha256"], wantDigest)
	}
	progress := rec.progressValues()
	if len(progress) == 0 || progress[len(progress)-1] != 1 {
		t.Errorf("progress = %v, want it to end at 1", progress)
	}
	if _, ok := rec.findLog(messages.LogPlugin, "hashing 6 files"); !ok {
		t.Errorf("log lines %+v lack the plugin's summary line", rec.logLines())
	}
}

func TestHashFilesSingleFileAndMissingPath(t *testing.T) {
	p, mark := newTestPlugins(t)
	addPlugin(t, p, mark, examplesDir(t), "hash-files.json", nil)

	dir := t.TempDir()
	file := filepath.Join(dir, "only.txt")
	writeFile(t, file, "just one file")
	_, _, wantDigest := hashTree(t, dir)

	out := runJob(t, context.Background(), p, Task{Job: newJob(t, "hash-files", map[string]any{"path": file})})
	if got := resultMap(t, out)["sha256"]; got != wantDigest {
		t.Errorf("sha256 of a single file = %v, want %s", got, wantDigest)
	}

	missing := filepath.Join(dir, "absent")
	out = runJob(t, context.Background(), p, Task{Job: newJob(t, "hash-files", map[string]any{"path": missing})})
	wantStatus(t, out, messages.StatusFailed)
	if !strings.Contains(out.Error, missing) {
		t.Errorf("error %q does not name the missing path", out.Error)
	}
}

func TestPersistentCooperativeCancel(t *testing.T) {
	p, mark := newTestPlugins(t)
	addPlugin(t, p, mark, examplesDir(t), "sleep.json", nil)

	warmup := runJob(t, context.Background(), p, Task{Job: newJob(t, "sleep", map[string]any{"seconds": 0})})
	pid := resultPID(t, warmup)

	ctx, cancel := context.WithCancel(context.Background())
	recA, stepsA := &recorder{}, &phases{}
	done := runAsync(t, ctx, p, Task{Job: newJob(t, "sleep", map[string]any{"seconds": 30}), Reporter: recA, CancelStep: stepsA.step})
	waitFor(t, 10*time.Second, "progress above 0.005", func() bool {
		v := recA.progressValues()
		return len(v) > 0 && v[len(v)-1] > 0.005
	})
	cancel()
	start := time.Now()
	out := <-done

	wantStatus(t, out, messages.StatusCancelled)
	if elapsed := time.Since(start); elapsed > 900*time.Millisecond {
		t.Errorf("cooperative cancel took %v, want less than the 1s cancel_timeout", elapsed)
	}
	if got := stepsA.get(); !reflect.DeepEqual(got, []messages.CancelPhase{messages.CancelCooperative}) {
		t.Errorf("cancel phases = %v, want [cooperative]", got)
	}
	if _, ok := recA.findLog(messages.LogWorker, "sent a cancel message"); !ok {
		t.Errorf("job log %+v lacks the worker's cancel line", recA.logLines())
	}
	lastA := recA.progressValues()[len(recA.progressValues())-1]

	recB := &recorder{}
	out = runJob(t, context.Background(), p, Task{Job: newJob(t, "sleep", map[string]any{"seconds": 0.3}), Reporter: recB})
	if got := resultPID(t, out); got != pid {
		t.Errorf("job after a cooperative cancel ran in pid %d, want the warm process %d", got, pid)
	}
	progressB := recB.progressValues()
	if len(progressB) == 0 || progressB[0] != 0 {
		t.Errorf("next job's progress = %v, want it to start at 0 (the cancelled job ended at %v)", progressB, lastA)
	}
	if info := p.Info(); info[0].Warm != 1 || info[0].Busy != 0 {
		t.Errorf("Info = %+v, want one warm idle process", info)
	}
}

// stubbornCancel runs a stubborn sleep job, cancels it and checks that the
// plugin and its child are gone within cancel_timeout + kill_grace + 1s,
// with the cancel phases in order. It returns the plugin's pid.
func stubbornCancel(t *testing.T, p *Plugins, plugin string) {
	t.Helper()
	job := newJob(t, plugin, map[string]any{"seconds": 60, "stubborn": true})
	ctx, cancel := context.WithCancel(context.Background())
	rec, steps := &recorder{}, &phases{}
	done := runAsync(t, ctx, p, Task{Job: job, Reporter: rec, CancelStep: steps.step})

	var child []int
	waitFor(t, 10*time.Second, "the stubborn child process", func() bool {
		child = processesWithArg(t, job.ID)
		_, logged := rec.findLog(messages.LogPlugin, "stubborn")
		return len(child) == 1 && logged
	})
	group := processesWithEnv(t, "JETQUEUE_PLUGIN="+plugin)
	if len(group) < 2 {
		t.Fatalf("found plugin processes %v, want the plugin and its child", group)
	}

	cancel()
	start := time.Now()
	out := <-done
	elapsed := time.Since(start)

	wantStatus(t, out, messages.StatusCancelled)
	want := []messages.CancelPhase{messages.CancelCooperative, messages.CancelTerminate, messages.CancelKill}
	if got := steps.get(); !reflect.DeepEqual(got, want) {
		t.Errorf("cancel phases = %v, want %v", got, want)
	}
	if limit := 3 * time.Second; elapsed > limit {
		t.Errorf("Run returned %v after the cancel, want within %v", elapsed, limit)
	}
	if elapsed < 1900*time.Millisecond {
		t.Errorf("Run returned %v after the cancel, before cancel_timeout + kill_grace", elapsed)
	}
	for _, pid := range group {
		if processAlive(pid) {
			t.Errorf("process %d of the plugin's group survived the cancel", pid)
		}
	}
	if zombies := zombieChildren(t, group); len(zombies) > 0 {
		t.Errorf("zombie children %v left unreaped", zombies)
	}
	for _, text := range []string{"SIGTERM", "SIGKILL"} {
		if _, ok := rec.findLog(messages.LogWorker, text); !ok {
			t.Errorf("job log %+v lacks the worker's %s line", rec.logLines(), text)
		}
	}
}

func TestPersistentStubbornCancel(t *testing.T) {
	p, mark := newTestPlugins(t)
	addPlugin(t, p, mark, examplesDir(t), "sleep.json", nil)
	pid := resultPID(t, runJob(t, context.Background(), p, Task{Job: newJob(t, "sleep", map[string]any{"seconds": 0})}))

	stubbornCancel(t, p, "sleep")

	if info := p.Info(); info[0].Warm != 0 {
		t.Errorf("Warm = %d after a killed job, want 0", info[0].Warm)
	}
	next := resultPID(t, runJob(t, context.Background(), p, Task{Job: newJob(t, "sleep", map[string]any{"seconds": 0})}))
	if next == pid {
		t.Errorf("job after a killed process ran in the old pid %d, want a fresh process", pid)
	}
}

func TestPersistentProcessExitFailsJob(t *testing.T) {
	p, mark := newTestPlugins(t)
	addProbe(t, p, mark, "probe.json", nil)
	pid := resultPID(t, runJob(t, context.Background(), p, Task{Job: newJob(t, "probe", nil)}))

	out := runJob(t, context.Background(), p, Task{Job: newJob(t, "probe", map[string]any{
		"actions": []any{map[string]any{"stderr": "fatal: out of cheese"}, map[string]any{"exit": 4}},
	})})

	wantStatus(t, out, messages.StatusFailed)
	want := "plugin process exited with status 4 during the job; last stderr: fatal: out of cheese"
	if out.Error != want {
		t.Errorf("error = %q, want %q", out.Error, want)
	}
	next := resultPID(t, runJob(t, context.Background(), p, Task{Job: newJob(t, "probe", nil)}))
	if next == pid {
		t.Errorf("job after an exit ran in the old pid %d", pid)
	}
}

func TestPersistentErrorKeepsProcess(t *testing.T) {
	p, mark := newTestPlugins(t)
	addProbe(t, p, mark, "probe.json", nil)
	pid := resultPID(t, runJob(t, context.Background(), p, Task{Job: newJob(t, "probe", nil)}))

	out := runJob(t, context.Background(), p, Task{Job: newJob(t, "probe", map[string]any{"error": "bad input: x"})})
	wantStatus(t, out, messages.StatusFailed)
	if out.Error != "bad input: x" {
		t.Errorf("error = %q, want the plugin's message", out.Error)
	}

	if next := resultPID(t, runJob(t, context.Background(), p, Task{Job: newJob(t, "probe", nil)})); next != pid {
		t.Errorf("job after a reported error ran in pid %d, want the warm process %d", next, pid)
	}
}

func TestPersistentGPUSetAndEnvironment(t *testing.T) {
	p, mark := newTestPlugins(t)
	addProbe(t, p, mark, "probe.json", func(m *Manifest) { m.Instances = 1 })

	job := newJob(t, "probe", map[string]any{"n": 1})
	job.Args = messages.MustPayload([]any{1, "two", map[string]any{"three": 3.5}})
	first := runJob(t, context.Background(), p, Task{Job: job, GPUs: []int{0, 1}})
	result := resultMap(t, first)
	env := result["env"].(map[string]any)
	if env["CUDA_VISIBLE_DEVICES"] != "0,1" || env["JETQUEUE_PLUGIN"] != "probe" || env["PROBE_MARK"] != mark {
		t.Errorf("environment = %v, want CUDA_VISIBLE_DEVICES=0,1, JETQUEUE_PLUGIN=probe and the manifest's env", env)
	}
	if env["JETQUEUE_JOB_ID"] != nil {
		t.Errorf("persistent process has JETQUEUE_JOB_ID=%v, want it unset", env["JETQUEUE_JOB_ID"])
	}
	if got := jsonText(t, result["gpus"]); got != `[0,1]` {
		t.Errorf("execute gpus = %s, want [0,1]", got)
	}
	if got := jsonText(t, result["args"]); got != `[1,"two",{"three":3.5}]` {
		t.Errorf("execute args = %s, want [1,\"two\",{\"three\":3.5}]", got)
	}
	pid := resultPID(t, first)

	same := resultPID(t, runJob(t, context.Background(), p, Task{Job: newJob(t, "probe", nil), GPUs: []int{0, 1}}))
	if same != pid {
		t.Errorf("job with the same GPUs ran in pid %d, want the warm process %d", same, pid)
	}

	other := runJob(t, context.Background(), p, Task{Job: newJob(t, "probe", nil)})
	if got := resultPID(t, other); got == pid {
		t.Errorf("job without GPUs reused pid %d of the process started with GPUs 0,1", pid)
	}
	if env := resultMap(t, other)["env"].(map[string]any); env["CUDA_VISIBLE_DEVICES"] != "" {
		t.Errorf("CUDA_VISIBLE_DEVICES = %#v for a job without GPUs, want \"\"", env["CUDA_VISIBLE_DEVICES"])
	}
	waitFor(t, 5*time.Second, "the process with GPUs 0,1 to stop", func() bool { return !processAlive(pid) })
	if info := p.Info(); info[0].Warm != 1 {
		t.Errorf("Warm = %d, want 1: a plugin of 1 instance keeps one process", info[0].Warm)
	}
}

func TestIdleTimeoutStopsProcess(t *testing.T) {
	p, mark := newTestPlugins(t)
	addProbe(t, p, mark, "probe.json", func(m *Manifest) { m.IdleTimeout = 200 * time.Millisecond })

	pid := resultPID(t, runJob(t, context.Background(), p, Task{Job: newJob(t, "probe", nil)}))

	waitFor(t, 5*time.Second, "the idle process to stop", func() bool {
		return p.Info()[0].Warm == 0 && !processAlive(pid)
	})
}

func TestEvict(t *testing.T) {
	p, mark := newTestPlugins(t)
	addProbe(t, p, mark, "probe.json", func(m *Manifest) { m.CancelTimeout = 300 * time.Millisecond })

	polite := resultPID(t, runJob(t, context.Background(), p, Task{Job: newJob(t, "probe", nil)}))
	if got := p.Info()[0].Warm; got != 1 {
		t.Fatalf("Warm = %d, want 1", got)
	}
	if n := p.Evict("probe"); n != 1 {
		t.Errorf("Evict = %d, want 1", n)
	}
	if processAlive(polite) {
		t.Errorf("evicted process %d still runs", polite)
	}

	// A process that ignores the shutdown message is stopped with SIGTERM.
	deaf := resultPID(t, runJob(t, context.Background(), p, Task{Job: newJob(t, "probe", map[string]any{
		"actions": []any{map[string]any{"ignore_shutdown": true}},
	})}))
	start := time.Now()
	if n := p.Evict("probe"); n != 1 {
		t.Errorf("Evict = %d, want 1", n)
	}
	if elapsed := time.Since(start); elapsed < 300*time.Millisecond {
		t.Errorf("Evict of a process that ignores shutdown took %v, want at least the 300ms cancel_timeout", elapsed)
	}
	if processAlive(deaf) {
		t.Errorf("evicted process %d still runs", deaf)
	}
	if got := p.Info()[0].Warm; got != 0 {
		t.Errorf("Warm = %d after Evict, want 0", got)
	}
	if n := p.Evict("unknown"); n != 0 {
		t.Errorf("Evict(unknown) = %d, want 0", n)
	}
}

func jsonText(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
