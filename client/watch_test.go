package client_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/client/clienttest"
	"github.com/jetqueue/jetqueue/messages"
)

// errSeen ends a Watch from its callback.
var errSeen = errors.New("seen the last expected event")

type watched struct {
	plugin string
	job    string
	kind   messages.EventKind
}

// watchUntil runs Watch with filter until last returns true for a delivered
// event, and returns every event delivered.
func watchUntil(t *testing.T, c *client.Client, filter client.WatchFilter, last func(messages.Event) bool) []watched {
	t.Helper()
	var got []watched
	err := c.Watch(testContext(t), filter, func(ev messages.Event) error {
		got = append(got, watched{ev.Job.PluginName, ev.Job.ID, ev.Kind})
		if last(ev) {
			return errSeen
		}
		return nil
	})
	if !errors.Is(err, errSeen) {
		t.Fatalf("Watch: %v, want the callback's error", err)
	}
	return got
}

func TestWatchFiltersByPluginAndKind(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	a1, a2, b1 := newJob(t, "alpha", messages.StatusRunning), newJob(t, "alpha", messages.StatusRunning), newJob(t, "beta", messages.StatusRunning)
	for _, job := range []messages.Job{a1, a2, b1} {
		publishEvent(t, srv, messages.EventSubmitted, job)
		publishEvent(t, srv, messages.EventStarted, job)
	}
	publishEvent(t, srv, messages.EventCompleted, b1)
	publishEvent(t, srv, messages.EventCompleted, a1)
	publishEvent(t, srv, messages.EventProgress, a2)
	publishEvent(t, srv, messages.EventFailed, a2)

	filter := client.WatchFilter{
		Plugin:     "alpha",
		Kinds:      []messages.EventKind{messages.EventCompleted, messages.EventFailed, messages.EventCompleted},
		DeliverAll: true,
	}
	got := watchUntil(t, c, filter, func(ev messages.Event) bool { return ev.Job.ID == a2.ID })

	want := []watched{{"alpha", a1.ID, messages.EventCompleted}, {"alpha", a2.ID, messages.EventFailed}}
	if !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

func TestWatchFiltersByJob(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	mine, other := newJob(t, "alpha", messages.StatusRunning), newJob(t, "alpha", messages.StatusRunning)
	publishEvent(t, srv, messages.EventSubmitted, mine)
	publishEvent(t, srv, messages.EventSubmitted, other)
	publishEvent(t, srv, messages.EventStarted, other)
	publishEvent(t, srv, messages.EventStarted, mine)
	publishEvent(t, srv, messages.EventCompleted, other)
	publishEvent(t, srv, messages.EventCompleted, mine)

	filter := client.WatchFilter{JobID: mine.ID, DeliverAll: true}
	got := watchUntil(t, c, filter, func(ev messages.Event) bool { return ev.Kind == messages.EventCompleted })

	want := []watched{
		{"alpha", mine.ID, messages.EventSubmitted},
		{"alpha", mine.ID, messages.EventStarted},
		{"alpha", mine.ID, messages.EventCompleted},
	}
	if !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

func TestWatchDefaultDeliversOnlyNewEvents(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	old := newJob(t, "alpha", messages.StatusCompleted)
	publishEvent(t, srv, messages.EventCompleted, old)

	var mu sync.Mutex
	var got []string
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(ctx, client.WatchFilter{}, func(ev messages.Event) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, ev.Job.ID)
			return nil
		})
	}()

	// The watch starts at some moment after the goroutine does, so new
	// events are published until one arrives.
	fresh := newJob(t, "alpha", messages.StatusRunning)
	deadline := time.Now().Add(10 * time.Second)
	for {
		publishEvent(t, srv, messages.EventProgress, fresh)
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no new event delivered within 10s")
		}
		select {
		case err := <-done:
			t.Fatalf("Watch returned early: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()

	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch after cancel: %v, want context.Canceled", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if slices.Contains(got, old.ID) {
		t.Errorf("delivered the event stored before Watch started: %v", got)
	}
}

func TestWatchSince(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	before := newJob(t, "alpha", messages.StatusCompleted)
	publishEvent(t, srv, messages.EventCompleted, before)

	// Since is set just after the stored time of the first event. Each
	// publish waits for the stream's acknowledgement, so the second event is
	// stored later.
	stream, err := srv.JetStream.Stream(testContext(t), srv.Subjects.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	stored, err := stream.GetLastMsgForSubject(testContext(t), srv.Subjects.Events())
	if err != nil {
		t.Fatal(err)
	}
	since := stored.Time.Add(time.Nanosecond)
	after := newJob(t, "alpha", messages.StatusCompleted)
	publishEvent(t, srv, messages.EventCompleted, after)

	got := watchUntil(t, c, client.WatchFilter{Since: since}, func(messages.Event) bool { return true })
	if len(got) != 1 || got[0].job != after.ID {
		t.Errorf("events = %v, want only job %s", got, after.ID)
	}
}

func TestWatchRejectsBadFilter(t *testing.T) {
	srv := clienttest.Start(t, "")
	c := newClient(t, srv)
	cases := map[string]client.WatchFilter{
		"plugin with a dot":   {Plugin: "a.b"},
		"job id not a uuid":   {JobID: "*"},
		"kind with wildcard":  {Kinds: []messages.EventKind{">"}},
		"deliver all & since": {DeliverAll: true, Since: time.Now()},
	}
	for name, filter := range cases {
		err := c.Watch(testContext(t), filter, func(messages.Event) error { return nil })
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}

	err := c.Watch(testContext(t), client.WatchFilter{Plugin: "a.b"}, func(messages.Event) error { return nil })
	if err == nil || !strings.Contains(err.Error(), `"a.b"`) {
		t.Errorf("err = %v, want the plugin named", err)
	}
}
