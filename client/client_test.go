package client_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/client/clienttest"
	"github.com/jetqueue/jetqueue/messages"
)

func TestSubmitSendsEveryField(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	requests := make(chan messages.SubmitRequest, 1)
	srv.Handle(messages.VerbSubmit, func(body []byte) (any, error) {
		var req messages.SubmitRequest
		if err := messages.Decode(body, &req); err != nil {
			return nil, err
		}
		requests <- req
		return messages.SubmitReply{ID: "0190c1a2-7b3c-7d4e-8f90-123456789abc", Seq: 7}, nil
	})

	gpus, memory := 1, int64(2048)
	id, err := c.Submit(testContext(t), "hash-files", map[string]any{"path": "/data", "depth": 3},
		client.Priority(5), client.MaxAttempts(2), client.IdempotencyKey("key-1"),
		client.Labels(map[string]string{"team": "a"}), client.Labels(map[string]string{"run": "7"}),
		client.Requirements(messages.Requirements{GPUs: &gpus, MemoryMB: &memory}),
		client.Args("first", 2))
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if id != "0190c1a2-7b3c-7d4e-8f90-123456789abc" {
		t.Errorf("id = %q, want the reply's id", id)
	}

	req := <-requests
	if req.V != messages.ProtocolVersion {
		t.Errorf("v = %d, want %d", req.V, messages.ProtocolVersion)
	}
	if req.PluginName != "hash-files" {
		t.Errorf("plugin_name = %q", req.PluginName)
	}
	if req.Priority != 5 || req.MaxAttempts != 2 || req.IdempotencyKey != "key-1" {
		t.Errorf("priority, max_attempts, idempotency_key = %d, %d, %q", req.Priority, req.MaxAttempts, req.IdempotencyKey)
	}
	if want := map[string]string{"team": "a", "run": "7"}; !reflect.DeepEqual(req.Labels, want) {
		t.Errorf("labels = %v, want %v", req.Labels, want)
	}
	if req.Requirements == nil || *req.Requirements.GPUs != 1 || *req.Requirements.MemoryMB != 2048 || req.Requirements.CPUs != nil {
		t.Errorf("requirements = %+v, want gpus 1 and memory_mb 2048 only", req.Requirements)
	}
	kwargs, err := req.Kwargs.Value()
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"path": "/data", "depth": int8(3)}; !reflect.DeepEqual(kwargs, want) {
		t.Errorf("kwargs = %#v, want %#v", kwargs, want)
	}
	args, err := req.Args.Value()
	if err != nil {
		t.Fatal(err)
	}
	if want := []any{"first", int8(2)}; !reflect.DeepEqual(args, want) {
		t.Errorf("args = %#v, want %#v", args, want)
	}
}

func TestSubmitNilKwargsSendsNil(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	requests := make(chan messages.SubmitRequest, 1)
	srv.Handle(messages.VerbSubmit, func(body []byte) (any, error) {
		var req messages.SubmitRequest
		if err := messages.Decode(body, &req); err != nil {
			return nil, err
		}
		requests <- req
		return messages.SubmitReply{ID: "0190c1a2-7b3c-7d4e-8f90-123456789abc"}, nil
	})

	if _, err := c.Submit(testContext(t), "sleep", nil); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	req := <-requests
	if req.Kwargs != nil || req.Args != nil {
		t.Errorf("kwargs, args = %v, %v, want both nil", req.Kwargs, req.Args)
	}
	if req.Requirements != nil || req.Labels != nil {
		t.Errorf("requirements, labels = %v, %v, want both nil", req.Requirements, req.Labels)
	}
}

func TestSubmitReplyWithoutID(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	srv.Handle(messages.VerbSubmit, func([]byte) (any, error) { return messages.SubmitReply{}, nil })

	_, err := c.Submit(testContext(t), "sleep", nil)
	if !errors.Is(err, client.ErrInvalidReply) {
		t.Fatalf("err = %v, want ErrInvalidReply", err)
	}
}

