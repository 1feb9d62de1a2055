package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// consumerDeleteTimeout bounds the request that deletes an ordered consumer
// once its reader is done.
const consumerDeleteTimeout = 2 * time.Second

// streamReader reads one stream through an ordered consumer: an ephemeral,
// unacknowledged consumer that the nats.go library recreates in place when
// it misses a message or the server restarts, so messages arrive once each
// and in stream order.
type streamReader struct {
	client   *Client
	stream   string
	consumer jetstream.Consumer
	messages jetstream.MessagesContext
}

// readStream creates an ordered consumer on stream and starts pulling
// messages. Call close on the result when done.
func (c *Client) readStream(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig) (*streamReader, error) {
	createCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	consumer, err := c.js.OrderedConsumer(createCtx, stream, cfg)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return nil, fmt.Errorf("create a consumer on stream %s: %w", stream, ctx.Err())
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("stream %s not found: the coordinator creates it when it starts, so run `jetqueue serve` or `jetqueue coordinator`, or check --prefix: %w", stream, err)
	default:
		return nil, fmt.Errorf("create a consumer on stream %s: %w", stream, err)
	}

	r := &streamReader{client: c, stream: stream, consumer: consumer}
	r.messages, err = consumer.Messages()
	if err != nil {
		r.deleteConsumer(ctx)
		return nil, fmt.Errorf("read stream %s: %w", stream, err)
	}
	return r, nil
}

// next returns the next message. It returns ctx's error, unwrapped, when ctx
// ends first.
func (r *streamReader) next(ctx context.Context) (jetstream.Msg, error) {
	msg, err := r.messages.Next(jetstream.NextContext(ctx))
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("read stream %s: %w", r.stream, err)
	}
	return msg, nil
}

// close stops pulling and deletes the consumer, so it does not wait on the
// server for its inactivity threshold. ctx may have ended already.
func (r *streamReader) close(ctx context.Context) {
	r.messages.Stop()
	r.deleteConsumer(ctx)
}

func (r *streamReader) deleteConsumer(ctx context.Context) {
	info := r.consumer.CachedInfo()
	if info == nil || r.client.nc.IsClosed() {
		return
	}

	deleteCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), consumerDeleteTimeout)
	defer cancel()
	err := r.client.js.DeleteConsumer(deleteCtx, r.stream, info.Name)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		r.client.logger.Debug("delete ordered consumer failed", "stream", r.stream, "consumer", info.Name, "error", err)
	}
}
