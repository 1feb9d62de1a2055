package client_test

import (
	"sync"
	"testing"
	"time"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/client/clienttest"
	"github.com/jetqueue/jetqueue/messages"
)

func TestSubmitRetriesThroughFailover(t *testing.T) {
	srv := clienttest.Start(t, "jq")
	var mu sync.Mutex
	var keys []string
	srv.Handle(messages.VerbSubmit, func(body []byte) (any, error) {
		var req messages.SubmitRequest
		if err := messages.Decode(body, &req); err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		keys = append(keys, req.IdempotencyKey)
		if len(keys) < 3 {
			return nil, messages.Errorf(messages.CodeNotLeader, "coordinator c2 is not the leader; retry")
		}
		return messages.SubmitReply{ID: "0190c1a2-7b3c-7d4e-8f90-123456789abc", Seq: 1}, nil
	})
	c := newClient(t, srv, client.WithRetry(5*time.Second))

	id, err := c.Submit(testContext(t), "sleep", nil)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if id != "0190c1a2-7b3c-7d4e-8f90-123456789abc" {
		t.Errorf("id = %s", id)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(keys) != 3 {
		t.Fatalf("coordinator saw %d submits, want 3", len(keys))
	}
	if keys[0] == "" {
		t.Fatalf("submit carried no idempotency key")
	}
	if keys[1] != keys[0] || keys[2] != keys[0] {
		t.Errorf("retries changed the idempotency key: %v", keys)
	}
}

func TestSubmitRetryGivesUpAfterDuration(t *testing.T) {
	srv := clienttest.Start(t, "jq")
	srv.Handle(messages.VerbSubmit, func(body []byte) (any, error) {
		return nil, messages.Errorf(messages.CodeNotLeader, "no leader")
	})
	c := newClient(t, srv, client.WithRetry(300*time.Millisecond))

	began := time.Now()
	_, err := c.Submit(testContext(t), "sleep", nil)
	if code := messages.CodeOf(err); code != messages.CodeNotLeader {
		t.Fatalf("error %v has code %s, want not_leader", err, code)
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("gave up after %s, want about 300ms", took)
	}
	if n := srv.Requests(messages.VerbSubmit); n < 2 {
		t.Errorf("%d attempts, want retries", n)
	}
}
