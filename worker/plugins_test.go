package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jetqueue/jetqueue/examples/plugins"
	"github.com/jetqueue/jetqueue/messages"
)

// recorder is a Reporter that keeps every report.
type recorder struct {
	mu       sync.Mutex
	progress []float64
	logs     []messages.LogLine
}

func (r *recorder) Progress(progress float64, message string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.progress = append(r.progress, progress)
}

func (r *recorder) Log(stream messages.LogStream, level, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, messages.LogLine{Stream: stream, Level: level, Text: text})
}

func (r *recorder) progressValues() []float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]float64(nil), r.progress...)
}

func (r *recorder) logLines() []messages.LogLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]messages.LogLine(nil), r.logs...)
}

// findLog returns the first log line of stream whose text contains substr.
func (r *recorder) findLog(stream messages.LogStream, substr string) (messages.LogLine, bool) {
	for _, l := range r.logLines() {
		if l.Stream == stream && strings.Contains(l.Text, substr) {
			return l, true
		}
	}
	return messages.LogLine{}, false
}

// phases records the CancelStep calls of a task.
type phases struct {
	mu   sync.Mutex
	list []messages.CancelPhase
}

func (p *phases) step(phase messages.CancelPhase) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.list = append(p.list, phase)
}

func (p *phases) get() []messages.CancelPhase {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]messages.CancelPhase(nil), p.list...)
}

// newTestPlugins returns a registry whose Close is checked at the end of
// the test, and a marker that the test's plugin processes carry in their
// environment as PROBE_MARK.
func newTestPlugins(t *testing.T) (*Plugins, string) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := NewPlugins(logger)
	mark := "mark-" + uuid.NewString()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		if pids := processesWithEnv(t, "PROBE_MARK="+mark); len(pids) > 0 {
			t.Errorf("plugin processes %v survived Close", pids)
		}
	})
	return p, mark
}

// examplesDir writes the example plugins into a temporary directory, so
// Python leaves no __pycache__ in the source tree.
func examplesDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := plugins.WriteTo(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// addPlugin loads dir/file, applies edit and registers the manifest with
// PROBE_MARK=mark in its environment.
func addPlugin(t *testing.T, p *Plugins, mark, dir, file string, edit func(*Manifest)) *Manifest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest(data, dir)
	if err != nil {
		t.Fatal(err)
	}
	m.Env["PROBE_MARK"] = mark
	if edit != nil {
		edit(m)
	}
	if err := p.AddManifest(m); err != nil {
		t.Fatal(err)
	}
	return m
}

// addProbe registers the protocol test plugin testdata/plugins/probe.py.
func addProbe(t *testing.T, p *Plugins, mark, file string, edit func(*Manifest)) *Manifest {
	t.Helper()
	return addPlugin(t, p, mark, filepath.Join("testdata", "plugins"), file, edit)
}

func newJob(t *testing.T, plugin string, kwargs map[string]any) *messages.Job {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return &messages.Job{ID: id.String(), PluginName: plugin, Kwargs: messages.MustPayload(kwargs), Attempt: 1}
}

// runJob acquires a slot of the job's plugin and runs the job.
func runJob(t *testing.T, ctx context.Context, p *Plugins, task Task) Outcome {
	t.Helper()
	slot, err := p.Acquire(task.Job.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return slot.Run(ctx, task)
}

// runAsync runs a job in a goroutine; the channel receives its outcome.
func runAsync(t *testing.T, ctx context.Context, p *Plugins, task Task) <-chan Outcome {
	t.Helper()
	slot, err := p.Acquire(task.Job.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan Outcome, 1)
	go func() { done <- slot.Run(ctx, task) }()
	return done
}

func wantStatus(t *testing.T, out Outcome, want messages.Status) {
	t.Helper()
	if out.Status != want {
		t.Fatalf("outcome = %+v, want status %s", out, want)
	}
}

// resultMap decodes a completed job's result as a JSON-like map.
func resultMap(t *testing.T, out Outcome) map[string]any {
	t.Helper()
	wantStatus(t, out, messages.StatusCompleted)
	v, err := out.Result.Value()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("result = %#v, want a map", v)
	}
	return m
}

// resultPID returns the "pid" field of a result.
func resultPID(t *testing.T, out Outcome) int {
	t.Helper()
	pid, ok := asInt(resultMap(t, out)["pid"])
	if !ok {
		t.Fatalf("result has no pid: %+v", out)
	}
	return pid
}

