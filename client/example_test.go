package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/coordinator"
	"github.com/jetqueue/jetqueue/internal/embedded"
	"github.com/jetqueue/jetqueue/messages"
	"github.com/jetqueue/jetqueue/worker"
)

// startQueue starts what `jetqueue serve` runs, in this process: a
// nats-server on a free loopback port, a coordinator and a worker with
// three in-process plugins. "upper" returns its "text" kwarg in upper case;
// "count" reports progress once per step up to its "to" kwarg;
// "wait-for-cancel" runs until it is cancelled. It returns the server's URL
// and a function that stops everything.
//
// The worker and the coordinator normally send at most one progress event
// per job every 100ms and 250ms, the latest value winning. Here both
// intervals are 1ns, so every progress report becomes an event and the
// examples' output does not depend on timing.
func startQueue() (string, func()) {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)

	dir, err := os.MkdirTemp("", "jetqueue-example-")
	if err != nil {
		log.Fatal(err)
	}
	ns, err := embedded.Start(embedded.Options{Listen: "127.0.0.1:-1", DataDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		log.Fatal(err)
	}

	coord, err := coordinator.New(nc, coordinator.Config{Name: "example", ProgressInterval: time.Nanosecond, Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	if err := coord.Start(ctx); err != nil {
		log.Fatal(err)
	}

	w, err := worker.New(nc, worker.Config{Name: "example-worker", MaxJobs: 2, ProgressInterval: time.Nanosecond, Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	upper := func(ctx context.Context, job *messages.Job, r worker.Reporter) (any, error) {
		kwargs, err := job.Kwargs.Value()
		if err != nil {
			return nil, err
		}
		text, _ := kwargs.(map[string]any)["text"].(string)
		return map[string]any{"text": strings.ToUpper(text)}, nil
	}
	count := func(ctx context.Context, job *messages.Job, r worker.Reporter) (any, error) {
		var kwargs struct {
			To int `msgpack:"to"`
		}
		if err := messages.Decode(job.Kwargs, &kwargs); err != nil {
			return nil, err
		}
		for i := 1; i <= kwargs.To; i++ {
			r.Progress(float64(i)/float64(kwargs.To), fmt.Sprintf("counted %d of %d", i, kwargs.To))
		}
		return map[string]any{"counted": kwargs.To}, nil
	}
	waitForCancel := func(ctx context.Context, job *messages.Job, r worker.Reporter) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if err := w.Handle("upper", messages.Resources{}, upper); err != nil {
		log.Fatal(err)
	}
	if err := w.Handle("count", messages.Resources{}, count); err != nil {
		log.Fatal(err)
	}
	if err := w.Handle("wait-for-cancel", messages.Resources{}, waitForCancel); err != nil {
		log.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		log.Fatal(err)
	}

	stop := func() {
		_ = w.Stop(ctx)
		_ = coord.Stop(ctx)
		nc.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
		os.RemoveAll(dir)
	}
	return ns.ClientURL(), stop
}

// Submit a job and wait for its result.
func Example() {
	url, stop := startQueue()
	defer stop()
	ctx := context.Background()

	nc, err := nats.Connect(url)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	jq, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}

	id, err := jq.Submit(ctx, "upper", map[string]any{"text": "hello"}, client.Priority(5))
	if err != nil {
		log.Fatal(err)
	}
	job, err := jq.WaitForJob(ctx, id)
	if err != nil {
		log.Fatal(err)
	}
	result, err := job.Result.Value()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(job.Status, result)
	// Output: completed map[text:HELLO]
}

// Cancel a running job once its started event arrives.
func ExampleClient_Cancel() {
	url, stop := startQueue()
	defer stop()
	ctx := context.Background()

	nc, err := nats.Connect(url)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	jq, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}

	id, err := jq.Submit(ctx, "wait-for-cancel", nil)
	if err != nil {
		log.Fatal(err)
	}

	// DeliverAll replays the started event if it came before the watch.
	errStarted := errors.New("job started")
	filter := client.WatchFilter{JobID: id, Kinds: []messages.EventKind{messages.EventStarted}, DeliverAll: true}
	err = jq.Watch(ctx, filter, func(messages.Event) error { return errStarted })
	if !errors.Is(err, errStarted) {
		log.Fatal(err)
	}

	if _, err := jq.Cancel(ctx, id); err != nil {
		log.Fatal(err)
	}
	job, err := jq.WaitForJob(ctx, id)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(job.Status)
	// Output: cancelled
}

// Watch a job's events, progress included, until it ends.
func ExampleClient_Watch() {
	url, stop := startQueue()
	defer stop()
	ctx := context.Background()

	nc, err := nats.Connect(url)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	jq, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}

	id, err := jq.Submit(ctx, "count", map[string]any{"to": 3})
	if err != nil {
		log.Fatal(err)
	}

	// DeliverAll replays the events stored before the watch began, so
	// none is missed however fast the job runs.
	errEnded := errors.New("job ended")
	filter := client.WatchFilter{JobID: id, DeliverAll: true}
	err = jq.Watch(ctx, filter, func(event messages.Event) error {
		line := fmt.Sprintf("%s: %s %.2f %s", event.Kind, event.Job.Status, event.Job.Progress, event.Job.StatusMessage)
		fmt.Println(strings.TrimSpace(line))
		if event.Job.Status.Final() {
			return errEnded
		}
		return nil
	})
	if !errors.Is(err, errEnded) {
		log.Fatal(err)
	}
	// Output:
	// submitted: pending 0.00
	// started: running 0.00
	// progress: running 0.33 counted 1 of 3
	// progress: running 0.67 counted 2 of 3
	// progress: running 1.00 counted 3 of 3
	// completed: completed 1.00 counted 3 of 3
}