func TestSubmitBatchResults(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	srv.Handle(messages.VerbSubmitBatch, func(body []byte) (any, error) {
		var req messages.SubmitBatchRequest
		if err := messages.Decode(body, &req); err != nil {
			return nil, err
		}
		results := make([]messages.SubmitResult, len(req.Jobs))
		for i, job := range req.Jobs {
			if job.V != messages.ProtocolVersion {
				results[i].Error = messages.Errorf(messages.CodeInvalid, "job %d has v %d", i, job.V)
				continue
			}
			if job.PluginName == "bad.name" {
				results[i].Error = messages.Errorf(messages.CodeInvalid, "plugin name %q contains '.'", job.PluginName)
				continue
			}
			results[i].ID = "0190c1a2-7b3c-7d4e-8f90-12345678900" + string(rune('0'+i))
		}
		return messages.SubmitBatchReply{Results: results}, nil
	})

	results, err := c.SubmitBatch(testContext(t), []messages.SubmitRequest{{PluginName: "sleep"}, {PluginName: "bad.name"}})
	if err != nil {
		t.Fatalf("SubmitBatch: %v", err)
	}
	if len(results) != 2 {
		t.Fatalf("%d results, want 2", len(results))
	}
	if results[0].ID == "" || results[0].Error != nil {
		t.Errorf("results[0] = %+v, want an id", results[0])
	}
	if messages.CodeOf(results[1].Error) != messages.CodeInvalid {
		t.Errorf("results[1] = %+v, want an invalid_argument error", results[1])
	}
}

func TestSubmitBatchResultCountMismatch(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	srv.Handle(messages.VerbSubmitBatch, func([]byte) (any, error) {
		return messages.SubmitBatchReply{Results: []messages.SubmitResult{{ID: "x"}}}, nil
	})

	_, err := c.SubmitBatch(testContext(t), []messages.SubmitRequest{{PluginName: "a"}, {PluginName: "b"}})
	if !errors.Is(err, client.ErrInvalidReply) {
		t.Fatalf("err = %v, want ErrInvalidReply", err)
	}
	if !strings.Contains(err.Error(), "1 results for 2 jobs") {
		t.Errorf("err = %q, want the counts", err)
	}
}

func TestErrorReplyDecodesBody(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	id := "0190c1a2-7b3c-7d4e-8f90-123456789abc"
	srv.Handle(messages.VerbGet, func([]byte) (any, error) {
		return nil, messages.Errorf(messages.CodeNotFound, "job %s not found: it may have left the history", id)
	})

	_, err := c.Get(testContext(t), id)
	var apiErr *messages.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v (%T), want *messages.Error", err, err)
	}
	if apiErr.Code != messages.CodeNotFound {
		t.Errorf("code = %q, want not_found", apiErr.Code)
	}
	if !strings.Contains(apiErr.Message, id) {
		t.Errorf("message = %q, want the job id", apiErr.Message)
	}
	if !errors.Is(err, &messages.Error{Code: messages.CodeNotFound}) {
		t.Errorf("errors.Is(err, not_found) = false")
	}
}

func TestErrorReplyFallsBackToHeaders(t *testing.T) {
	cases := []struct {
		name    string
		status  string
		text    string
		code    messages.ErrorCode
		message string
	}{
		{"conflict", "409", "job already completed", messages.CodeConflict, "job already completed"},
		{"not found", "404", "no such job", messages.CodeNotFound, "no such job"},
		{"unavailable", "503", "not the leader", messages.CodeUnavailable, "not the leader"},
		{"too large", "413", "kwargs too large", messages.CodeTooLarge, "kwargs too large"},
		{"unsupported", "505", "version 9", messages.CodeUnsupported, "version 9"},
		{"bad request", "400", "garbage", messages.CodeInvalid, "garbage"},
		{"unknown status", "418", "teapot", messages.CodeInternal, "teapot"},
		{"no message", "500", "", messages.CodeInternal, "error status 500"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := clienttest.Start(t, "")
			c := newClient(t, srv, client.WithRetry(0))
			srv.Handle(messages.VerbCancel, func([]byte) (any, error) {
				header := nats.Header{}
				header.Set(micro.ErrorCodeHeader, tc.status)
				if tc.text != "" {
					header.Set(micro.ErrorHeader, tc.text)
				}
				return clienttest.RawReply{Header: header, Data: []byte("not msgpack")}, nil
			})

			_, err := c.Cancel(testContext(t), "0190c1a2-7b3c-7d4e-8f90-123456789abc")
			var apiErr *messages.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v (%T), want *messages.Error", err, err)
			}
			if apiErr.Code != tc.code {
				t.Errorf("code = %q, want %q", apiErr.Code, tc.code)
			}
			if !strings.Contains(apiErr.Message, tc.message) {
				t.Errorf("message = %q, want it to contain %q", apiErr.Message, tc.message)
			}
		})
	}
}