func asInt(v any) (int, bool) {
	switch n := v.(type) {
	case int8:
		return int(n), true
	case int16:
		return int(n), true
	case int32:
		return int(n), true
	case int64:
		return int(n), true
	case uint8:
		return int(n), true
	case uint16:
		return int(n), true
	case uint32:
		return int(n), true
	case uint64:
		return int(n), true
	case float64:
		return int(n), true
	}
	return 0, false
}

// waitFor polls cond every 10 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// scanProcesses returns the live processes whose /proc/<pid>/<file> contains
// needle as one NUL-separated entry. Zombies have empty files and never match.
func scanProcesses(t *testing.T, file, needle string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("list processes: %v", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), file))
		if err != nil || !descendsFromTest(pid) {
			continue
		}
		for _, entry := range bytes.Split(data, []byte{0}) {
			if string(entry) == needle {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// descendsFromTest reports whether pid is a descendant of the test process,
// so plugin processes that other test binaries run at the same time do not
// count. Orphans re-parented to the test process, its child subreaper, count.
func descendsFromTest(pid int) bool {
	for range 64 {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		i := bytes.LastIndexByte(data, ')')
		fields := strings.Fields(string(data[i+1:]))
		if len(fields) < 2 {
			return false
		}
		ppid, err := strconv.Atoi(fields[1])
		if err != nil || ppid <= 1 {
			return false
		}
		if ppid == os.Getpid() {
			return true
		}
		pid = ppid
	}
	return false
}

// processesWithEnv returns the processes whose environment has the entry
// needle, such as "PROBE_MARK=...".
func processesWithEnv(t *testing.T, needle string) []int {
	t.Helper()
	return scanProcesses(t, "environ", needle)
}

// processesWithArg returns the processes with arg on their command line.
func processesWithArg(t *testing.T, arg string) []int {
	t.Helper()
	return scanProcesses(t, "cmdline", arg)
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	return i < 0 || i+2 >= len(data) || data[i+2] != 'Z'
}

// zombieChildren returns those of pids that are zombie children of the
// test process. It looks only at the plugin processes a test saw, because
// under load other short-lived descendants can be caught between their
// exit and their reaping.
func zombieChildren(t *testing.T, pids []int) []int {
	t.Helper()
	var zombies []int
	for _, pid := range pids {
		data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(data, ')')
		fields := strings.Fields(string(data[i+1:]))
		if len(fields) > 1 && fields[0] == "Z" && fields[1] == strconv.Itoa(os.Getpid()) {
			zombies = append(zombies, pid)
		}
	}
	return zombies
}

func TestAcquireErrors(t *testing.T) {
	p, mark := newTestPlugins(t)
	addProbe(t, p, mark, "probe.json", func(m *Manifest) { m.Instances = 1 })

	_, err := p.Acquire("nope")
	if !errors.Is(err, ErrUnknownPlugin) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Acquire(nope) error = %v, want ErrUnknownPlugin naming the plugin", err)
	}

	slot, err := p.Acquire("probe")
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Acquire("probe")
	if !errors.Is(err, ErrPluginBusy) || !strings.Contains(err.Error(), `"probe"`) {
		t.Errorf("second Acquire error = %v, want ErrPluginBusy naming the plugin", err)
	}
	if info := p.Info(); len(info) != 1 || info[0].Busy != 1 || info[0].Instances != 1 {
		t.Errorf("Info = %+v, want probe with 1 of 1 busy", info)
	}

	slot.Release()
	slot.Release()
	if info := p.Info(); info[0].Busy != 0 {
		t.Errorf("Busy = %d after two Releases, want 0", info[0].Busy)
	}
	out := slot.Run(context.Background(), Task{Job: newJob(t, "probe", nil)})
	if out.Status != messages.StatusFailed || !strings.Contains(out.Error, "released") {
		t.Errorf("Run of a released slot = %+v, want failed", out)
	}

	again, err := p.Acquire("probe")
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	again.Release()
}

func TestAddRejects(t *testing.T) {
	p, mark := newTestPlugins(t)
	addProbe(t, p, mark, "probe.json", nil)

	if err := p.AddManifest(&Manifest{Name: "probe", Command: []string{"x"}, Dir: "/"}); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Errorf("AddManifest of a duplicate name: %v, want an error", err)
	}
	if err := p.AddManifest(&Manifest{Name: "x y", Command: []string{"x"}, Dir: "/"}); err == nil {
		t.Error("AddManifest with an invalid name succeeded")
	}
	if err := p.AddManifest(&Manifest{Name: "nocmd", Dir: "/"}); err == nil {
		t.Error("AddManifest without a command succeeded")
	}
	if err := p.AddHandler("probe", messages.Resources{}, func(context.Context, *messages.Job, Reporter) (any, error) { return nil, nil }); err == nil {
		t.Error("AddHandler of a duplicate name succeeded")
	}
	if err := p.AddHandler("nil-handler", messages.Resources{}, nil); err == nil {
		t.Error("AddHandler with a nil handler succeeded")
	}
	if names := p.Names(); len(names) != 1 || names[0] != "probe" {
		t.Errorf("Names = %v, want [probe]", names)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	p, mark := newTestPlugins(t)
	examples := examplesDir(t)
	addPlugin(t, p, mark, examples, "sleep.json", nil)
	addPlugin(t, p, mark, examples, "sleep-exec.json", nil)
	addProbe(t, p, mark, "probe.json", nil)

	// An idle warm process, and a stubborn job of each mode.
	resultPID(t, runJob(t, context.Background(), p, Task{Job: newJob(t, "probe", nil)}))
	var runs []<-chan Outcome
	var recs []*recorder
	for _, plugin := range []string{"sleep", "sleep-exec"} {
		rec := &recorder{}
		recs = append(recs, rec)
		runs = append(runs, runAsync(t, context.Background(), p, Task{
			Job:      newJob(t, plugin, map[string]any{"seconds": 60, "stubborn": true}),
			Reporter: rec,
		}))
	}
	for _, rec := range recs {
		waitFor(t, 10*time.Second, "the stubborn jobs to start", func() bool {
			_, ok := rec.findLog(messages.LogPlugin, "stubborn")
			return ok
		})
	}
	seen := processesWithEnv(t, "PROBE_MARK="+mark)
	if pids := seen; len(pids) < 5 {
		t.Fatalf("found %d plugin processes, want at least 5 (two stubborn plugins with a child each and one warm probe)", len(pids))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// Run has returned once Close returns; its goroutine sends the outcome
	// a moment later.
	for i, done := range runs {
		select {
		case out := <-done:
			wantStatus(t, out, messages.StatusCancelled)
		case <-time.After(time.Second):
			t.Errorf("job %d still runs after Close returned", i)
		}
	}
	if pids := processesWithEnv(t, "PROBE_MARK="+mark); len(pids) > 0 {
		t.Errorf("plugin processes %v survived Close", pids)
	}
	if zombies := zombieChildren(t, seen); len(zombies) > 0 {
		t.Errorf("zombie children %v left unreaped", zombies)
	}
	if _, err := p.Acquire("probe"); !errors.Is(err, ErrClosed) {
		t.Errorf("Acquire after Close: %v, want ErrClosed", err)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v, want nil", err)
	}
}

func TestCloseDeadlineKills(t *testing.T) {
	p, mark := newTestPlugins(t)
	addPlugin(t, p, mark, examplesDir(t), "sleep.json", func(m *Manifest) {
		m.CancelTimeout = time.Minute
		m.KillGrace = time.Minute
	})

	rec := &recorder{}
	done := runAsync(t, context.Background(), p, Task{
		Job:      newJob(t, "sleep", map[string]any{"seconds": 60, "stubborn": true}),
		Reporter: rec,
	})
	waitFor(t, 10*time.Second, "the stubborn job to start", func() bool {
		_, ok := rec.findLog(messages.LogPlugin, "stubborn")
		return ok
	})

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := p.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close error = %v, want context.DeadlineExceeded", err)
	}

	select {
	case out := <-done:
		wantStatus(t, out, messages.StatusCancelled)
	case <-time.After(5 * time.Second):
		t.Fatal("the job did not end after Close killed its process group")
	}
	if pids := processesWithEnv(t, "PROBE_MARK="+mark); len(pids) > 0 {
		t.Errorf("plugin processes %v survived Close", pids)
	}
}

func TestRunCancelledBeforeStart(t *testing.T) {
	p, mark := newTestPlugins(t)
	addProbe(t, p, mark, "probe.json", nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	out := runJob(t, ctx, p, Task{Job: newJob(t, "probe", nil)})

	wantStatus(t, out, messages.StatusCancelled)
	if pids := processesWithEnv(t, "PROBE_MARK="+mark); len(pids) > 0 {
		t.Errorf("plugin processes %v started for a job cancelled before Run", pids)
	}
	if info := p.Info(); info[0].Busy != 0 {
		t.Errorf("Busy = %d after Run returned, want 0", info[0].Busy)
	}
}
