package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetqueue/jetqueue/messages"
)

// sampleTimeout bounds the wait for one job's start or end.
const sampleTimeout = 10 * time.Second

// ended is a lifecycle event seen by the client, with the time it arrived.
type ended struct {
	id   string
	kind messages.EventKind
	at   time.Time
}

// watchEnds subscribes the client connection to the final events of
// plugin's jobs, and returns the function that unsubscribes. It is a plain
// subscription on the subjects that the JQ_EVENTS stream stores, so an
// event arrives as the coordinator publishes it.
func (c *cluster) watchEnds(plugin string) (<-chan ended, func(), error) {
	subj := c.client.Subjects()
	out := make(chan ended, 1024)
	sub, err := c.clientConn.Subscribe(subj.EventFilter(plugin, "", ""), func(msg *nats.Msg) {
		at := time.Now()
		_, id, kind, err := subj.ParseEventSubject(msg.Subject)
		if err != nil {
			return
		}
		switch kind {
		case messages.EventCompleted, messages.EventFailed, messages.EventCancelled:
			out <- ended{id: id, kind: kind, at: at}
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("subscribe to the events of plugin %s: %w", plugin, err)
	}
	if err := c.clientConn.Flush(); err != nil {
		return nil, nil, fmt.Errorf("flush the subscription: %w", err)
	}
	return out, func() { _ = sub.Unsubscribe() }, nil
}

// waitStart returns the start of job id that a handler reported.
func (c *cluster) waitStart(ctx context.Context, id string) (started, error) {
	timeout := time.After(sampleTimeout)
	for {
		select {
		case s := <-c.handlers.starts:
			if s.id == id {
				return s, nil
			}
		case <-timeout:
			return started{}, fmt.Errorf("job %s did not start within %s", id, sampleTimeout)
		case <-ctx.Done():
			return started{}, ctx.Err()
		}
	}
}

// waitEnd returns the final event of job id, which must be of kind want.
func waitEnd(ctx context.Context, ends <-chan ended, id string, want messages.EventKind) (ended, error) {
	timeout := time.After(sampleTimeout)
	for {
		select {
		case e := <-ends:
			if e.id != id {
				continue
			}
			if e.kind != want {
				return e, fmt.Errorf("job %s ended %s, expected %s", id, e.kind, want)
			}
			return e, nil
		case <-timeout:
			return ended{}, fmt.Errorf("job %s did not end within %s", id, sampleTimeout)
		case <-ctx.Done():
			return ended{}, ctx.Err()
		}
	}
}

// measureStart submits cfg.StartSamples probe jobs one at a time, each
// after the previous one completed, and returns the times from the submit
// call to the handler's start.
func measureStart(ctx context.Context, c *cluster) ([]time.Duration, error) {
	ends, unsubscribe, err := c.watchEnds(pluginProbe)
	if err != nil {
		return nil, err
	}
	defer unsubscribe()

	samples := make([]time.Duration, 0, c.cfg.StartSamples)
	for range c.cfg.StartSamples {
		began := time.Now()
		reply, err := c.client.SubmitRequest(ctx, messages.SubmitRequest{PluginName: pluginProbe, Kwargs: benchKwargs})
		if err != nil {
			return nil, fmt.Errorf("submit a %s job: %w", pluginProbe, err)
		}
		s, err := c.waitStart(ctx, reply.ID)
		if err != nil {
			return nil, err
		}
		samples = append(samples, s.at.Sub(began))

		if _, err := waitEnd(ctx, ends, reply.ID, messages.EventCompleted); err != nil {
			return nil, err
		}
	}
	return samples, nil
}

// measureCancel starts cfg.CancelSamples block jobs one at a time, cancels
// each once its handler runs, and returns the times from the cancel
// request to the client receiving the job's cancelled event.
func measureCancel(ctx context.Context, c *cluster) ([]time.Duration, error) {
	ends, unsubscribe, err := c.watchEnds(pluginBlock)
	if err != nil {
		return nil, err
	}
	defer unsubscribe()

	samples := make([]time.Duration, 0, c.cfg.CancelSamples)
	for range c.cfg.CancelSamples {
		reply, err := c.client.SubmitRequest(ctx, messages.SubmitRequest{PluginName: pluginBlock, Kwargs: benchKwargs})
		if err != nil {
			return nil, fmt.Errorf("submit a %s job: %w", pluginBlock, err)
		}
		if _, err := c.waitStart(ctx, reply.ID); err != nil {
			return nil, err
		}

		began := time.Now()
		if _, err := c.client.Cancel(ctx, reply.ID); err != nil {
			return nil, fmt.Errorf("cancel job %s: %w", reply.ID, err)
		}
		e, err := waitEnd(ctx, ends, reply.ID, messages.EventCancelled)
		if err != nil {
			return nil, err
		}
		samples = append(samples, e.at.Sub(began))
	}
	return samples, nil
}

// percentile returns the nearest-rank percentile p (0 to 100) of samples.
func percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}
