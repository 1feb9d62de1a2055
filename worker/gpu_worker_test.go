package worker

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetqueue/jetqueue/internal/embedded"
	"github.com/jetqueue/jetqueue/messages"
)

// testCoordinator replaces the coordinator on a real embedded nats-server.
// It acknowledges heartbeats and final reports and records them.
type testCoordinator struct {
	t    *testing.T
	url  string
	nc   *nats.Conn
	subj messages.Subjects
	// beforeAck, when set, runs on each final report before it is
	// acknowledged, and its value is kept with the report.
	beforeAck func(*messages.Report) any

	mu         sync.Mutex
	heartbeats []messages.Heartbeat
	reports    []receivedReport
}

// receivedReport is a final report, when it arrived, and what beforeAck
// returned for it.
type receivedReport struct {
	messages.Report
	at   time.Time
	note any
}

func newTestCoordinator(t *testing.T) *testCoordinator {
	t.Helper()
	ns, err := embedded.Start(embedded.Options{Listen: "127.0.0.1:-1", DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	tc := &testCoordinator{t: t, url: ns.ClientURL(), subj: messages.DefaultSubjects()}
	tc.nc = tc.connect()

	js, err := jetstream.New(tc.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: tc.subj.LogsStream(), Subjects: []string{tc.subj.Logs()}}); err != nil {
		t.Fatalf("create the log stream: %v", err)
	}
	if _, err := tc.nc.Subscribe(tc.subj.Heartbeat(), tc.onHeartbeat); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.nc.Subscribe(tc.subj.Report(), tc.onReport); err != nil {
		t.Fatal(err)
	}
	if err := tc.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return tc
}

func (tc *testCoordinator) connect() *nats.Conn {
	tc.t.Helper()
	nc, err := nats.Connect(tc.url)
	if err != nil {
		tc.t.Fatalf("connect to %s: %v", tc.url, err)
	}
	tc.t.Cleanup(nc.Close)
	return nc
}

func (tc *testCoordinator) onHeartbeat(msg *nats.Msg) {
	var hb messages.Heartbeat
	if err := messages.Decode(msg.Data, &hb); err != nil {
		tc.t.Errorf("decode heartbeat: %v", err)
		return
	}
	tc.mu.Lock()
	tc.heartbeats = append(tc.heartbeats, hb)
	tc.mu.Unlock()
	// A long lease keeps the worker from killing jobs between the few
	// heartbeats of tests with long heartbeat intervals.
	_ = msg.Respond(messages.MustEncode(&messages.HeartbeatReply{V: messages.ProtocolVersion, Leader: "test", LeaseMS: 60_000, Term: 1}))
}

func (tc *testCoordinator) onReport(msg *nats.Msg) {
	var r messages.Report
	if err := messages.Decode(msg.Data, &r); err != nil {
		tc.t.Errorf("decode report: %v", err)
		return
	}
	switch r.Kind {
	case messages.ReportCompleted, messages.ReportFailed, messages.ReportCancelled:
	default:
		return
	}
	received := receivedReport{Report: r, at: time.Now()}
	if tc.beforeAck != nil {
		received.note = tc.beforeAck(&r)
	}
	tc.mu.Lock()
	tc.reports = append(tc.reports, received)
	tc.mu.Unlock()
	_ = msg.Respond(messages.MustEncode(&messages.ReportReply{}))
}

// startWorker starts a worker on its own connection and stops it when the
// test ends.
func (tc *testCoordinator) startWorker(cfg Config) *Worker {
	tc.t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(tc.t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := New(tc.connect(), cfg)
	if err != nil {
		tc.t.Fatalf("New: %v", err)
	}
	if err := w.Start(context.Background()); err != nil {
		tc.t.Fatalf("Start: %v", err)
	}
	tc.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			tc.t.Errorf("Stop: %v", err)
		}
	})
	return w
}

