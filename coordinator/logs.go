package coordinator

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/jetqueue/jetqueue/messages"
)

// Limits of one logs reply.
const (
	defaultLogLines = 100
	// maxLogReplyBytes keeps a reply under the default NATS max_payload of
	// 1 MiB; older lines are dropped first.
	maxLogReplyBytes = 900 << 10
	logReadTimeout   = 10 * time.Second
)

func (c *Coordinator) handleLogs(req micro.Request) {
	var r messages.LogsRequest
	if !c.decode(req, &r) {
		return
	}
	if err := validateJobRequest(r.V, r.ID); err != nil {
		c.respondError(req, err)
		return
	}
	if r.Lines < -1 {
		c.respondError(req, messages.Errorf(messages.CodeInvalid, "lines %d is out of range: use a positive count, 0 for the default of %d, or -1 for all", r.Lines, defaultLogLines))
		return
	}
	c.withState(req, func(s *state) {
		if _, err := s.lookup(r.ID); err != nil {
			c.respondError(req, err)
			return
		}
		// Reading the stream takes round trips; keep it off the loop.
		go func() {
			reply, err := c.readLogs(r.ID, r.Lines)
			if err != nil {
				c.respondError(req, err)
				return
			}
			c.respond(req, &reply)
		}()
	})
}

// readLogs returns the newest lines of a job's log, oldest first.
func (c *Coordinator) readLogs(id string, lines int) (messages.LogsReply, error) {
	if lines == 0 {
		lines = defaultLogLines
	}
	ctx, cancel := context.WithTimeout(context.Background(), logReadTimeout)
	defer cancel()

	subject := c.subj.Log(id)
	stream, err := c.js.Stream(ctx, c.subj.LogsStream())
	if err != nil {
		return messages.LogsReply{}, fmt.Errorf("open stream %s: %w", c.subj.LogsStream(), err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return messages.LogsReply{}, fmt.Errorf("read stream %s: %w", c.subj.LogsStream(), err)
	}
	total := info.State.Subjects[subject]
	reply := messages.LogsReply{Lines: []messages.LogLine{}}
	if total == 0 {
		return reply, nil
	}

	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return messages.LogsReply{}, fmt.Errorf("read log of job %s: %w", id, err)
	}
	keep := int(total)
	if lines > 0 && lines < keep {
		keep = lines
	}
	ring := make([]messages.LogLine, 0, keep)
	var seen uint64
	for seen < total {
		batch, err := cons.Fetch(int(min(total-seen, 1000)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return messages.LogsReply{}, fmt.Errorf("read log of job %s: %w", id, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			seen++
			var line messages.LogLine
			if err := messages.Decode(msg.Data(), &line); err != nil {
				line = messages.LogLine{JobID: id, Stream: messages.LogWorker, Level: "error", Text: "undecodable log message: " + err.Error()}
			}
			if len(ring) == keep {
				copy(ring, ring[1:])
				ring = ring[:keep-1]
				reply.Truncated = true
			}
			ring = append(ring, line)
		}
		if batch.Error() != nil || got == 0 {
			break
		}
	}

	size := 0
	start := len(ring)
	for start > 0 && size+len(ring[start-1].Text)+64 <= maxLogReplyBytes {
		start--
		size += len(ring[start].Text) + 64
	}
	if start > 0 {
		reply.Truncated = true
	}
	reply.Lines = ring[start:]
	return reply, nil
}
