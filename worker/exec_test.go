package worker

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

func TestExecCompress(t *testing.T) {
	p, mark := newTestPlugins(t)
	addPlugin(t, p, mark, examplesDir(t), "compress.json", nil)

	dir := t.TempDir()
	src := filepath.Join(dir, "input.txt")
	dst := filepath.Join(dir, "output.gz")
	rng := rand.New(rand.NewPCG(1, 2))
	var content bytes.Buffer
	for content.Len() < 3<<20 {
		content.WriteString(strings.Repeat(string(rune('a'+rng.IntN(26))), 1+rng.IntN(40)))
	}
	writeFile(t, src, content.String())

	rec := &recorder{}
	out := runJob(t, context.Background(), p, Task{Job: newJob(t, "compress", map[string]any{"src": src, "dst": dst}), Reporter: rec})

	result := resultMap(t, out)
	if n, _ := asInt(result["bytes_in"]); n != content.Len() {
		t.Errorf("bytes_in = %v, want %d", result["bytes_in"], content.Len())
	}
	info, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := asInt(result["bytes_out"]); int64(n) != info.Size() {
		t.Errorf("bytes_out = %v, want the size of dst, %d", result["bytes_out"], info.Size())
	}
	f, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("dst is not gzip: %v", err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("decompress dst: %v", err)
	}
	if !bytes.Equal(plain, content.Bytes()) {
		t.Errorf("decompressed dst differs from src (%d bytes, want %d)", len(plain), content.Len())
	}
	progress := rec.progressValues()
	if len(progress) == 0 || progress[len(progress)-1] != 1 {
		t.Errorf("progress = %v, want it to reach 1", progress)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".compress-*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

func TestExecCompressMissingSource(t *testing.T) {
	p, mark := newTestPlugins(t)
	addPlugin(t, p, mark, examplesDir(t), "compress.json", nil)
	src := filepath.Join(t.TempDir(), "absent.txt")

	out := runJob(t, context.Background(), p, Task{Job: newJob(t, "compress", map[string]any{"src": src, "dst": src + ".gz"})})

	wantStatus(t, out, messages.StatusFailed)
	if !strings.Contains(out.Error, src) {
		t.Errorf("error %q does not name the source path", out.Error)
	}
}

func TestExecExitStatus(t *testing.T) {
	p, mark := newTestPlugins(t)
	addProbe(t, p, mark, "probe-exec.json", nil)

	out := runJob(t, context.Background(), p, Task{Job: newJob(t, "probe-exec", map[string]any{
		"actions": []any{map[string]any{"stderr": "first"}, map[string]any{"stderr": "boom"}, map[string]any{"exit": 3}},
	})})
	wantStatus(t, out, messages.StatusFailed)
	if want := "plugin exited with status 3; last stderr: first\nboom"; out.Error != want {
		t.Errorf("error = %q, want %q", out.Error, want)
	}

	out = runJob(t, context.Background(), p, Task{Job: newJob(t, "probe-exec", map[string]any{"no_final": true})})
	wantStatus(t, out, messages.StatusCompleted)
	if out.Result != nil {
		t.Errorf("result = %x, want nil for an exit 0 without a result message", out.Result)
	}

	out = runJob(t, context.Background(), p, Task{Job: newJob(t, "probe-exec", map[string]any{"error": "refused"})})
	wantStatus(t, out, messages.StatusFailed)
	if out.Error != "refused" {
		t.Errorf("error = %q, want the plugin's message", out.Error)
	}
}

func TestExecEnvironment(t *testing.T) {
	p, mark := newTestPlugins(t)
	addProbe(t, p, mark, "probe-exec.json", nil)

	job := newJob(t, "probe-exec", nil)
	result := resultMap(t, runJob(t, context.Background(), p, Task{Job: job, GPUs: []int{3}}))

	env := result["env"].(map[string]any)
	if env["JETQUEUE_JOB_ID"] != job.ID || env["CUDA_VISIBLE_DEVICES"] != "3" || env["JETQUEUE_PLUGIN"] != "probe-exec" {
		t.Errorf("environment = %v, want JETQUEUE_JOB_ID, CUDA_VISIBLE_DEVICES=3 and JETQUEUE_PLUGIN", env)
	}
	if info := p.Info(); info[0].Warm != 0 || info[0].Mode != messages.ModeExec {
		t.Errorf("Info = %+v, want an exec plugin without warm processes", info)
	}
}

func TestExecStubbornCancel(t *testing.T) {
	p, mark := newTestPlugins(t)
	addPlugin(t, p, mark, examplesDir(t), "sleep-exec.json", nil)

	stubbornCancel(t, p, "sleep-exec")
}

func TestExecCooperativeCancel(t *testing.T) {
	p, mark := newTestPlugins(t)
	addPlugin(t, p, mark, examplesDir(t), "sleep-exec.json", nil)

	ctx, cancel := context.WithCancel(context.Background())
	rec := &recorder{}
	done := runAsync(t, ctx, p, Task{Job: newJob(t, "sleep-exec", map[string]any{"seconds": 30}), Reporter: rec})
	waitFor(t, 10*time.Second, "first progress", func() bool { return len(rec.progressValues()) > 0 })
	cancel()
	start := time.Now()
	out := <-done

	wantStatus(t, out, messages.StatusCancelled)
	if elapsed := time.Since(start); elapsed > 900*time.Millisecond {
		t.Errorf("cooperative cancel took %v, want less than the 1s cancel_timeout", elapsed)
	}
}

func TestExecHangAfterResult(t *testing.T) {
	p, mark := newTestPlugins(t)
	addProbe(t, p, mark, "probe-exec.json", func(m *Manifest) {
		m.CancelTimeout = 200 * time.Millisecond
		m.KillGrace = 200 * time.Millisecond
	})

	// After its result the probe ignores the end of stdin and keeps running.
	rec := &recorder{}
	out := runJob(t, context.Background(), p, Task{Job: newJob(t, "probe-exec", map[string]any{
		"actions": []any{map[string]any{"ignore_shutdown": true}},
	}), Reporter: rec})

	resultPID(t, out)
	if _, ok := rec.findLog(messages.LogWorker, "did not exit"); !ok {
		t.Errorf("job log %+v lacks the worker's SIGTERM line", rec.logLines())
	}
}