// command sends a command to the worker and returns its reply.
func (tc *testCoordinator) command(worker string, cmd messages.WorkerCommand) messages.CommandReply {
	tc.t.Helper()
	cmd.V, cmd.Term = messages.ProtocolVersion, 1
	msg, err := tc.nc.Request(tc.subj.WorkerCommand(worker), messages.MustEncode(&cmd), 20*time.Second)
	if err != nil {
		tc.t.Fatalf("send %s command to %s: %v", cmd.Kind, worker, err)
	}
	var reply messages.CommandReply
	if err := messages.Decode(msg.Data, &reply); err != nil {
		tc.t.Fatalf("decode the reply to %s: %v", cmd.Kind, err)
	}
	return reply
}

// publish sends a command that gets no reply, such as a cancel.
func (tc *testCoordinator) publish(worker string, cmd messages.WorkerCommand) {
	tc.t.Helper()
	cmd.V, cmd.Term = messages.ProtocolVersion, 1
	if err := tc.nc.Publish(tc.subj.WorkerCommand(worker), messages.MustEncode(&cmd)); err != nil {
		tc.t.Fatalf("send %s command to %s: %v", cmd.Kind, worker, err)
	}
}

// run sends a run command for a new job of plugin on gpus and returns the
// job id.
func (tc *testCoordinator) run(worker, plugin string, kwargs map[string]any, gpus []int) string {
	tc.t.Helper()
	job := newJob(tc.t, plugin, kwargs)
	if reply := tc.command(worker, messages.WorkerCommand{Kind: messages.CommandRun, Job: job, GPUs: gpus}); reply.Error != nil {
		tc.t.Fatalf("run %s: %v", plugin, reply.Error)
	}
	return job.ID
}

// finalReport waits for the final report of a job.
func (tc *testCoordinator) finalReport(jobID string, timeout time.Duration) receivedReport {
	tc.t.Helper()
	var found receivedReport
	waitFor(tc.t, timeout, "the final report of job "+jobID, func() bool {
		tc.mu.Lock()
		defer tc.mu.Unlock()
		for _, r := range tc.reports {
			if r.JobID == jobID {
				found = r
				return true
			}
		}
		return false
	})
	return found
}

// heartbeatCount returns how many heartbeats arrived so far.
func (tc *testCoordinator) heartbeatCount() int {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return len(tc.heartbeats)
}

// waitHeartbeat waits for a heartbeat that satisfies cond, among those
// after the first since heartbeats.
func (tc *testCoordinator) waitHeartbeat(what string, since int, timeout time.Duration, cond func(messages.Heartbeat) bool) messages.Heartbeat {
	tc.t.Helper()
	seen := since
	var found messages.Heartbeat
	waitFor(tc.t, timeout, what, func() bool {
		tc.mu.Lock()
		defer tc.mu.Unlock()
		for _, hb := range tc.heartbeats[seen:] {
			if cond(hb) {
				found = hb
				return true
			}
		}
		seen = len(tc.heartbeats)
		return false
	})
	return found
}

// reportPID returns the "pid" of a completed job's result.
func reportPID(t *testing.T, r receivedReport) int {
	t.Helper()
	if r.Kind != messages.ReportCompleted {
		t.Fatalf("report = %+v, want completed", r.Report)
	}
	return resultPID(t, Outcome{Status: messages.StatusCompleted, Result: r.Result})
}

// infoProcesses returns the processes of a plugin in a heartbeat.
func infoProcesses(hb messages.Heartbeat, plugin string) []messages.PluginProcess {
	for _, p := range hb.Info.Plugins {
		if p.Name == plugin {
			return p.Processes
		}
	}
	return nil
}

func heartbeatGPU(hb messages.Heartbeat, index int) messages.GPU {
	for _, g := range hb.Info.GPUs {
		if g.Index == index {
			return g
		}
	}
	return messages.GPU{Index: -1}
}

