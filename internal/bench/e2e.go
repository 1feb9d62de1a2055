package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/messages"
)

// e2eResult is the outcome of the end-to-end measurement.
type e2eResult struct {
	jobsPerS    float64
	msgsPerJob  float64
	elapsed     time.Duration
	completions int
}

// errAllSeen ends the event watch once every job has ended.
var errAllSeen = errors.New("every job ended")

// measureE2E submits cfg.E2EJobs no-op jobs in batches from cfg.Submitters
// goroutines while the workers run them, spread in turn over the
// cfg.NoopHandlers no-op plugins of each worker, and watches the JQ_EVENTS stream
// through the client until every job completed. It returns jobs per second
// from the first submit to the last completed event, and the messages that
// the queue's connections sent and received over that time, per job.
func measureE2E(ctx context.Context, c *cluster) (e2eResult, error) {
	total := c.cfg.E2EJobs
	before := sumStats(c.queueConns())

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var (
		lastEnd  time.Time
		seen     int
		watchErr = make(chan error, 1)
	)
	// The watch reads the events stored from now on, so it misses none of
	// the jobs below however late its consumer starts.
	filter := client.WatchFilter{
		Kinds: []messages.EventKind{messages.EventCompleted, messages.EventFailed, messages.EventCancelled},
		Since: time.Now(),
	}
	go func() {
		watchErr <- c.client.Watch(watchCtx, filter, func(ev messages.Event) error {
			if !strings.HasPrefix(ev.Job.PluginName, pluginNoop) {
				return nil
			}
			if ev.Kind != messages.EventCompleted {
				return fmt.Errorf("job %s ended %s: %s", ev.Job.ID, ev.Kind, ev.Job.Error)
			}
			seen++
			if seen == total {
				lastEnd = time.Now()
				return errAllSeen
			}
			return nil
		})
	}()

	began := time.Now()
	if err := submitBatches(ctx, c.client, c.noopPlugins(), total, c.cfg.Submitters, c.cfg.BatchSize); err != nil {
		return e2eResult{}, err
	}

	timeout := time.Duration(total)*time.Millisecond + setupTimeout
	select {
	case err := <-watchErr:
		if !errors.Is(err, errAllSeen) {
			return e2eResult{}, fmt.Errorf("watch the completions: %w", err)
		}
	case <-time.After(timeout):
		stopWatch()
		<-watchErr
		return e2eResult{}, fmt.Errorf("%d of %d jobs completed within %s", seen, total, timeout)
	}

	elapsed := lastEnd.Sub(began)
	msgs := sumStats(c.queueConns()) - before
	return e2eResult{
		jobsPerS:    float64(total) / elapsed.Seconds(),
		msgsPerJob:  float64(msgs) / float64(total),
		elapsed:     elapsed,
		completions: seen,
	}, nil
}

// sumStats returns the messages that conns sent and received so far.
func sumStats(conns []*nats.Conn) uint64 {
	var n uint64
	for _, nc := range conns {
		s := nc.Stats()
		n += s.InMsgs + s.OutMsgs
	}
	return n
}

// submitBatches submits total jobs with client.SubmitBatch from submitters
// goroutines, batchSize jobs per request. Job i goes to plugin
// plugins[i%len(plugins)].
func submitBatches(ctx context.Context, cl *client.Client, plugins []string, total, submitters, batchSize int) error {
	type span struct{ first, n int }
	spans := make(chan span)
	go func() {
		defer close(spans)
		for first := 0; first < total; first += batchSize {
			select {
			case spans <- span{first, min(total-first, batchSize)}:
			case <-ctx.Done():
				return
			}
		}
	}()

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range submitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sp := range spans {
				reqs := make([]messages.SubmitRequest, sp.n)
				for i := range reqs {
					reqs[i] = messages.SubmitRequest{PluginName: plugins[(sp.first+i)%len(plugins)], Kwargs: benchKwargs}
				}
				if err := submitBatch(ctx, cl, reqs); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	for range spans {
		// Drain what a failed submitter left, so the producer ends.
	}
	return firstErr
}

// submitBatch submits one batch and fails on any job's error.
func submitBatch(ctx context.Context, cl *client.Client, reqs []messages.SubmitRequest) error {
	results, err := cl.SubmitBatch(ctx, reqs)
	if err != nil {
		return fmt.Errorf("submit a batch of %d jobs: %w", len(reqs), err)
	}
	for _, r := range results {
		if r.Error != nil {
			return fmt.Errorf("submit a batch of %d jobs: a job was rejected: %w", len(reqs), r.Error)
		}
	}
	return nil
}
