package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/coordinator"
	"github.com/jetqueue/jetqueue/internal/embedded"
	"github.com/jetqueue/jetqueue/messages"
	"github.com/jetqueue/jetqueue/worker"
)

// startQueue starts what `jetqueue serve` runs, in this process: a
// nats-server on a free loopback port, a coordinator and a worker with two
// in-process plugins. "upper" returns its "text" kwarg in upper case;
// "wait-for-cancel" runs until it is cancelled. It returns the server's URL
// and a function that stops everything.
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

	coord, err := coordinator.New(nc, coordinator.Config{Name: "example", Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	if err := coord.Start(ctx); err != nil {
		log.Fatal(err)
	}

	w, err := worker.New(nc, worker.Config{Name: "example-worker", MaxJobs: 2, Logger: quiet})
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
	waitForCancel := func(ctx context.Context, job *messages.Job, r worker.Reporter) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if err := w.Handle("upper", messages.Resources{}, upper); err != nil {
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