// gpuPluginsDir writes the manifests of test/testdata/gpu with absolute
// commands into a temporary directory, plus an exec manifest of the same
// plugin, gpu-exec, that allocates 2048 MiB.
func gpuPluginsDir(t *testing.T) string {
	t.Helper()
	src := gpuTestdata(t)
	dir := t.TempDir()
	script := filepath.Join(src, "gpu_model.py")
	for _, name := range []string{"gpu-model.json", "gpu-small.json"} {
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		m["command"] = []string{"python3", script}
		writeFile(t, filepath.Join(dir, name), jsonText(t, m))
	}
	execManifest := map[string]any{
		"name": "gpu-exec", "command": []string{"python3", script}, "mode": "exec",
		"resources": map[string]any{"gpus": 1, "gpu_memory_mb": 2048},
		"env":       map[string]string{"GPU_MODEL_MB": "2048"}, "cancel_timeout": "2s", "kill_grace": "1s",
	}
	writeFile(t, filepath.Join(dir, "gpu-exec.json"), jsonText(t, execManifest))
	return dir
}

func TestWorkerEvictCommand(t *testing.T) {
	nvidiaSMI := useFakeGPU(t, fakeGPUConfig{GPUs: twoFakeGPUs()})
	tc := newTestCoordinator(t)
	w := tc.startWorker(Config{Name: "evict-test", PluginsDir: gpuPluginsDir(t), NvidiaSMI: nvidiaSMI, MaxJobs: 4, HeartbeatInterval: 200 * time.Millisecond})

	warm := reportPID(t, tc.finalReport(tc.run(w.Name(), "gpu-model", nil, []int{0}), 15*time.Second))
	tc.waitHeartbeat("a heartbeat with the warm process", 0, 5*time.Second, func(hb messages.Heartbeat) bool {
		procs := infoProcesses(hb, "gpu-model")
		return len(procs) == 1 && procs[0].PID == warm && !procs[0].Busy && procs[0].GPUMemoryMB == 12288 &&
			heartbeatGPU(hb, 0).MemoryUsedMB == 1000+12288
	})

	busyJob := tc.run(w.Name(), "gpu-small", map[string]any{"seconds": 30}, []int{1})
	var busy int
	tc.waitHeartbeat("a heartbeat with the busy process", 0, 10*time.Second, func(hb messages.Heartbeat) bool {
		procs := infoProcesses(hb, "gpu-small")
		if len(procs) == 1 && procs[0].Busy {
			busy = procs[0].PID
		}
		return busy != 0
	})
	reply := tc.command(w.Name(), messages.WorkerCommand{Kind: messages.CommandEvict, Evict: []int{busy}, Reason: "test: evict a busy process"})
	if reply.Error == nil || reply.Error.Code != messages.CodeConflict {
		t.Errorf("evict of a busy process replied %+v, want a conflict error", reply.Error)
	}
	if !processAlive(busy) {
		t.Errorf("busy process %d was stopped", busy)
	}

	beforeEvict := tc.heartbeatCount()
	reply = tc.command(w.Name(), messages.WorkerCommand{Kind: messages.CommandEvict, Evict: []int{warm, 1 << 30}, Reason: "test: make room"})
	if reply.Error != nil {
		t.Fatalf("evict of the warm process replied %v, want success", reply.Error)
	}
	if processAlive(warm) {
		t.Errorf("evicted process %d still runs after the reply", warm)
	}
	tc.waitHeartbeat("a heartbeat without the evicted process", beforeEvict, 5*time.Second, func(hb messages.Heartbeat) bool {
		return len(infoProcesses(hb, "gpu-model")) == 0 && heartbeatGPU(hb, 0).MemoryUsedMB == 1000
	})

	reply = tc.command(w.Name(), messages.WorkerCommand{Kind: messages.CommandEvict, Evict: []int{warm}})
	if reply.Error == nil || reply.Error.Code != messages.CodeNotFound {
		t.Errorf("evict of a process already gone replied %+v, want not_found", reply.Error)
	}
	reply = tc.command(w.Name(), messages.WorkerCommand{Kind: messages.CommandEvict})
	if reply.Error == nil || reply.Error.Code != messages.CodeInvalid {
		t.Errorf("evict without pids replied %+v, want invalid_argument", reply.Error)
	}

	tc.publish(w.Name(), messages.WorkerCommand{Kind: messages.CommandCancel, JobID: busyJob, Attempt: 1})
	if r := tc.finalReport(busyJob, 15*time.Second); r.Kind != messages.ReportCancelled {
		t.Errorf("busy job ended %s, want cancelled", r.Kind)
	}
}

