package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetqueue/jetqueue/messages"
)

// WatchFilter selects the events that Watch delivers. The zero value
// selects every event published after Watch starts.
type WatchFilter struct {
	// Plugin limits the events to jobs of one plugin. Empty means every
	// plugin.
	Plugin string
	// JobID limits the events to one job. Empty means every job.
	JobID string
	// Kinds limits the events to these kinds. Empty means every kind.
	Kinds []messages.EventKind
	// DeliverAll replays every event that the stream still stores before the
	// new ones. Defaults to false: only events published after Watch starts.
	DeliverAll bool
	// Since replays the events stored at or after this time before the new
	// ones. Zero means unset. Since and DeliverAll exclude each other.
	Since time.Time
}

// Watch calls fn with each event that filter selects, in stream order, until
// ctx ends or fn returns an error. It returns fn's error unchanged, or
// ctx.Err() when ctx ends. The filter is applied by the server, so events
// of other jobs do not cross the network. fn runs on the caller's
// goroutine: a slow fn delays the events after it and loses none.
//
// Each event arrives once per Watch call. After a reconnect the nats.go
// ordered consumer resumes after the last delivered event, so events stored
// while the connection was down arrive late but are not lost.
func (c *Client) Watch(ctx context.Context, filter WatchFilter, fn func(messages.Event) error) error {
	cfg, err := c.watchConfig(filter)
	if err != nil {
		return err
	}

	reader, err := c.readStream(ctx, c.subjects.EventsStream(), cfg)
	if err != nil {
		return fmt.Errorf("watch events: %w", err)
	}
	defer reader.close(ctx)

	for {
		msg, err := reader.next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("watch events: %w", err)
		}

		var event messages.Event
		if err := messages.Decode(msg.Data(), &event); err != nil {
			c.logger.Warn("skipped an undecodable event", "subject", msg.Subject(), "error", err)
			continue
		}
		if err := fn(event); err != nil {
			return err
		}
	}
}

// watchConfig turns a filter into the ordered consumer's configuration:
// one subject filter per event kind, and the deliver policy.
func (c *Client) watchConfig(filter WatchFilter) (jetstream.OrderedConsumerConfig, error) {
	var cfg jetstream.OrderedConsumerConfig
	if filter.Plugin != "" {
		if err := messages.ValidateToken("plugin name", filter.Plugin); err != nil {
			return cfg, err
		}
	}
	if filter.JobID != "" {
		if err := messages.ValidateJobID(filter.JobID); err != nil {
			return cfg, err
		}
	}
	for _, kind := range filter.Kinds {
		if err := messages.ValidateToken("event kind", string(kind)); err != nil {
			return cfg, err
		}
		// The server rejects overlapping filter subjects, so a kind given
		// twice is kept once.
		subject := c.subjects.EventFilter(filter.Plugin, filter.JobID, kind)
		if !slices.Contains(cfg.FilterSubjects, subject) {
			cfg.FilterSubjects = append(cfg.FilterSubjects, subject)
		}
	}
	if len(cfg.FilterSubjects) == 0 {
		cfg.FilterSubjects = []string{c.subjects.EventFilter(filter.Plugin, filter.JobID, "")}
	}

	switch {
	case filter.DeliverAll && !filter.Since.IsZero():
		return cfg, errors.New("watch filter sets both DeliverAll and Since: set one of them")
	case filter.DeliverAll:
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	case !filter.Since.IsZero():
		since := filter.Since
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	default:
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	return cfg, nil
}
