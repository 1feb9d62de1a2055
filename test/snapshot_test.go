package test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/coordinator"
	"github.com/jetqueue/jetqueue/messages"
	"github.com/jetqueue/jetqueue/worker"
)

func TestSnapshotBoundsJournalAndRestores(t *testing.T) {
	tune := func(c *coordinator.Config) {
		c.SnapshotEvery = 25
		c.SnapshotInterval = 200 * time.Millisecond
		c.EventRetention = 50 * time.Millisecond
		c.MaxHistory = 60
	}
	e := newEnv(t, tune)
	e.startWorker(worker.Config{Name: "w1", MaxJobs: 4}, map[string]worker.Handler{
		"echo": func(ctx context.Context, job *messages.Job, r worker.Reporter) (any, error) { return "ok", nil },
	})

	var done []string
	for i := range 100 {
		done = append(done, e.submit("echo", map[string]any{"i": i}))
	}
	// Jobs beyond MaxHistory leave the state as they finish, so wait for
	// the queue to empty rather than for each job.
	e.eventually(20*time.Second, "every job to finish", func() bool {
		st, err := e.client.State(context.Background(), messages.StateRequest{})
		return err == nil && st.Stats.Pending == 0 && st.Stats.Running == 0 && st.Stats.Completed == 60
	})
	var waiting []string
	for i := range 10 {
		waiting = append(waiting, e.submit("absent", map[string]any{"i": i}, client.Priority(i%3)))
	}

	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(context.Background(), "JQ_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	var info *jetstream.StreamInfo
	e.eventually(20*time.Second, "the journal to be purged below its newest events", func() bool {
		info, err = stream.Info(context.Background())
		return err == nil && info.State.FirstSeq > 300
	})
	t.Logf("journal holds sequences %d to %d (%d events)", info.State.FirstSeq, info.State.LastSeq, info.State.Msgs)

	stopCoordinator(t, e.coord)
	e.startCoordinator(tune)

	st, err := e.client.State(context.Background(), messages.StateRequest{HistoryLimit: -1})
	if err != nil {
		t.Fatalf("State after restart: %v", err)
	}
	if len(st.Pending) != len(waiting) {
		t.Fatalf("pending after restart = %d, want %d", len(st.Pending), len(waiting))
	}
	for i := 1; i < len(st.Pending); i++ {
		a, b := st.Pending[i-1].Job, st.Pending[i].Job
		if a.Priority < b.Priority || (a.Priority == b.Priority && a.Seq > b.Seq) {
			t.Fatalf("pending order broken at %d after restart", i)
		}
	}
	if len(st.History) != 60 {
		t.Fatalf("history after restart has %d jobs, want MaxHistory 60", len(st.History))
	}
	for _, j := range st.History {
		if j.Status != messages.StatusCompleted {
			t.Fatalf("history job %s is %s after restart", j.ID, j.Status)
		}
	}
	last := done[len(done)-1]
	if j := e.get(last); j.Status != messages.StatusCompleted {
		t.Fatalf("newest finished job is %s after restart", j.Status)
	}
	next := e.submit("absent", nil)
	if j := e.get(next); j.Seq <= 110 {
		t.Fatalf("seq after restart = %d, want above the %d jobs submitted before", j.Seq, 110)
	}
}
