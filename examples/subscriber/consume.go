package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/messages"
)

const (
	// ackWait is how long the server waits for the acknowledgement of a
	// delivered event before it delivers the event again.
	ackWait = 30 * time.Second
	// retryDelay is how long the server holds back an event whose
	// follow-up submit failed for a reason that may pass, such as no
	// coordinator running, before it delivers the event again.
	retryDelay = 5 * time.Second
)

// subscriber handles the completed events of one plugin.
type subscriber struct {
	cfg config
	jq  *client.Client
	out io.Writer
	log *slog.Logger
}

// summary is the JSON line printed for one completed job.
type summary struct {
	JobID   string `json:"job_id"`
	Plugin  string `json:"plugin"`
	Attempt int    `json:"attempt"`
	Worker  string `json:"worker"`
	// Seconds is the run time of the last attempt, from its start to its end.
	Seconds float64          `json:"seconds"`
	Result  messages.Payload `json:"result"`
	// Delivery is 1 on the first delivery of the event, more on a repeat.
	Delivery      uint64 `json:"delivery"`
	FollowUp      string `json:"follow_up,omitempty"`
	FollowUpError string `json:"follow_up_error,omitempty"`
}

// consumerConfig returns the durable consumer of the plugin's completed
// events. Acknowledgements are explicit, so an event counts as handled only
// once the subscriber acknowledges it.
func (s *subscriber) consumerConfig() jetstream.ConsumerConfig {
	policy := jetstream.DeliverAllPolicy
	if s.cfg.deliver == "new" {
		policy = jetstream.DeliverNewPolicy
	}
	return jetstream.ConsumerConfig{
		Durable:       s.cfg.durable,
		Description:   "jetqueue subscriber: completed jobs of plugin " + s.cfg.plugin,
		FilterSubject: s.jq.Subjects().EventFilter(s.cfg.plugin, "", messages.EventCompleted),
		DeliverPolicy: policy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
	}
}

// consume creates the durable consumer, or finds it where an earlier run
// left it, and handles its events one at a time until ctx ends.
func (s *subscriber) consume(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("open JetStream: %w", err)
	}

	stream := s.jq.Subjects().EventsStream()
	cfg := s.consumerConfig()
	consumer, err := js.CreateOrUpdateConsumer(ctx, stream, cfg)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("stream %s not found: the coordinator creates it when it starts, so run `jetqueue serve` or `jetqueue coordinator` first, or check --prefix: %w", stream, err)
	case err != nil:
		return fmt.Errorf("create durable consumer %s on stream %s: %w: pass another --durable to start afresh", cfg.Durable, stream, err)
	}

	info := consumer.CachedInfo()
	s.log.Info("subscriber started", "plugin", s.cfg.plugin, "consumer", cfg.Durable,
		"filter", cfg.FilterSubject, "pending", info.NumPending, "follow_up", s.cfg.followUp)

	it, err := consumer.Messages()
	if err != nil {
		return fmt.Errorf("read durable consumer %s: %w", cfg.Durable, err)
	}
	defer it.Stop()

	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				s.log.Info("subscriber stopping", "consumer", cfg.Durable)
				return nil
			}
			return fmt.Errorf("read durable consumer %s: %w", cfg.Durable, err)
		}
		s.handle(ctx, msg)
	}
}

