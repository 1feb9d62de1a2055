package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/client/clienttest"
	"github.com/jetqueue/jetqueue/messages"
)

func TestWaitForJobFinishedBeforeCall(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	job := newJob(t, "sleep", messages.StatusCompleted)
	job.Result = messages.MustPayload(map[string]any{"ok": true})
	serveJob(srv, job, nil)

	got, err := c.WaitForJob(testContext(t), job.ID)
	if err != nil {
		t.Fatalf("WaitForJob: %v", err)
	}
	if got.Status != messages.StatusCompleted {
		t.Errorf("status = %s, want completed", got.Status)
	}
	if string(got.Result) != string(job.Result) {
		t.Errorf("result = %x, want %x", got.Result, job.Result)
	}
}

func TestWaitForJobUsesStoredFinalEvent(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	job := newJob(t, "sleep", messages.StatusRunning)
	serveJob(srv, job, nil)

	// The job ended after the get reply was made, so only the stored event
	// shows the end.
	cancelled := job
	cancelled.Status = messages.StatusCancelled
	publishEvent(t, srv, messages.EventStarted, job)
	publishEvent(t, srv, messages.EventCancelled, cancelled)

	got, err := c.WaitForJob(testContext(t), job.ID)
	if err != nil {
		t.Fatalf("WaitForJob: %v", err)
	}
	if got.Status != messages.StatusCancelled {
		t.Errorf("status = %s, want cancelled", got.Status)
	}
}

func TestWaitForJobWaitsForLaterEvent(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	job := newJob(t, "sleep", messages.StatusRunning)
	gotRequest := make(chan struct{})
	serveJob(srv, job, gotRequest)

	type outcome struct {
		job messages.Job
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		j, err := c.WaitForJob(testContext(t), job.ID)
		done <- outcome{j, err}
	}()
	<-gotRequest

	progress := job
	progress.Progress = 0.5
	publishEvent(t, srv, messages.EventProgress, progress.Summary())
	other := newJob(t, "sleep", messages.StatusCompleted)
	publishEvent(t, srv, messages.EventCompleted, other)
	select {
	case o := <-done:
		t.Fatalf("WaitForJob returned %+v, %v before the job's final event", o.job, o.err)
	default:
	}

	failed := job
	failed.Status = messages.StatusFailed
	failed.Error = "plugin exited with status 3"
	publishEvent(t, srv, messages.EventFailed, failed)

	o := <-done
	if o.err != nil {
		t.Fatalf("WaitForJob: %v", o.err)
	}
	if o.job.ID != job.ID || o.job.Status != messages.StatusFailed || o.job.Error != failed.Error {
		t.Errorf("job = %s %s %q, want %s failed %q", o.job.ID, o.job.Status, o.job.Error, job.ID, failed.Error)
	}
}

func TestWaitForJobTimeout(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	job := newJob(t, "sleep", messages.StatusRunning)
	serveJob(srv, job, nil)
	publishEvent(t, srv, messages.EventStarted, job)

	ctx, cancel := context.WithTimeout(testContext(t), 300*time.Millisecond)
	defer cancel()
	got, err := c.WaitForJob(ctx, job.ID)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), job.ID) {
		t.Errorf("err = %q, want the job id", err)
	}
	if got.ID != job.ID || got.Status != messages.StatusRunning {
		t.Errorf("job = %s %s, want the running record", got.ID, got.Status)
	}
}

func TestWaitForJobNotFound(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	serveJob(srv, newJob(t, "sleep", messages.StatusRunning), nil)

	_, err := c.WaitForJob(testContext(t), "0190c1a2-7b3c-7d4e-8f90-123456789abc")
	if messages.CodeOf(err) != messages.CodeNotFound {
		t.Fatalf("err = %v, want not_found", err)
	}
}

func TestWaitForJobMissingStream(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv, client.WithPrefix("other"))

	_, err := c.WaitForJob(testContext(t), "0190c1a2-7b3c-7d4e-8f90-123456789abc")
	if err == nil || !strings.Contains(err.Error(), "stream OTHER_EVENTS not found") {
		t.Fatalf("err = %v, want the missing stream named", err)
	}
}

func TestWaitForJobDeletesItsConsumer(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	job := newJob(t, "sleep", messages.StatusCompleted)
	serveJob(srv, job, nil)

	if _, err := c.WaitForJob(testContext(t), job.ID); err != nil {
		t.Fatalf("WaitForJob: %v", err)
	}
	stream, err := srv.JetStream.Stream(testContext(t), srv.Subjects.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Errorf("%d consumers left on %s, want 0", info.State.Consumers, srv.Subjects.EventsStream())
	}
}