func TestErrorReplyBodyWithoutMessage(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	srv.Handle(messages.VerbGet, func([]byte) (any, error) {
		header := nats.Header{}
		header.Set(micro.ErrorCodeHeader, "409")
		header.Set(micro.ErrorHeader, "from the header")
		body := messages.MustEncode(messages.Error{Code: messages.CodeConflict})
		return clienttest.RawReply{Header: header, Data: body}, nil
	})

	_, err := c.Get(testContext(t), "0190c1a2-7b3c-7d4e-8f90-123456789abc")
	var apiErr *messages.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v, want *messages.Error", err)
	}
	if apiErr.Code != messages.CodeConflict || apiErr.Message != "from the header" {
		t.Errorf("error = %+v, want conflict with the header's message", apiErr)
	}
}

func TestRequestNoResponders(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv, client.WithPrefix("elsewhere"), client.WithRetry(0))

	start := time.Now()
	_, err := c.State(testContext(t), messages.StateRequest{})
	if !errors.Is(err, client.ErrNoCoordinator) {
		t.Fatalf("err = %v, want ErrNoCoordinator", err)
	}
	for _, want := range []string{"elsewhere.api.state", "jetqueue serve", "--nats"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q, want it to contain %q", err, want)
		}
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("took %s, want an immediate no-responders error", elapsed)
	}
}

func TestRequestTimeout(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv, client.WithTimeout(200*time.Millisecond), client.WithRetry(0))
	srv.Handle(messages.VerbWorkers, func([]byte) (any, error) { return nil, clienttest.ErrNoReply })

	start := time.Now()
	_, err := c.Workers(testContext(t))
	if !errors.Is(err, client.ErrNoCoordinator) {
		t.Fatalf("err = %v, want ErrNoCoordinator", err)
	}
	if !strings.Contains(err.Error(), "within 200ms") || !strings.Contains(err.Error(), "jq.api.workers") {
		t.Errorf("err = %q, want the subject and the timeout", err)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("took %s, want about 200ms", elapsed)
	}
}

func TestRequestContextCancelled(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	srv.Handle(messages.VerbGet, func([]byte) (any, error) { return nil, clienttest.ErrNoReply })

	ctx, cancel := context.WithTimeout(testContext(t), 100*time.Millisecond)
	defer cancel()
	_, err := c.Get(ctx, "0190c1a2-7b3c-7d4e-8f90-123456789abc")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if errors.Is(err, client.ErrNoCoordinator) {
		t.Errorf("err = %v: the caller's deadline is not a missing coordinator", err)
	}
}

func TestInvalidReplyBody(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	srv.Handle(messages.VerbState, func([]byte) (any, error) {
		return clienttest.RawReply{Data: []byte{0xc1}}, nil
	})

	_, err := c.State(testContext(t), messages.StateRequest{})
	if !errors.Is(err, client.ErrInvalidReply) {
		t.Fatalf("err = %v, want ErrInvalidReply", err)
	}
	if messages.CodeOf(err) == messages.CodeBadRequest {
		t.Errorf("err = %v carries bad_request: a bad reply is not the caller's bad request", err)
	}
}

func TestInvalidJobIDSendsNothing(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	ctx := testContext(t)

	calls := map[string]func() error{
		"get":     func() error { _, err := c.Get(ctx, "job-1"); return err },
		"cancel":  func() error { _, err := c.Cancel(ctx, "job.*"); return err },
		"reorder": func() error { _, err := c.Reorder(ctx, "", 1); return err },
		"logs":    func() error { _, err := c.Logs(ctx, ">", 10); return err },
		"wait":    func() error { _, err := c.WaitForJob(ctx, "*"); return err },
		"follow":  func() error { return c.FollowLogs(ctx, "a.b", 0, func(messages.LogLine) {}) },
	}
	for name, call := range calls {
		if err := call(); messages.CodeOf(err) != messages.CodeInvalid {
			t.Errorf("%s: err = %v, want invalid_argument", name, err)
		}
	}
	for _, verb := range messages.Verbs {
		if n := srv.Requests(verb); n != 0 {
			t.Errorf("%d %s requests sent, want none", n, verb)
		}
	}
}

