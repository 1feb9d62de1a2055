package cli

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jetqueue/jetqueue/examples/plugins"
	"github.com/jetqueue/jetqueue/messages"
)

// requirePython fails the test when python3, which runs the example
// plugins, is missing.
func requirePython(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatalf("python3 runs the example plugins and is not in PATH: %v", err)
	}
}

// startServe runs `jetqueue serve` until the test ends and returns the
// environment that points other commands at it, and a function that stops
// the server as SIGINT would and returns its exit code.
func startServe(t *testing.T) (map[string]string, func() int) {
	t.Helper()
	requirePython(t)
	dir := t.TempDir()
	pluginsDir := filepath.Join(dir, "plugins")
	if err := plugins.WriteTo(pluginsDir); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	e := &env{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--listen", "127.0.0.1:-1", "--data", filepath.Join(dir, "data"),
			"--plugins", pluginsDir, "--max-jobs", "2", "--name", "e2e-worker"}, e)
	}()

	exited := false
	var code int
	stop := func() int {
		if exited {
			return code
		}
		cancel()
		select {
		case code = <-done:
		case <-time.After(shutdownTimeout + 10*time.Second):
			t.Fatalf("serve did not stop within %s; stderr:\n%s", shutdownTimeout+10*time.Second, stderr.String())
		}
		exited = true
		return code
	}
	t.Cleanup(func() { stop() })

	urlPattern := regexp.MustCompile(`msg="jetqueue serving" url=(nats://127\.0\.0\.1:\d+)`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := urlPattern.FindStringSubmatch(stderr.String()); m != nil {
			return map[string]string{"JETQUEUE_NATS": m[1]}, stop
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited with %d before serving; stderr:\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not log its URL within 20s; stderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// submitID runs submit with args and returns the job id it prints.
func submitID(t *testing.T, environ map[string]string, args ...string) string {
	t.Helper()
	r := runCLI(t, environ, append([]string{"submit"}, args...)...)
	if r.code != ExitOK {
		t.Fatalf("submit %q: exit %d; stderr:\n%s", args, r.code, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	if err := messages.ValidateJobID(id); err != nil {
		t.Fatalf("submit printed %q: %v", r.stdout, err)
	}
	return id
}

// waitForStatus polls `jetqueue status --json JOB` until the job has status.
func waitForStatus(t *testing.T, environ map[string]string, id string, status messages.Status) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := runCLI(t, environ, "status", "--json", id)
		var job messages.Job
		if r.code == ExitOK && json.Unmarshal([]byte(r.stdout), &job) == nil && job.Status == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not %s within 20s; last status output:\n%s%s", id, status, r.stdout, r.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processesWith returns the command lines of live processes whose command
// line contains s.
func processesWith(t *testing.T, s string) []string {
	t.Helper()
	paths, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		cmdline := strings.ReplaceAll(string(data), "\x00", " ")
		if strings.Contains(cmdline, s) {
			found = append(found, cmdline)
		}
	}
	return found
}

func TestServeSubmitWaitExitCodes(t *testing.T) {
	environ, stop := startServe(t)

	r := runCLI(t, environ, "submit", "sleep", "seconds=0.1", "--wait")
	if r.code != ExitOK {
		t.Errorf("submit --wait of a short sleep: exit %d, want 0; stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	wantContains(t, "submit --wait stdout", r.stdout, "completed")

	missing := filepath.Join(t.TempDir(), "missing")
	r = runCLI(t, environ, "submit", "hash-files", "path="+missing, "--wait")
	if r.code != ExitJobFailed {
		t.Errorf("hash-files of a missing path: exit %d, want %d; stdout:\n%s", r.code, ExitJobFailed, r.stdout)
	}
	wantContains(t, "failed job stdout", r.stdout, "failed", missing)

	long := submitID(t, environ, "sleep", "seconds=60")
	r = runCLI(t, environ, "wait", long, "--timeout", "300ms")
	if r.code != ExitTimeout {
		t.Errorf("wait --timeout 300ms: exit %d, want %d", r.code, ExitTimeout)
	}
	waitForStatus(t, environ, long, messages.StatusRunning)
	if r := runCLI(t, environ, "cancel", long); r.code != ExitOK {
		t.Errorf("cancel: exit %d; stderr:\n%s", r.code, r.stderr)
	}
	r = runCLI(t, environ, "wait", long)
	if r.code != ExitJobCancelled {
		t.Errorf("wait on the cancelled job: exit %d, want %d; stdout:\n%s", r.code, ExitJobCancelled, r.stdout)
	}

	r = runCLI(t, environ, "workers")
	if r.code != ExitOK {
		t.Fatalf("workers: exit %d; stderr:\n%s", r.code, r.stderr)
	}
	wantContains(t, "workers", lineWith(t, r.stdout, "e2e-worker"), "ready", "hash-files", "sleep")

	r = runCLI(t, environ, "status")
	wantContains(t, "status", r.stdout, long, "cancelled", "3 submitted")

	if code := stop(); code != ExitOK {
		t.Errorf("serve exited with %d, want 0", code)
	}
}

func TestServeShutdownLeavesNoPluginProcess(t *testing.T) {
	environ, stop := startServe(t)

	// A stubborn sleep ignores the cancel message and SIGTERM and starts a
	// child that does the same. Both have the job id on their command line.
	id := submitID(t, environ, "sleep", "seconds=60", "stubborn=true")
	waitForStatus(t, environ, id, messages.StatusRunning)
	deadline := time.Now().Add(10 * time.Second)
	for len(processesWith(t, id)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stubborn plugin's child did not appear within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}

	if code := stop(); code != ExitOK {
		t.Errorf("serve exited with %d, want 0", code)
	}
	if left := processesWith(t, id); len(left) > 0 {
		t.Errorf("processes left after serve stopped: %q", left)
	}
}

func TestDemoCompletes(t *testing.T) {
	requirePython(t)

	r := runCLI(t, nil, "demo")
	if r.code != ExitOK {
		t.Fatalf("demo: exit %d; stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	table := r.stdout[strings.LastIndex(r.stdout, "JOB "):]
	wantContains(t, "demo cancelled row", lineWith(t, table, " "+demoCancelDir+" "), "cancelled")
	for _, d := range demoDirs {
		if d.name == demoCancelDir {
			continue
		}
		wantContains(t, "demo row of "+d.name, lineWith(t, table, " "+d.name+" "), "completed")
	}
	wantContains(t, "demo events", r.stdout, "submitted", "started", "cancel_requested")
}
