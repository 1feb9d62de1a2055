package client_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/client/clienttest"
	"github.com/jetqueue/jetqueue/messages"
)

// testTimeout bounds every test's context, so a hang fails instead of
// running into the go test timeout.
const testTimeout = 20 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func newClient(t *testing.T, srv *clienttest.Server, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(srv.Connect(t), opts...)
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	return c
}

func newJob(t *testing.T, plugin string, status messages.Status) messages.Job {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return messages.Job{
		ID:         id.String(),
		PluginName: plugin,
		Status:     status,
		Priority:   1,
		CreatedAt:  time.Now().UTC(),
		Progress:   0,
	}
}

// serveJob makes the server's get verb return job, and close got (when not
// nil) after the first get.
func serveJob(srv *clienttest.Server, job messages.Job, got chan<- struct{}) {
	var once sync.Once
	srv.Handle(messages.VerbGet, func(body []byte) (any, error) {
		var req messages.JobRequest
		if err := messages.Decode(body, &req); err != nil {
			return nil, err
		}
		if req.ID != job.ID {
			return nil, messages.Errorf(messages.CodeNotFound, "job %s not found", req.ID)
		}
		if got != nil {
			once.Do(func() { close(got) })
		}
		return messages.JobReply{Job: job}, nil
	})
}

func publishEvent(t *testing.T, srv *clienttest.Server, kind messages.EventKind, job messages.Job) {
	t.Helper()
	if err := srv.PublishEvent(testContext(t), kind, job); err != nil {
		t.Fatal(err)
	}
}

func publishLog(t *testing.T, srv *clienttest.Server, jobID, text string) {
	t.Helper()
	line := messages.LogLine{JobID: jobID, Attempt: 1, Time: time.Now().UTC(), Stream: messages.LogStdout, Level: "info", Text: text}
	if err := srv.PublishLog(testContext(t), line); err != nil {
		t.Fatal(err)
	}
}