func TestWorkerReportsAfterGPURelease(t *testing.T) {
	const delay = time.Second
	nvidiaSMI := useFakeGPU(t, fakeGPUConfig{GPUs: twoFakeGPUs(), ReleaseDelayMS: int(delay / time.Millisecond)})
	tc := newTestCoordinator(t)
	// Each final report notes the pids that fake-nvidia-smi lists when it
	// arrives.
	tc.beforeAck = func(*messages.Report) any {
		apps, err := queryComputeApps(context.Background(), nvidiaSMI)
		if err != nil {
			t.Errorf("query the fake GPU: %v", err)
		}
		var pids []int
		for _, app := range apps {
			pids = append(pids, app.PID)
		}
		return pids
	}
	w := tc.startWorker(Config{Name: "release-test", PluginsDir: gpuPluginsDir(t), NvidiaSMI: nvidiaSMI, MaxJobs: 4})

	sent := time.Now()
	completed := tc.finalReport(tc.run(w.Name(), "gpu-exec", map[string]any{"seconds": 0.1}, []int{0}), 15*time.Second)
	pid := reportPID(t, completed)
	if listed := completed.note.([]int); slices.Contains(listed, pid) {
		t.Errorf("completed job reported while the fake still listed its pid %d: %v", pid, listed)
	}
	if took := completed.at.Sub(sent); took < delay {
		t.Errorf("completed job reported %v after its run command, want at least the %v release delay", took, delay)
	}

	cancelled := tc.run(w.Name(), "gpu-exec", map[string]any{"seconds": 30}, []int{0})
	var running int
	waitFor(t, 10*time.Second, "the cancelled job to allocate", func() bool {
		apps, err := queryComputeApps(context.Background(), nvidiaSMI)
		if err == nil && len(apps) == 1 {
			running = apps[0].PID
		}
		return running != 0
	})
	tc.publish(w.Name(), messages.WorkerCommand{Kind: messages.CommandCancel, JobID: cancelled, Attempt: 1})
	report := tc.finalReport(cancelled, 15*time.Second)
	if report.Kind != messages.ReportCancelled {
		t.Errorf("cancelled job ended %s, want cancelled", report.Kind)
	}
	if listed := report.note.([]int); slices.Contains(listed, running) {
		t.Errorf("cancelled job reported while the fake still listed its pid %d: %v", running, listed)
	}

	// A persistent process stays warm with its memory, so its job is
	// reported without waiting for a release that does not come.
	sent = time.Now()
	warm := tc.finalReport(tc.run(w.Name(), "gpu-model", nil, []int{1}), 15*time.Second)
	warmPID := reportPID(t, warm)
	if listed := warm.note.([]int); !slices.Contains(listed, warmPID) {
		t.Errorf("the fake lists %v when the warm process's job is reported, want its pid %d", listed, warmPID)
	}
	if took := warm.at.Sub(sent); took >= gpuReleaseTimeout {
		t.Errorf("job of a warm process reported after %v, want no wait for GPU release", took)
	}
}

