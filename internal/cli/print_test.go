package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

var printNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) *time.Time {
	t := printNow.Add(d)
	return &t
}

func sampleWorker() messages.WorkerState {
	return messages.WorkerState{
		Info: messages.WorkerInfo{
			Name: "gpu-node-1", MaxJobs: 4, CPUs: 15.5, MemoryTotalMB: 64000, MemoryAvailableMB: 51000,
			GPUs: []messages.GPU{
				{Index: 0, Name: "A100", MemoryTotalMB: 40960, MemoryFreeMB: 1000},
				{Index: 1, Name: "A100", MemoryTotalMB: 40960, MemoryFreeMB: 40000},
			},
			Plugins: []messages.PluginInfo{{Name: "hash-files", Busy: 1, Warm: 0}, {Name: "whisper", Busy: 0, Warm: 2}},
		},
		Jobs:     []string{"job-a", "job-b"},
		LastSeen: printNow.Add(-3 * time.Second),
		Status:   "ready",
	}
}

func TestPrintStateRows(t *testing.T) {
	running := messages.Job{
		ID: "0190c1a2-0000-7000-8000-000000000001", PluginName: "hash-files", Status: messages.StatusRunning,
		Priority: 7, Worker: "gpu-node-1", Attempt: 1, MaxAttempts: 3, Progress: 0.45,
		StatusMessage: "hashing net", StartedAt: at(-90 * time.Second),
	}
	pending := messages.Job{
		ID: "0190c1a2-0000-7000-8000-000000000002", PluginName: "whisper", Status: messages.StatusPending,
		Priority: -2, CreatedAt: printNow.Add(-time.Minute), PendingReason: "needs 1 GPU with 30000 MiB free; the most free is 1000 MiB",
	}
	failed := messages.Job{
		ID: "0190c1a2-0000-7000-8000-000000000003", PluginName: "compress", Status: messages.StatusFailed,
		Priority: 1, StartedAt: at(-10 * time.Second), CompletedAt: at(-8 * time.Second), Error: "src /x not found\nmore detail",
	}
	state := messages.StateReply{
		Running: []messages.Job{running},
		Pending: []messages.PendingJob{{Position: 1, Job: pending}},
		History: []messages.Job{failed},
		Stats:   messages.Stats{Pending: 1, Running: 1, Failed: 1, Submitted: 3},
		Workers: []messages.WorkerState{sampleWorker()},
		Leader:  "coordinator-a",
	}

	var out strings.Builder
	if err := printState(&out, state, printNow); err != nil {
		t.Fatal(err)
	}
	text := out.String()

	line := lineWith(t, text, running.ID)
	wantContains(t, "running row", line, "hash-files", "7", "gpu-node-1", "1 of 3", "45%", "1m30s", "hashing net")
	line = lineWith(t, text, pending.ID)
	wantContains(t, "pending row", line, "1 ", "whisper", "-2", "1m0s", pending.PendingReason)
	line = lineWith(t, text, failed.ID)
	wantContains(t, "history row", line, "compress", "failed", "2s", "src /x not found")
	if strings.Contains(text, "more detail") {
		t.Error("history shows the error's second line")
	}
	wantContains(t, "state", text, "RUNNING (1)", "PENDING (1)", "HISTORY (1 shown)",
		"1 pending, 1 running, 0 completed, 1 failed, 0 cancelled; 3 submitted", "coordinator-a", "WORKERS (1)", "gpu-node-1")
}

func TestPrintStateEmpty(t *testing.T) {
	var out strings.Builder
	if err := printState(&out, messages.StateReply{}, printNow); err != nil {
		t.Fatal(err)
	}
	wantContains(t, "state", out.String(), "RUNNING (0)", "PENDING (0)", "HISTORY (0 shown)", "WORKERS (0)")
	if strings.Contains(out.String(), "JOB ") {
		t.Errorf("empty state prints table headers:\n%s", out.String())
	}
}

