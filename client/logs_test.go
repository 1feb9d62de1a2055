package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jetqueue/jetqueue/client/clienttest"
	"github.com/jetqueue/jetqueue/messages"
)

// receive returns the next n texts from lines, failing the test after 10s.
func receive(t *testing.T, lines <-chan string, n int) []string {
	t.Helper()
	var got []string
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case text := <-lines:
			got = append(got, text)
		case <-timeout:
			t.Fatalf("received %v, want %d lines", got, n)
		}
	}
	return got
}

func TestFollowLogsFromLastUntilJobEnds(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	job := newJob(t, "sleep", messages.StatusRunning)
	other := newJob(t, "sleep", messages.StatusRunning)
	serveJob(srv, job, nil)
	for i := 1; i <= 5; i++ {
		publishLog(t, srv, job.ID, fmt.Sprintf("line %d", i))
		publishLog(t, srv, other.ID, fmt.Sprintf("other %d", i))
	}

	lines := make(chan string, 100)
	done := make(chan error, 1)
	go func() {
		done <- c.FollowLogs(testContext(t), job.ID, 2, func(l messages.LogLine) { lines <- l.Text })
	}()

	if got := receive(t, lines, 2); !slices.Equal(got, []string{"line 4", "line 5"}) {
		t.Errorf("first lines = %v, want the last two stored", got)
	}
	publishLog(t, srv, other.ID, "other 6")
	publishLog(t, srv, job.ID, "line 6")
	if got := receive(t, lines, 1); got[0] != "line 6" {
		t.Errorf("next line = %q, want line 6", got[0])
	}
	select {
	case err := <-done:
		t.Fatalf("FollowLogs returned %v while the job runs", err)
	default:
	}

	publishLog(t, srv, job.ID, "line 7")
	completed := job
	completed.Status = messages.StatusCompleted
	publishEvent(t, srv, messages.EventCompleted, completed)

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("FollowLogs: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("FollowLogs did not return within 10s of the completed event")
	}
	if got := receive(t, lines, 1); got[0] != "line 7" {
		t.Errorf("last line = %q, want line 7", got[0])
	}
	if len(lines) != 0 {
		t.Errorf("%d more lines delivered, want none", len(lines))
	}
}

func TestFollowLogsAllOfFinishedJob(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	job := newJob(t, "sleep", messages.StatusFailed)
	serveJob(srv, job, nil)
	var want []string
	for i := 1; i <= 20; i++ {
		text := fmt.Sprintf("line %d", i)
		publishLog(t, srv, job.ID, text)
		want = append(want, text)
	}

	var got []string
	err := c.FollowLogs(testContext(t), job.ID, -1, func(l messages.LogLine) { got = append(got, l.Text) })
	if err != nil {
		t.Fatalf("FollowLogs: %v", err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("lines = %v, want %v", got, want)
	}
}

func TestFollowLogsFromLastBeyondStored(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	job := newJob(t, "sleep", messages.StatusCompleted)
	serveJob(srv, job, nil)
	publishLog(t, srv, job.ID, "only line")

	var got []string
	if err := c.FollowLogs(testContext(t), job.ID, 50, func(l messages.LogLine) { got = append(got, l.Text) }); err != nil {
		t.Fatalf("FollowLogs: %v", err)
	}
	if !slices.Equal(got, []string{"only line"}) {
		t.Errorf("lines = %v, want the one stored line", got)
	}
}

func TestFollowLogsContextEnds(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	job := newJob(t, "sleep", messages.StatusRunning)
	serveJob(srv, job, nil)

	ctx, cancel := context.WithTimeout(testContext(t), 300*time.Millisecond)
	defer cancel()
	err := c.FollowLogs(ctx, job.ID, 10, func(messages.LogLine) {})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}

func TestFollowLogsUnknownJob(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	serveJob(srv, newJob(t, "sleep", messages.StatusRunning), nil)

	err := c.FollowLogs(testContext(t), "0190c1a2-7b3c-7d4e-8f90-123456789abc", 10, func(messages.LogLine) {})
	if messages.CodeOf(err) != messages.CodeNotFound {
		t.Fatalf("err = %v, want not_found", err)
	}
}

func TestLogsRejectsBadLineCount(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)

	_, err := c.Logs(testContext(t), "0190c1a2-7b3c-7d4e-8f90-123456789abc", -2)
	if messages.CodeOf(err) != messages.CodeInvalid {
		t.Errorf("Logs -2: err = %v, want invalid_argument", err)
	}
	err = c.FollowLogs(testContext(t), "0190c1a2-7b3c-7d4e-8f90-123456789abc", -5, func(messages.LogLine) {})
	if messages.CodeOf(err) != messages.CodeInvalid {
		t.Errorf("FollowLogs -5: err = %v, want invalid_argument", err)
	}
}
