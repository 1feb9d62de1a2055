package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/client/clienttest"
	"github.com/jetqueue/jetqueue/messages"
)

// nodeClientDir is the Node.js example client, relative to this package.
const nodeClientDir = "../examples/node-client"

// nodeEvent is one line that the Node.js client prints.
type nodeEvent struct {
	Event         string          `json:"event"`
	JobID         string          `json:"job_id"`
	Plugin        string          `json:"plugin"`
	Status        string          `json:"status"`
	Progress      float64         `json:"progress"`
	StatusMessage string          `json:"status_message"`
	Attempt       int             `json:"attempt"`
	Time          time.Time       `json:"time"`
	Result        json.RawMessage `json:"result"`
	Error         string          `json:"error"`
}

// requireNode returns the path of node. It fails the test, never skips it,
// when node or the client's npm packages are missing.
func requireNode(t *testing.T) string {
	t.Helper()

	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found in PATH: install Node.js 20 or later to test %s: %v", nodeClientDir, err)
	}
	for _, pkg := range []string{"nats", "@msgpack/msgpack"} {
		path := filepath.Join(nodeClientDir, "node_modules", pkg, "package.json")
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("npm package %s of the Node.js client is missing (%v): run `npm ci --prefix examples/node-client` in the repository root", pkg, err)
		}
	}
	return node
}

// goBuild builds the command in pkg, a directory relative to this package,
// into a temporary directory and returns the binary's path. After `go vet`
// or an earlier build the build cache has every package, so only the link
// step runs.
func goBuild(t *testing.T, pkg string) string {
	t.Helper()

	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	if output, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, output)
	}
	return out
}

// freeAddress returns a loopback address whose port was free a moment ago.
func freeAddress(t *testing.T) string {
	t.Helper()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startServe runs `jetqueue serve` with the example plugins and returns its
// NATS URL once its worker is ready. The process gets SIGTERM when the test
// ends, and SIGKILL if it has not exited 30 s later.
func startServe(t *testing.T) string {
	t.Helper()

	bin := goBuild(t, "../cmd/jetqueue")
	addr := freeAddress(t)
	logs := &lockedBuffer{}
	cmd := exec.Command(bin, "serve", "--data", t.TempDir(), "--listen", addr,
		"--plugins", pluginsDir, "--name", "node-test", "--log-level", "debug")
	cmd.Stdout = logs
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start jetqueue serve: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("jetqueue serve exited with %v after SIGTERM; its log:\n%s", err, logs.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("jetqueue serve did not stop within 30s of SIGTERM; its log:\n%s", logs.String())
		}
	})

	url := "nats://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for !serveReady(url, "node-test") {
		select {
		case err := <-exited:
			t.Fatalf("jetqueue serve exited early (%v); its log:\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("jetqueue serve on %s had no ready worker after 30s; its log:\n%s", addr, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return url
}

// serveReady reports whether the coordinator at url lists worker as ready.
func serveReady(url, worker string) bool {
	nc, err := nats.Connect(url, nats.Timeout(time.Second))
	if err != nil {
		return false
	}
	defer nc.Close()
	c, err := client.New(nc, client.WithTimeout(time.Second))
	if err != nil {
		return false
	}
	workers, err := c.Workers(context.Background())
	if err != nil {
		return false
	}
	for _, w := range workers {
		if w.Info.Name == worker && w.Status == "ready" {
			return true
		}
	}
	return false
}

// runNode runs the Node.js client from the repository root with args and
// returns its stdout, stderr and exit code.
func runNode(t *testing.T, node string, args ...string) (stdout, stderr string, code int) {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{"examples/node-client/index.js"}, args...)...)
	cmd.Dir = ".."
	var out, errOut bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errOut

	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("node %s did not exit within 60s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), out.String(), errOut.String())
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run node: %v", err)
	}
	return out.String(), errOut.String(), code
}

// parseNodeEvents decodes the client's JSON lines.
func parseNodeEvents(t *testing.T, stdout string) []nodeEvent {
	t.Helper()

	var events []nodeEvent
	scanner := bufio.NewScanner(strings.NewReader(stdout))
	for scanner.Scan() {
		var ev nodeEvent
		if err := json.Unmarshal(scanner.Bytes(), &ev); err != nil {
			t.Fatalf("output line %q is not a JSON event: %v", scanner.Text(), err)
		}
		events = append(events, ev)
	}
	return events
}

