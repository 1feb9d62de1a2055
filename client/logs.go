package client

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetqueue/jetqueue/messages"
)

// logDrainWait is how long FollowLogs waits for another line once the job
// has ended. Workers send a job's last lines before its final report, but
// the stream may store them a moment after the final event.
const logDrainWait = 250 * time.Millisecond

// Logs returns up to lines of the newest lines of a job's log, oldest
// first. lines 0 takes the coordinator's default of 100; -1 returns every
// line kept.
func (c *Client) Logs(ctx context.Context, id string, lines int) (messages.LogsReply, error) {
	if err := messages.ValidateJobID(id); err != nil {
		return messages.LogsReply{}, err
	}
	if lines < -1 {
		return messages.LogsReply{}, messages.Errorf(messages.CodeInvalid, "line count %d is invalid: use a positive number, 0 for the default or -1 for all", lines)
	}

	var reply messages.LogsReply
	req := messages.LogsRequest{V: messages.ProtocolVersion, ID: id, Lines: lines}
	if err := c.request(ctx, messages.VerbLogs, req, &reply); err != nil {
		return messages.LogsReply{}, err
	}
	return reply, nil
}

// FollowLogs calls fn with each line of a job's log, oldest first, as the
// lines arrive in the log stream. It starts with the last fromLast lines
// stored: 0 starts with the next new line and -1 with the first line kept.
// fn runs on the caller's goroutine.
//
// FollowLogs returns nil once the job has ended and its log is drained,
// meaning no new line arrived within 250ms of the end. It returns ctx.Err()
// when ctx ends first, and the error of WaitForJob when the job cannot be
// watched, such as an *messages.Error with CodeNotFound.
func (c *Client) FollowLogs(ctx context.Context, id string, fromLast int, fn func(messages.LogLine)) error {
	if err := messages.ValidateJobID(id); err != nil {
		return err
	}
	if fromLast < -1 {
		return messages.Errorf(messages.CodeInvalid, "line count %d is invalid: use a positive number, 0 for new lines only or -1 for all", fromLast)
	}

	policy := jetstream.DeliverAllPolicy
	if fromLast == 0 {
		policy = jetstream.DeliverNewPolicy
	}
	reader, err := c.readStream(ctx, c.subjects.LogsStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{c.subjects.Log(id)},
		DeliverPolicy:  policy,
	})
	if err != nil {
		return fmt.Errorf("follow log of job %s: %w", id, err)
	}
	defer reader.close(ctx)

	// jobEnded is cancelled once WaitForJob returns, which interrupts the
	// wait for the next line so the loop can start draining.
	jobEnded, markEnded := context.WithCancel(ctx)
	waitDone := make(chan struct{})
	var waitErr error
	go func() {
		defer close(waitDone)
		defer markEnded()
		_, waitErr = c.WaitForJob(jobEnded, id)
	}()
	defer func() {
		markEnded()
		<-waitDone
	}()

	skip := fromLast > 0
	ended := false
	for {
		nextCtx, cancelNext := jobEnded, context.CancelFunc(func() {})
		if ended {
			nextCtx, cancelNext = context.WithTimeout(ctx, logDrainWait)
		}
		msg, err := reader.next(nextCtx)
		cancelNext()

		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case !ended && jobEnded.Err() != nil:
			<-waitDone
			if waitErr != nil {
				return fmt.Errorf("follow log of job %s: %w", id, waitErr)
			}
			ended = true
			continue
		case ended && nextCtx.Err() != nil:
			return nil
		default:
			return fmt.Errorf("follow log of job %s: %w", id, err)
		}

		// While skipping, a line is passed over when fromLast or more lines
		// follow it in the stream. The first line kept ends the skipping, so
		// lines that arrive during the catch-up are all delivered.
		if skip {
			meta, err := msg.Metadata()
			if err == nil && meta.NumPending >= uint64(fromLast) {
				continue
			}
			skip = false
		}

		var line messages.LogLine
		if err := messages.Decode(msg.Data(), &line); err != nil {
			c.logger.Warn("skipped an undecodable log line", "job_id", id, "error", err)
			continue
		}
		fn(line)
	}
}
