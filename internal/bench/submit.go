package bench

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/coordinator"
	"github.com/jetqueue/jetqueue/messages"
)

// submitPrefix is the subject prefix of the submit measurement's queue.
const submitPrefix = "jqsub"

// submitResult holds the two submit figures.
type submitResult struct {
	requestJobsPerS float64
	batchJobsPerS   float64
}

// measureSubmit measures how fast a coordinator acknowledges submits: first
// cfg.SubmitJobs jobs sent by cfg.Submitters goroutines with
// client.SubmitRequest, then as many with client.SubmitBatch. The
// coordinator runs on its own prefix with no worker, so the jobs stay
// pending and the figure is the intake alone. Its streams are deleted
// afterwards.
func measureSubmit(ctx context.Context, c *cluster) (submitResult, error) {
	q, err := startSideQueue(ctx, c, submitPrefix)
	if err != nil {
		return submitResult{}, err
	}
	defer q.close(ctx)

	var res submitResult
	began := time.Now()
	if err := submitRequests(ctx, q.client, pluginNone, c.cfg.SubmitJobs, c.cfg.Submitters); err != nil {
		return submitResult{}, err
	}
	res.requestJobsPerS = float64(c.cfg.SubmitJobs) / time.Since(began).Seconds()

	began = time.Now()
	if err := submitBatches(ctx, q.client, []string{pluginNone}, c.cfg.SubmitJobs, c.cfg.Submitters, c.cfg.BatchSize); err != nil {
		return submitResult{}, err
	}
	res.batchJobsPerS = float64(c.cfg.SubmitJobs) / time.Since(began).Seconds()
	return res, nil
}

// submitRequests submits total jobs of plugin from submitters goroutines,
// one client.SubmitRequest at a time each.
func submitRequests(ctx context.Context, cl *client.Client, plugin string, total, submitters int) error {
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range submitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(total) {
				_, err := cl.SubmitRequest(ctx, messages.SubmitRequest{PluginName: plugin, Kwargs: benchKwargs})
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("submit a %s job: %w", plugin, err)
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// sideQueue is a coordinator on its own prefix, without workers, with a
// client on its own connection.
type sideQueue struct {
	prefix string
	coord  *coordinator.Coordinator
	client *client.Client
	js     jetstream.JetStream
	logger *slog.Logger
}

// startSideQueue starts a coordinator on prefix in the cluster's server.
func startSideQueue(ctx context.Context, c *cluster, prefix string) (*sideQueue, error) {
	coordConn, err := c.connect("bench coordinator " + prefix)
	if err != nil {
		return nil, err
	}
	coord, err := startCoordinator(ctx, coordConn, prefix, c.cfg.Logger)
	if err != nil {
		return nil, err
	}
	clientConn, err := c.connect("bench client " + prefix)
	if err != nil {
		_ = stopCoordinator(coord)
		return nil, err
	}
	cl, err := client.New(clientConn, client.WithPrefix(prefix), client.WithTimeout(setupTimeout))
	if err != nil {
		_ = stopCoordinator(coord)
		return nil, err
	}
	js, err := jetstream.New(clientConn)
	if err != nil {
		_ = stopCoordinator(coord)
		return nil, err
	}
	return &sideQueue{prefix: prefix, coord: coord, client: cl, js: js, logger: c.cfg.Logger}, nil
}

// close stops the coordinator and deletes the queue's streams, so the
// server frees their memory before the next measurement.
func (q *sideQueue) close(ctx context.Context) {
	if q.coord != nil {
		if err := stopCoordinator(q.coord); err != nil {
			q.logger.Warn("stopping a benchmark coordinator failed", slog.String("prefix", q.prefix), slog.Any("error", err))
		}
	}
	ctx = context.WithoutCancel(ctx)
	subj := q.client.Subjects()
	for _, stream := range []string{subj.EventsStream(), subj.LogsStream()} {
		if err := q.js.DeleteStream(ctx, stream); err != nil {
			q.logger.Warn("deleting a benchmark stream failed", slog.String("stream", stream), slog.Any("error", err))
		}
	}
}