// handle prints one completed job, submits its follow-up, and acknowledges
// the event. When the follow-up cannot be submitted for now, the event is
// not acknowledged but returned to the server, which delivers it again
// after retryDelay.
func (s *subscriber) handle(ctx context.Context, msg jetstream.Msg) {
	var event messages.Event
	if err := messages.Decode(msg.Data(), &event); err != nil {
		s.log.Error("dropping an event that does not decode", "subject", msg.Subject(), "error", err)
		if err := msg.Term(); err != nil {
			s.log.Warn("terminate event failed", "subject", msg.Subject(), "error", err)
		}
		return
	}
	job := &event.Job

	line := summary{JobID: job.ID, Plugin: job.PluginName, Attempt: job.Attempt, Worker: job.Worker, Result: job.Result}
	if job.StartedAt != nil && job.CompletedAt != nil {
		line.Seconds = job.CompletedAt.Sub(*job.StartedAt).Seconds()
	}
	if meta, err := msg.Metadata(); err == nil {
		line.Delivery = meta.NumDelivered
	}

	if s.cfg.followUp != "" {
		id, err := s.submitFollowUp(ctx, job)
		switch {
		case err == nil:
			line.FollowUp = id
		case ctx.Err() != nil || !permanent(err):
			s.log.Warn("follow-up not submitted; the event will be delivered again", "job_id", job.ID, "plugin", s.cfg.followUp, "error", err)
			if err := msg.NakWithDelay(retryDelay); err != nil {
				s.log.Warn("return event to the server failed", "job_id", job.ID, "error", err)
			}
			return
		default:
			s.log.Error("follow-up not submitted", "job_id", job.ID, "plugin", s.cfg.followUp, "error", err)
			line.FollowUpError = err.Error()
		}
	}

	s.print(line)

	// DoubleAck waits until the server has the acknowledgement, so an
	// event is delivered again only when the process dies before this line.
	if err := msg.DoubleAck(ctx); err != nil {
		s.log.Warn("acknowledge event failed; it will be delivered again", "job_id", job.ID, "error", err)
	}
}

// print writes line as one JSON line. A result that has no JSON form, such
// as a NaN, is printed as null.
func (s *subscriber) print(line summary) {
	data, err := json.Marshal(line)
	if err != nil {
		s.log.Warn("result has no JSON form; printing null", "job_id", line.JobID, "error", err)
		line.Result = nil
		data, _ = json.Marshal(line)
	}
	fmt.Fprintf(s.out, "%s\n", data)
}

// submitFollowUp queues the follow-up job of job. The idempotency key makes
// a repeat for the same job return the first follow-up's id.
func (s *subscriber) submitFollowUp(ctx context.Context, job *messages.Job) (string, error) {
	kwargs, err := s.followUpKwargs(job)
	if err != nil {
		return "", err
	}
	return s.jq.Submit(ctx, s.cfg.followUp, kwargs,
		client.IdempotencyKey(s.cfg.durable+"-"+job.ID),
		client.Labels(map[string]string{"follows": job.ID}))
}

// followUpKwargs builds the follow-up's kwargs from the fields of job's
// result that --map names. A result that lacks a field returns a
// *messages.Error, since trying again cannot help.
func (s *subscriber) followUpKwargs(job *messages.Job) (map[string]any, error) {
	if len(s.cfg.fieldMap) == 0 {
		return nil, nil
	}

	value, err := job.Result.Value()
	if err != nil {
		return nil, messages.Errorf(messages.CodeInvalid, "decode result of job %s: %v", job.ID, err)
	}
	result, ok := value.(map[string]any)
	if !ok {
		return nil, messages.Errorf(messages.CodeInvalid, "result of job %s is %T, not a map: --map reads fields of a map", job.ID, value)
	}

	kwargs := make(map[string]any, len(s.cfg.fieldMap))
	for key, field := range s.cfg.fieldMap {
		v, ok := result[field]
		if !ok {
			return nil, messages.Errorf(messages.CodeInvalid, "result of job %s has no field %q for --map %s=%s", job.ID, field, key, field)
		}
		kwargs[key] = v
	}
	return kwargs, nil
}

// permanent reports whether err is an API error that a retry cannot fix,
// such as an invalid argument. A missing coordinator, a standby and an
// internal error may pass.
func permanent(err error) bool {
	var apiErr *messages.Error
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.Code {
	case messages.CodeUnavailable, messages.CodeNotLeader, messages.CodeInternal:
		return false
	}
	return true
}
