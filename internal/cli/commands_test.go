package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jetqueue/jetqueue/client/clienttest"
	"github.com/jetqueue/jetqueue/messages"
)

// scripted is a scripted coordinator API with a job table, on a real
// embedded nats-server.
type scripted struct {
	*clienttest.Server
	env map[string]string

	mu   sync.Mutex
	jobs map[string]messages.Job
}

func startScripted(t *testing.T) *scripted {
	t.Helper()
	srv := clienttest.Start(t, "")
	s := &scripted{Server: srv, env: map[string]string{"JETQUEUE_NATS": srv.URL()}, jobs: map[string]messages.Job{}}
	s.Handle(messages.VerbGet, func(body []byte) (any, error) {
		job, err := s.lookup(body)
		if err != nil {
			return nil, err
		}
		return messages.JobReply{Job: job}, nil
	})
	return s
}

func (s *scripted) lookup(body []byte) (messages.Job, error) {
	var req messages.JobRequest
	if err := messages.Decode(body, &req); err != nil {
		return messages.Job{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	job, ok := s.jobs[req.ID]
	if !ok {
		return messages.Job{}, messages.Errorf(messages.CodeNotFound, "job %s not found", req.ID)
	}
	return job, nil
}

// addJob stores a job of status and returns it.
func (s *scripted) addJob(t *testing.T, status messages.Status) messages.Job {
	t.Helper()
	job := messages.Job{
		ID: uuid.Must(uuid.NewV7()).String(), PluginName: "sleep", Status: status, Priority: 1,
		CreatedAt: time.Now().UTC(), Attempt: 1, MaxAttempts: 3,
	}
	if status != messages.StatusPending {
		started := time.Now().UTC().Add(-2 * time.Second)
		job.StartedAt = &started
	}
	if status.Final() {
		completed := time.Now().UTC()
		job.CompletedAt = &completed
	}
	s.setJob(job)
	return job
}

func (s *scripted) setJob(job messages.Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobs[job.ID] = job
}

func TestSubmitCommandSendsRequest(t *testing.T) {
	s := startScripted(t)
	requests := make(chan messages.SubmitRequest, 1)
	s.Handle(messages.VerbSubmit, func(body []byte) (any, error) {
		var req messages.SubmitRequest
		if err := messages.Decode(body, &req); err != nil {
			return nil, err
		}
		requests <- req
		return messages.SubmitReply{ID: "0190c1a2-7b3c-7d4e-8f90-123456789abc", Seq: 1}, nil
	})

	r := runCLI(t, s.env, "submit", "hash-files", "path=/data", "n=3", "--priority", "7",
		"--label", "team=a", "--gpus", "1", "--memory-mb", "512", "--kwargs-json", `{"n": 1, "deep": true}`,
		"--idempotency-key", "k1", "--max-attempts", "2", "--args-json", `["x"]`)
	if r.code != ExitOK {
		t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
	}
	if r.stdout != "0190c1a2-7b3c-7d4e-8f90-123456789abc\n" {
		t.Errorf("stdout = %q, want the id and a newline", r.stdout)
	}

	req := <-requests
	if req.PluginName != "hash-files" || req.Priority != 7 || req.IdempotencyKey != "k1" || req.MaxAttempts != 2 {
		t.Errorf("request = %+v", req)
	}
	kwargs, err := req.Kwargs.Value()
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"path": "/data", "n": int64(3), "deep": true}; !reflect.DeepEqual(kwargs, want) {
		t.Errorf("kwargs = %#v, want %#v", kwargs, want)
	}
	if !reflect.DeepEqual(req.Labels, map[string]string{"team": "a"}) {
		t.Errorf("labels = %v, want team=a", req.Labels)
	}
	r0 := req.Requirements
	if r0 == nil || r0.GPUs == nil || *r0.GPUs != 1 || r0.MemoryMB == nil || *r0.MemoryMB != 512 || r0.CPUs != nil || r0.GPUMemoryMB != nil {
		t.Errorf("requirements = %+v, want gpus 1 and memory_mb 512 only", r0)
	}
	if args, _ := req.Args.Value(); !reflect.DeepEqual(args, []any{"x"}) {
		t.Errorf("args = %#v, want [x]", args)
	}
}

func TestSubmitCommandJSONAndDuplicate(t *testing.T) {
	s := startScripted(t)
	var mu sync.Mutex
	var got messages.SubmitRequest
	s.Handle(messages.VerbSubmit, func(body []byte) (any, error) {
		mu.Lock()
		defer mu.Unlock()
		if err := messages.Decode(body, &got); err != nil {
			return nil, err
		}
		return messages.SubmitReply{ID: "0190c1a2-7b3c-7d4e-8f90-123456789abc", Duplicate: true}, nil
	})

	r := runCLI(t, s.env, "submit", "--json", "sleep")
	if r.code != ExitOK {
		t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
	if out["id"] != "0190c1a2-7b3c-7d4e-8f90-123456789abc" {
		t.Errorf("JSON = %v, want the id", out)
	}
	wantContains(t, "stderr", r.stderr, "idempotency key matched")

	mu.Lock()
	defer mu.Unlock()
	if got.Kwargs != nil || got.Requirements != nil || got.Labels != nil {
		t.Errorf("request = %+v, want no kwargs, requirements or labels", got)
	}
}

func TestWaitExitCodes(t *testing.T) {
	s := startScripted(t)
	completed := s.addJob(t, messages.StatusCompleted)
	completed.Result = messages.MustPayload(map[string]any{"files": 3})
	s.setJob(completed)
	failed := s.addJob(t, messages.StatusFailed)
	failed.Error = "plugin exited with status 2"
	s.setJob(failed)
	cancelled := s.addJob(t, messages.StatusCancelled)
	running := s.addJob(t, messages.StatusRunning)

	cases := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{"completed", []string{"wait", completed.ID}, ExitOK, []string{"completed", `{"files":3}`}, nil},
		{"failed", []string{"wait", failed.ID}, ExitJobFailed, []string{"failed", "plugin exited with status 2"}, nil},
		{"cancelled", []string{"wait", cancelled.ID}, ExitJobCancelled, []string{"cancelled"}, nil},
		{"timeout", []string{"wait", running.ID, "--timeout", "300ms"}, ExitTimeout, nil, []string{"timed out after 300ms", "running", "carries on"}},
		{"not found", []string{"wait", "0190c1a2-7b3c-7d4e-8f90-123456789abc"}, ExitFailure, nil, []string{"jetqueue: not_found"}},
		{"json", []string{"wait", "--json", failed.ID}, ExitJobFailed, []string{`"status": "failed"`, `"plugin_name": "sleep"`}, nil},
		{"json timeout", []string{"wait", "--json", "--timeout", "200ms", running.ID}, ExitTimeout, []string{`"status": "running"`}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, s.env, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", r.code, tc.code, r.stderr)
			}
			wantContains(t, "stdout", r.stdout, tc.stdout...)
			wantContains(t, "stderr", r.stderr, tc.stderr...)
		})
	}
}