func TestNodeClientFollowsJob(t *testing.T) {
	node := requireNode(t)
	url := startServe(t)

	t.Run("completed", func(t *testing.T) {
		stdout, stderr, code := runNode(t, node, "--nats", url, "sleep", "seconds=1")
		if code != 0 {
			t.Fatalf("exit code = %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		events := parseNodeEvents(t, stdout)
		if len(events) < 4 {
			t.Fatalf("got %d events, want submitted, started, progress and completed:\n%s", len(events), stdout)
		}

		id := events[0].JobID
		if messages.ValidateJobID(id) != nil {
			t.Fatalf("first event has job id %q, want a UUID", id)
		}
		for i, ev := range events {
			if ev.JobID != id {
				t.Errorf("event %d (%s) has job id %s, want %s", i, ev.Event, ev.JobID, id)
			}
			if ev.Plugin != "sleep" {
				t.Errorf("event %d (%s) has plugin %q, want sleep", i, ev.Event, ev.Plugin)
			}
			if i > 0 && ev.Time.Before(events[i-1].Time) {
				t.Errorf("event %d (%s) at %s is older than the event before it", i, ev.Event, ev.Time)
			}
		}

		last := len(events) - 1
		if events[0].Event != "submitted" {
			t.Errorf("first event = %s, want submitted", events[0].Event)
		}
		if events[0].Status != "pending" {
			t.Errorf("status in the submitted event = %s, want pending", events[0].Status)
		}
		if events[1].Event != "started" {
			t.Errorf("second event = %s, want started", events[1].Event)
		}
		if events[1].Status != "running" {
			t.Errorf("status in the started event = %s, want running", events[1].Status)
		}
		progress := 0
		for _, ev := range events[2:last] {
			if ev.Event != "progress" {
				t.Errorf("event %s between started and completed, want only progress", ev.Event)
				continue
			}
			progress++
			if ev.Status != "running" || ev.Progress < 0 || ev.Progress > 1 {
				t.Errorf("progress event with status %s and progress %v, want running within 0..1", ev.Status, ev.Progress)
			}
		}
		if progress == 0 {
			t.Errorf("no progress event between started and completed:\n%s", stdout)
		}
		if events[last].Event != "completed" {
			t.Errorf("last event = %s, want completed", events[last].Event)
		}
		if events[last].Status != "completed" {
			t.Errorf("status in the last event = %s, want completed", events[last].Status)
		}
		if events[last].Progress != 1 {
			t.Errorf("progress in the last event = %v, want 1", events[last].Progress)
		}
		var result struct {
			Slept float64 `json:"slept"`
		}
		if err := json.Unmarshal(events[last].Result, &result); err != nil {
			t.Errorf("result %s does not decode: %v", events[last].Result, err)
		}
		if result.Slept != 1 {
			t.Errorf("result = %s, want slept 1", events[last].Result)
		}
	})

	t.Run("failed", func(t *testing.T) {
		stdout, stderr, code := runNode(t, node, "--nats", url, "sleep", "seconds=-1")
		if code != 1 {
			t.Fatalf("exit code = %d, want 1 for a failed job\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		events := parseNodeEvents(t, stdout)
		if len(events) == 0 {
			t.Fatalf("no events printed; stderr:\n%s", stderr)
		}
		last := events[len(events)-1]
		if last.Event != "failed" || !strings.Contains(last.Error, "seconds") {
			t.Errorf("last event = %s with error %q, want failed naming the kwarg seconds", last.Event, last.Error)
		}
	})

	t.Run("rejected submit", func(t *testing.T) {
		stdout, stderr, code := runNode(t, node, "--nats", url, "no plugin")
		if code != 1 {
			t.Fatalf("exit code = %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		if stdout != "" {
			t.Errorf("stdout = %q, want nothing for a rejected submit", stdout)
		}
		if !strings.Contains(stderr, "invalid_argument") || !strings.Contains(stderr, `"no plugin"`) {
			t.Errorf("stderr = %q, want the invalid_argument code and the plugin name", stderr)
		}
	})
}

func TestNodeClientReadsErrorReplies(t *testing.T) {
	node := requireNode(t)
	srv := clienttest.Start(t, "")

	t.Run("msgpack body", func(t *testing.T) {
		srv.Handle(messages.VerbSubmit, func([]byte) (any, error) {
			return nil, messages.Errorf(messages.CodeTooLarge, "args and kwargs take 300000 bytes: the limit is 262144")
		})
		_, stderr, code := runNode(t, node, "--nats", srv.URL(), "sleep")
		if code != 1 {
			t.Fatalf("exit code = %d, want 1; stderr:\n%s", code, stderr)
		}
		if !strings.Contains(stderr, "payload_too_large: args and kwargs take 300000 bytes") {
			t.Errorf("stderr = %q, want the code and message of the msgpack body", stderr)
		}
	})

	t.Run("headers only", func(t *testing.T) {
		srv.Handle(messages.VerbSubmit, func([]byte) (any, error) {
			header := nats.Header{}
			header.Set("Nats-Service-Error-Code", strconv.Itoa(503))
			header.Set("Nats-Service-Error", "coordinator is starting")
			return clienttest.RawReply{Header: header, Data: []byte("not msgpack")}, nil
		})
		_, stderr, code := runNode(t, node, "--nats", srv.URL(), "sleep")
		if code != 1 {
			t.Fatalf("exit code = %d, want 1; stderr:\n%s", code, stderr)
		}
		if !strings.Contains(stderr, "status 503: coordinator is starting") {
			t.Errorf("stderr = %q, want the status and message of the headers", stderr)
		}
	})

	t.Run("no coordinator", func(t *testing.T) {
		_, stderr, code := runNode(t, node, "--nats", srv.URL(), "--prefix", "nobody", "sleep")
		if code != 1 {
			t.Fatalf("exit code = %d, want 1; stderr:\n%s", code, stderr)
		}
		if !strings.Contains(stderr, "no coordinator listens on nobody.api.submit") {
			t.Errorf("stderr = %q, want it to say that no coordinator listens", stderr)
		}
	})
}