// setExternalUse rewrites the fake's config with external_used_mb of GPU 0
// set to mb. The new file replaces the old one at once.
func setExternalUse(t *testing.T, mb int64) {
	t.Helper()
	path := os.Getenv("FAKE_GPU_CONFIG")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg fakeGPUConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.GPUs[0].ExternalUsedMB = mb
	tmp := path + ".new"
	writeFile(t, tmp, jsonText(t, cfg))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestWorkerProbesOnJobStartAndEnd(t *testing.T) {
	nvidiaSMI := useFakeGPU(t, fakeGPUConfig{GPUs: twoFakeGPUs()})
	tc := newTestCoordinator(t)
	// Neither timer fires during the test, so only job starts and ends
	// refresh the probe and send heartbeats.
	w := tc.startWorker(Config{Name: "refresh-test", PluginsDir: gpuPluginsDir(t), NvidiaSMI: nvidiaSMI,
		ProbeInterval: time.Hour, HeartbeatInterval: time.Hour})
	tc.waitHeartbeat("the first heartbeat", 0, 5*time.Second, func(hb messages.Heartbeat) bool {
		return heartbeatGPU(hb, 0).MemoryUsedMB == 1000
	})

	// Only a probe after each setExternalUse can see its figure.
	setExternalUse(t, 5000)
	job := tc.run(w.Name(), "gpu-model", map[string]any{"seconds": 1}, []int{1})
	tc.waitHeartbeat("a heartbeat after the start with a fresh probe", 0, 5*time.Second, func(hb messages.Heartbeat) bool {
		return len(hb.Running) == 1 && hb.Running[0].ID == job && heartbeatGPU(hb, 0).MemoryUsedMB == 5000
	})

	beforeEnd := tc.heartbeatCount()
	setExternalUse(t, 7000)
	tc.finalReport(job, 15*time.Second)
	hb := tc.waitHeartbeat("a heartbeat after the end with a fresh probe", beforeEnd, 5*time.Second, func(hb messages.Heartbeat) bool {
		return heartbeatGPU(hb, 0).MemoryUsedMB == 7000
	})
	if gpu1 := heartbeatGPU(hb, 1); gpu1.MemoryUsedMB != 12288 {
		t.Errorf("GPU 1 after the job = %+v, want the warm model's 12288 MiB used", gpu1)
	}
}

func TestWorkerStaticGPUs(t *testing.T) {
	useFakeGPU(t, fakeGPUConfig{GPUs: twoFakeGPUs()}) // the plugin maps GPU indexes to UUIDs through it
	tc := newTestCoordinator(t)
	declared, err := ParseGPUSpec("0:24576:Gaudi2,1:16384")
	if err != nil {
		t.Fatal(err)
	}
	trap := trapNvidiaSMI(t)
	w := tc.startWorker(Config{Name: "static-test", PluginsDir: gpuPluginsDir(t), StaticGPUs: declared, HeartbeatInterval: 200 * time.Millisecond})

	hb := tc.waitHeartbeat("a heartbeat with the declared GPUs", 0, 5*time.Second, func(hb messages.Heartbeat) bool {
		return len(hb.Info.GPUs) == 2
	})
	if g := heartbeatGPU(hb, 0); g.Name != "Gaudi2" || g.MemoryTotalMB != 24576 || g.MemoryFreeMB != 24576 || g.UtilizationPct != -1 {
		t.Errorf("GPU 0 = %+v, want Gaudi2 with 24576 MiB free", g)
	}

	warm := reportPID(t, tc.finalReport(tc.run(w.Name(), "gpu-small", nil, []int{1}), 15*time.Second))
	tc.waitHeartbeat("a heartbeat with the warm process's memory used", 0, 5*time.Second, func(hb messages.Heartbeat) bool {
		g := heartbeatGPU(hb, 1)
		procs := infoProcesses(hb, "gpu-small")
		return g.MemoryUsedMB == 4096 && g.MemoryFreeMB == 16384-4096 && len(procs) == 1 && procs[0].PID == warm && procs[0].GPUMemoryMB == 4096
	})

	beforeEvict := tc.heartbeatCount()
	if reply := tc.command(w.Name(), messages.WorkerCommand{Kind: messages.CommandEvict, Evict: []int{warm}}); reply.Error != nil {
		t.Fatalf("evict replied %v", reply.Error)
	}
	tc.waitHeartbeat("a heartbeat with the memory free again", beforeEvict, 5*time.Second, func(hb messages.Heartbeat) bool {
		return heartbeatGPU(hb, 1).MemoryUsedMB == 0
	})
	if _, err := os.Stat(trap); err == nil {
		t.Error("the worker ran nvidia-smi although its GPUs are declared")
	}
}

// trapNvidiaSMI puts an nvidia-smi first in PATH that creates a file when it
// runs, and returns that file's path.
func trapNvidiaSMI(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	marker := filepath.Join(dir, "nvidia-smi-ran")
	script := "#!/bin/sh\n: > '" + marker + "'\necho 'nvidia-smi must not run with declared GPUs' >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(dir, "nvidia-smi"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return marker
}