func TestWaitReturnsOnLaterEvent(t *testing.T) {
	s := startScripted(t)
	running := s.addJob(t, messages.StatusRunning)

	done := make(chan result, 1)
	go func() { done <- runCLI(t, s.env, "wait", running.ID) }()

	// The wait has read the record once get was called; the event that
	// follows ends it.
	deadline := time.Now().Add(10 * time.Second)
	for s.Requests(messages.VerbGet) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("wait sent no get request within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancelled := running
	cancelled.Status = messages.StatusCancelled
	if err := s.PublishEvent(context.Background(), messages.EventCancelled, cancelled); err != nil {
		t.Fatal(err)
	}

	r := <-done
	if r.code != ExitJobCancelled {
		t.Errorf("exit %d, want %d; stderr:\n%s", r.code, ExitJobCancelled, r.stderr)
	}
}

func TestSubmitWaitExitsLikeWait(t *testing.T) {
	s := startScripted(t)
	failed := s.addJob(t, messages.StatusFailed)
	s.Handle(messages.VerbSubmit, func([]byte) (any, error) { return messages.SubmitReply{ID: failed.ID}, nil })

	r := runCLI(t, s.env, "submit", "sleep", "seconds=1", "--wait")
	if r.code != ExitJobFailed {
		t.Errorf("exit %d, want %d; stderr:\n%s", r.code, ExitJobFailed, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, failed.ID+"\n") {
		t.Errorf("stdout = %q, want the id first", r.stdout)
	}
	wantContains(t, "stdout", r.stdout, "failed")
}

func TestStatusCommand(t *testing.T) {
	s := startScripted(t)
	job := s.addJob(t, messages.StatusRunning)
	var limit int
	var mu sync.Mutex
	s.Handle(messages.VerbState, func(body []byte) (any, error) {
		var req messages.StateRequest
		if err := messages.Decode(body, &req); err != nil {
			return nil, err
		}
		mu.Lock()
		limit = req.HistoryLimit
		mu.Unlock()
		return messages.StateReply{Running: []messages.Job{job}, Stats: messages.Stats{Running: 1, Submitted: 1}}, nil
	})

	r := runCLI(t, s.env, "status", job.ID)
	if r.code != ExitOK {
		t.Fatalf("status JOB: exit %d; stderr:\n%s", r.code, r.stderr)
	}
	wantContains(t, "status JOB", r.stdout, job.ID, "running", "1 of 3")

	r = runCLI(t, s.env, "status", "--json", job.ID)
	var record map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &record); err != nil {
		t.Fatalf("status --json JOB is not JSON: %v\n%s", err, r.stdout)
	}
	for _, field := range []string{"id", "plugin_name", "status", "priority", "created_at", "started_at", "completed_at", "progress", "status_message", "seq", "worker", "attempt", "max_attempts", "pending_reason", "cancel_phase"} {
		if _, ok := record[field]; !ok {
			t.Errorf("status --json JOB lacks field %q", field)
		}
	}

	r = runCLI(t, s.env, "status", "--history", "5")
	if r.code != ExitOK {
		t.Fatalf("status: exit %d; stderr:\n%s", r.code, r.stderr)
	}
	wantContains(t, "status", r.stdout, "RUNNING (1)", job.ID, "1 submitted")
	mu.Lock()
	if limit != 5 {
		t.Errorf("history_limit = %d, want 5", limit)
	}
	mu.Unlock()

	r = runCLI(t, s.env, "status", "--json")
	var state messages.StateReply
	if err := json.Unmarshal([]byte(r.stdout), &state); err != nil {
		t.Fatalf("status --json is not a state: %v\n%s", err, r.stdout)
	}
	if len(state.Running) != 1 || state.Running[0].ID != job.ID {
		t.Errorf("state = %+v, want the running job", state)
	}
}

func TestCancelAndReorderCommands(t *testing.T) {
	s := startScripted(t)
	job := s.addJob(t, messages.StatusPending)
	s.Handle(messages.VerbCancel, func(body []byte) (any, error) {
		j, err := s.lookup(body)
		if err != nil {
			return nil, err
		}
		if j.Status.Final() {
			return nil, messages.Errorf(messages.CodeConflict, "job %s is already %s", j.ID, j.Status)
		}
		j.Status = messages.StatusCancelled
		s.setJob(j)
		return messages.JobReply{Job: j}, nil
	})
	priorities := make(chan int, 1)
	s.Handle(messages.VerbReorder, func(body []byte) (any, error) {
		var req messages.ReorderRequest
		if err := messages.Decode(body, &req); err != nil {
			return nil, err
		}
		priorities <- req.Priority
		return messages.JobReply{Job: messages.Job{ID: req.ID, Priority: req.Priority}}, nil
	})

	r := runCLI(t, s.env, "reorder", job.ID, "-5")
	if r.code != ExitOK {
		t.Fatalf("reorder: exit %d; stderr:\n%s", r.code, r.stderr)
	}
	if p := <-priorities; p != -5 {
		t.Errorf("priority sent = %d, want -5", p)
	}
	wantContains(t, "reorder", r.stdout, "priority -5")

	r = runCLI(t, s.env, "cancel", job.ID)
	if r.code != ExitOK {
		t.Fatalf("cancel: exit %d; stderr:\n%s", r.code, r.stderr)
	}
	wantContains(t, "cancel", r.stdout, job.ID+" cancelled")

	r = runCLI(t, s.env, "cancel", job.ID)
	if r.code != ExitFailure {
		t.Errorf("second cancel: exit %d, want %d", r.code, ExitFailure)
	}
	wantContains(t, "second cancel", r.stderr, "jetqueue: conflict", "already cancelled")
}

func TestLogsCommand(t *testing.T) {
	s := startScripted(t)
	job := s.addJob(t, messages.StatusCompleted)
	for i := 1; i <= 3; i++ {
		line := messages.LogLine{JobID: job.ID, Attempt: 1, Time: time.Now().UTC(), Stream: messages.LogStdout, Level: "info", Text: fmt.Sprintf("line %d", i)}
		if err := s.PublishLog(context.Background(), line); err != nil {
			t.Fatal(err)
		}
	}
	s.Handle(messages.VerbLogs, func(body []byte) (any, error) {
		var req messages.LogsRequest
		if err := messages.Decode(body, &req); err != nil {
			return nil, err
		}
		lines := []messages.LogLine{{JobID: req.ID, Stream: messages.LogStderr, Level: "warning", Text: fmt.Sprintf("asked for %d", req.Lines)}}
		return messages.LogsReply{Lines: lines, Truncated: true}, nil
	})

	r := runCLI(t, s.env, "logs", job.ID, "--lines", "7")
	if r.code != ExitOK {
		t.Fatalf("logs: exit %d; stderr:\n%s", r.code, r.stderr)
	}
	wantContains(t, "logs", r.stdout, "stderr", "warning", "asked for 7")
	wantContains(t, "logs stderr", r.stderr, "--lines -1")

	r = runCLI(t, s.env, "logs", "-f", "--lines", "2", job.ID)
	if r.code != ExitOK {
		t.Fatalf("logs -f: exit %d; stderr:\n%s", r.code, r.stderr)
	}
	if strings.Contains(r.stdout, "line 1") || !strings.Contains(r.stdout, "line 2") || !strings.Contains(r.stdout, "line 3") {
		t.Errorf("logs -f --lines 2 printed:\n%s\nwant lines 2 and 3", r.stdout)
	}

	r = runCLI(t, s.env, "logs", "--follow", "--json", "--lines", "-1", job.ID)
	if r.code != ExitOK {
		t.Fatalf("logs --follow --json: exit %d; stderr:\n%s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("printed %d JSON lines, want 3:\n%s", len(lines), r.stdout)
	}
	var first messages.LogLine
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.Text != "line 1" {
		t.Errorf("first JSON line = %q (%v), want line 1", lines[0], err)
	}
}

func TestWorkersCommand(t *testing.T) {
	s := startScripted(t)
	s.Handle(messages.VerbWorkers, func([]byte) (any, error) {
		w := messages.WorkerState{Info: messages.WorkerInfo{Name: "node-7", MaxJobs: 2, CPUs: 8}, Status: "ready", LastSeen: time.Now()}
		return messages.WorkersReply{Workers: []messages.WorkerState{w}}, nil
	})

	r := runCLI(t, s.env, "workers")
	if r.code != ExitOK {
		t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
	}
	wantContains(t, "workers", lineWith(t, r.stdout, "node-7"), "ready", "0/2", "8")

	r = runCLI(t, s.env, "workers", "--json")
	var reply messages.WorkersReply
	if err := json.Unmarshal([]byte(r.stdout), &reply); err != nil || len(reply.Workers) != 1 {
		t.Errorf("workers --json = %q (%v), want one worker", r.stdout, err)
	}
}

func TestNoCoordinatorExits1(t *testing.T) {
	s := startScripted(t)

	r := runCLI(t, s.env, "status", "--prefix", "elsewhere", "--timeout", "1s")
	if r.code != ExitFailure {
		t.Errorf("exit %d, want %d", r.code, ExitFailure)
	}
	wantContains(t, "stderr", r.stderr, "jetqueue: coordinator not reachable", "elsewhere.api.state")

	r = runCLI(t, map[string]string{"JETQUEUE_NATS": "nats://127.0.0.1:1"}, "workers", "--timeout", "1s")
	if r.code != ExitFailure {
		t.Errorf("unreachable NATS: exit %d, want %d", r.code, ExitFailure)
	}
	wantContains(t, "stderr", r.stderr, "connect to NATS at nats://127.0.0.1:1", "jetqueue serve")
}
