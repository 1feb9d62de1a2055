package client

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetqueue/jetqueue/messages"
)

// finalEvents are the event kinds that end a job.
var finalEvents = []messages.EventKind{messages.EventCompleted, messages.EventFailed, messages.EventCancelled}

// WaitForJob blocks until the job ends and returns its final record. It
// does not poll: it reads the job's completed, failed and cancelled events
// from the events stream, starting with the last one stored, and requests
// the record from the coordinator once. A job that ended before the call returns
// at once.
//
// When ctx ends first, WaitForJob returns the record from that one request
// and an error wrapping ctx.Err(); the job carries on. An unknown job id
// returns an *messages.Error with CodeNotFound.
func (c *Client) WaitForJob(ctx context.Context, id string) (messages.Job, error) {
	if err := messages.ValidateJobID(id); err != nil {
		return messages.Job{}, err
	}

	// The consumer starts before the request, so an event published between
	// the reply and the first pull is not missed. The last-per-subject policy
	// also delivers a final event stored before the consumer existed.
	filters := make([]string, len(finalEvents))
	for i, kind := range finalEvents {
		filters[i] = c.subjects.EventFilter("", id, kind)
	}
	reader, err := c.readStream(ctx, c.subjects.EventsStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: filters,
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return messages.Job{}, fmt.Errorf("wait for job %s: %w", id, err)
	}
	defer reader.close(ctx)

	job, err := c.Get(ctx, id)
	if err != nil {
		return messages.Job{}, err
	}
	if job.Status.Final() {
		return job, nil
	}

	for {
		msg, err := reader.next(ctx)
		if err != nil {
			return job, fmt.Errorf("wait for job %s (status %s when the wait began): %w", id, job.Status, err)
		}

		var event messages.Event
		if err := messages.Decode(msg.Data(), &event); err != nil {
			c.logger.Warn("skipped an undecodable event", "job_id", id, "subject", msg.Subject(), "error", err)
			continue
		}
		return event.Job, nil
	}
}