func TestPrintWorkersRow(t *testing.T) {
	var out strings.Builder
	if err := printWorkers(&out, []messages.WorkerState{sampleWorker()}, printNow); err != nil {
		t.Fatal(err)
	}
	line := lineWith(t, out.String(), "gpu-node-1")
	wantContains(t, "worker row", line, "ready", "2/4", "15.5", "51000/64000",
		"0:A100 1000/40960", "1:A100 40000/40960", "hash-files 1/0", "whisper 0/2", "3s ago")
	wantContains(t, "header", out.String(), "MEMORY MiB (AVAIL/TOTAL)", "GPUS MiB (FREE/TOTAL)", "PLUGINS (BUSY/WARM)")
}

func TestPrintJobFields(t *testing.T) {
	gpus := 2
	job := messages.Job{
		ID: "0190c1a2-0000-7000-8000-000000000009", PluginName: "whisper", Status: messages.StatusCompleted,
		Priority: 3, Seq: 42, Worker: "gpu-node-1", Attempt: 2, MaxAttempts: 3,
		CreatedAt: printNow.Add(-time.Hour), StartedAt: at(-10 * time.Minute), CompletedAt: at(-5 * time.Minute),
		Result:       messages.MustPayload(map[string]any{"text": "hello"}),
		Kwargs:       messages.MustPayload(map[string]any{"path": "/a.wav"}),
		Labels:       map[string]string{"team": "speech", "run": "7"},
		Requirements: &messages.Requirements{GPUs: &gpus},
		Requeues:     []messages.Requeue{{Time: printNow.Add(-20 * time.Minute), Worker: "gpu-node-2", Attempt: 1, Reason: "worker lost"}},
	}

	var out strings.Builder
	if err := printJob(&out, job, printNow); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	wantContains(t, "job", text, job.ID, "whisper", "completed", "42", "2 of 3", "run time", "5m0s",
		`{"text":"hello"}`, `{"path":"/a.wav"}`, "run=7, team=speech", "2 GPUs", "gpu-node-2", "worker lost")
	for _, absent := range []string{"pending reason", "cancel phase", "error", "progress"} {
		if strings.Contains(text, absent) {
			t.Errorf("job output shows the empty field %q:\n%s", absent, text)
		}
	}
}

func TestPrintOutcome(t *testing.T) {
	base := messages.Job{ID: "0190c1a2-0000-7000-8000-00000000000a", StartedAt: at(-3 * time.Second), CompletedAt: at(0)}
	cases := []struct {
		status messages.Status
		tweak  func(*messages.Job)
		wants  []string
	}{
		{messages.StatusCompleted, func(j *messages.Job) { j.Result = messages.MustPayload(map[string]any{"files": 3}) }, []string{"completed after 3s", `result: {"files":3}`}},
		{messages.StatusFailed, func(j *messages.Job) { j.Error = "boom"; j.Attempt = 1; j.MaxAttempts = 3 }, []string{"failed after 3s on attempt 1 of 3", "error: boom"}},
		{messages.StatusCancelled, func(*messages.Job) {}, []string{"cancelled after 3s"}},
	}
	for _, tc := range cases {
		job := base
		job.Status = tc.status
		tc.tweak(&job)
		var out strings.Builder
		if err := printOutcome(&out, job); err != nil {
			t.Fatal(err)
		}
		wantContains(t, string(tc.status), out.String(), tc.wants...)
		wantContains(t, string(tc.status), out.String(), job.ID)
	}
}

func TestPrintLogLine(t *testing.T) {
	var out strings.Builder
	line := messages.LogLine{Time: printNow, Stream: messages.LogStderr, Level: "warning", Text: "disk almost full"}
	if err := printLogLine(&out, line); err != nil {
		t.Fatal(err)
	}
	wantContains(t, "log line", out.String(), "stderr", "warning", "disk almost full", printNow.Local().Format("15:04:05.000"))
}

// lineWith returns the line of text that contains s.
func lineWith(t *testing.T, text, s string) string {
	t.Helper()
	for line := range strings.Lines(text) {
		if strings.Contains(line, s) {
			return line
		}
	}
	t.Fatalf("no line contains %q:\n%s", s, text)
	return ""
}
