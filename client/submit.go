package client

import (
	"context"
	"fmt"
	"maps"

	"github.com/jetqueue/jetqueue/messages"
)

// SubmitOption sets a field of the job that Submit queues.
type SubmitOption func(*submitSettings)

type submitSettings struct {
	req  messages.SubmitRequest
	args []any
}

// Priority sets the job's priority: higher runs first, equal priorities run
// in submission order. It must lie within int32. Defaults to 0.
func Priority(priority int) SubmitOption {
	return func(s *submitSettings) { s.req.Priority = priority }
}

// MaxAttempts caps how often the job is started once a start went
// unacknowledged by its worker (lost workers count separately, toward the
// coordinator's MaxWorkerLosses),
// from 1 to messages.MaxAttemptsLimit. Defaults to 0, which takes the
// coordinator's default.
func MaxAttempts(n int) SubmitOption {
	return func(s *submitSettings) { s.req.MaxAttempts = n }
}

// Requirements overrides the resources that the plugin's manifest declares.
// Nil fields keep the manifest's values. Defaults to the manifest's
// resources.
func Requirements(r messages.Requirements) SubmitOption {
	return func(s *submitSettings) { s.req.Requirements = &r }
}

// IdempotencyKey makes a retried submit safe: a submit whose key matches an
// earlier one returns that job's id instead of queuing a new job. Defaults
// to no key.
func IdempotencyKey(key string) SubmitOption {
	return func(s *submitSettings) { s.req.IdempotencyKey = key }
}

// Labels adds labels to the job. Several Labels options merge, and a later
// value replaces an earlier one of the same key.
func Labels(labels map[string]string) SubmitOption {
	return func(s *submitSettings) {
		if s.req.Labels == nil {
			s.req.Labels = make(map[string]string, len(labels))
		}
		maps.Copy(s.req.Labels, labels)
	}
}

// Args sets the job's positional arguments, encoded as a msgpack array.
// Defaults to none.
func Args(args ...any) SubmitOption {
	return func(s *submitSettings) { s.args = args }
}

// Submit queues a job of plugin with kwargs as its keyword arguments (nil
// for none) and returns the job's id. See SubmitRequest for the delivery
// guarantee.
func (c *Client) Submit(ctx context.Context, plugin string, kwargs map[string]any, opts ...SubmitOption) (string, error) {
	s := submitSettings{req: messages.SubmitRequest{V: messages.ProtocolVersion, PluginName: plugin}}
	for _, opt := range opts {
		opt(&s)
	}

	if kwargs != nil {
		payload, err := messages.NewPayload(kwargs)
		if err != nil {
			return "", fmt.Errorf("submit %s: kwargs: %w", plugin, err)
		}
		s.req.Kwargs = payload
	}
	if s.args != nil {
		payload, err := messages.NewPayload(s.args)
		if err != nil {
			return "", fmt.Errorf("submit %s: args: %w", plugin, err)
		}
		s.req.Args = payload
	}

	reply, err := c.SubmitRequest(ctx, s.req)
	if err != nil {
		return "", err
	}
	return reply.ID, nil
}