func TestReorderSendsPriority(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	job := newJob(t, "sleep", messages.StatusPending)
	srv.Handle(messages.VerbReorder, func(body []byte) (any, error) {
		var req messages.ReorderRequest
		if err := messages.Decode(body, &req); err != nil {
			return nil, err
		}
		if req.ID != job.ID {
			return nil, messages.Errorf(messages.CodeNotFound, "job %s not found", req.ID)
		}
		job.Priority = req.Priority
		return messages.JobReply{Job: job}, nil
	})

	got, err := c.Reorder(testContext(t), job.ID, -7)
	if err != nil {
		t.Fatalf("Reorder: %v", err)
	}
	if got.Priority != -7 {
		t.Errorf("priority = %d, want -7", got.Priority)
	}

	_, err = c.Reorder(testContext(t), job.ID, 1<<40)
	if messages.CodeOf(err) != messages.CodeInvalid {
		t.Errorf("priority 1<<40: err = %v, want invalid_argument", err)
	}
}

func TestStateWorkersAndLogsReplies(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	job := newJob(t, "sleep", messages.StatusRunning)
	stateRequests := make(chan messages.StateRequest, 1)
	srv.Handle(messages.VerbState, func(body []byte) (any, error) {
		var req messages.StateRequest
		if err := messages.Decode(body, &req); err != nil {
			return nil, err
		}
		stateRequests <- req
		return messages.StateReply{Running: []messages.Job{job}, Stats: messages.Stats{Running: 1}, Leader: "c1"}, nil
	})
	srv.Handle(messages.VerbWorkers, func([]byte) (any, error) {
		return messages.WorkersReply{Workers: []messages.WorkerState{{Info: messages.WorkerInfo{Name: "w1", MaxJobs: 2}, Status: "ready"}}}, nil
	})
	logRequests := make(chan messages.LogsRequest, 1)
	srv.Handle(messages.VerbLogs, func(body []byte) (any, error) {
		var req messages.LogsRequest
		if err := messages.Decode(body, &req); err != nil {
			return nil, err
		}
		logRequests <- req
		return messages.LogsReply{Lines: []messages.LogLine{{JobID: job.ID, Text: "hello"}}, Truncated: true}, nil
	})
	ctx := testContext(t)

	state, err := c.State(ctx, messages.StateRequest{HistoryLimit: -1})
	if err != nil {
		t.Fatalf("State: %v", err)
	}
	if req := <-stateRequests; req.HistoryLimit != -1 || req.V != messages.ProtocolVersion {
		t.Errorf("state request = %+v, want history_limit -1 and v set", req)
	}
	if len(state.Running) != 1 || state.Running[0].ID != job.ID || state.Leader != "c1" {
		t.Errorf("state = %+v, want the running job and leader c1", state)
	}

	workers, err := c.Workers(ctx)
	if err != nil {
		t.Fatalf("Workers: %v", err)
	}
	if len(workers) != 1 || workers[0].Info.Name != "w1" {
		t.Errorf("workers = %+v, want w1", workers)
	}

	logs, err := c.Logs(ctx, job.ID, 5)
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	if req := <-logRequests; req.ID != job.ID || req.Lines != 5 {
		t.Errorf("logs request = %+v, want the job id and 5 lines", req)
	}
	if len(logs.Lines) != 1 || logs.Lines[0].Text != "hello" || !logs.Truncated {
		t.Errorf("logs = %+v, want one line and truncated", logs)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	srv := clienttest.Start(t, "")
	nc := srv.Connect(t)

	if _, err := client.New(nil); err == nil {
		t.Error("New(nil) returned no error")
	}
	_, err := client.New(nc, client.WithPrefix("a.b"))
	if err == nil || !strings.Contains(err.Error(), `"a.b"`) {
		t.Errorf("prefix a.b: err = %v, want an error naming the prefix", err)
	}
	_, err = client.New(nc, client.WithTimeout(0))
	if err == nil || !strings.Contains(err.Error(), "timeout 0s") {
		t.Errorf("timeout 0: err = %v, want an error naming the timeout", err)
	}
}

func TestPrefixChangesSubjects(t *testing.T) {
	srv := clienttest.Start(t, "team-a")
	c := newClient(t, srv, client.WithPrefix("team-a"))
	job := newJob(t, "sleep", messages.StatusCompleted)
	serveJob(srv, job, nil)

	got, err := c.Get(testContext(t), job.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.ID != job.ID {
		t.Errorf("id = %s, want %s", got.ID, job.ID)
	}
	if c.Subjects().EventsStream() != "TEAM-A_EVENTS" {
		t.Errorf("events stream = %s, want TEAM-A_EVENTS", c.Subjects().EventsStream())
	}
}
