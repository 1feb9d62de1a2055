package test

import (
	"context"
	"testing"
	"time"

	"github.com/jetqueue/jetqueue/messages"
	"github.com/jetqueue/jetqueue/worker"
)

func TestDrainedWorkerGetsNoJobs(t *testing.T) {
	e := newEnv(t, nil)
	runs := &runLog{}
	e.startWorker(worker.Config{Name: "w1", MaxJobs: 2}, map[string]worker.Handler{"echo": runs.handler("w1", false)})
	e.startWorker(worker.Config{Name: "w2", MaxJobs: 2}, map[string]worker.Handler{"echo": runs.handler("w2", false)})

	ws, err := e.client.Drain(context.Background(), "w1", true)
	if err != nil {
		t.Fatalf("drain: %v", err)
	}
	if ws.Status != "draining" {
		t.Fatalf("drained worker status = %q, want draining", ws.Status)
	}
	var ids []string
	for range 20 {
		ids = append(ids, e.submit("echo", nil))
	}
	for _, id := range ids {
		if j := e.wait(id, 20*time.Second); j.Worker != "w2" {
			t.Fatalf("job %s ran on %s while w1 was drained", id, j.Worker)
		}
	}

	// The drain outlives a coordinator restart.
	stopCoordinator(t, e.coord)
	e.startCoordinator(nil)
	e.eventually(10*time.Second, "w1 listed as draining after the restart", func() bool {
		ws, err := e.client.Workers(context.Background())
		if err != nil {
			return false
		}
		for _, w := range ws {
			if w.Info.Name == "w1" {
				return w.Status == "draining"
			}
		}
		return false
	})

	if _, err := e.client.Drain(context.Background(), "w2", true); err != nil {
		t.Fatalf("drain w2: %v", err)
	}
	if _, err := e.client.Drain(context.Background(), "w1", false); err != nil {
		t.Fatalf("undrain w1: %v", err)
	}
	id := e.submit("echo", nil)
	if j := e.wait(id, 20*time.Second); j.Worker != "w1" || j.Status != messages.StatusCompleted {
		t.Fatalf("job after undrain ran on %s (%s), want w1", j.Worker, j.Status)
	}
}
