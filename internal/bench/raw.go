package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of the raw measurement's stream and consumer. No other part of
// jetqueue uses them.
const (
	rawStream   = "BENCH_RAW"
	rawSubject  = "bench.raw"
	rawConsumer = "bench-raw"
)

// measureRaw publishes cfg.RawMessages messages of cfg.RawMessageBytes
// asynchronously to a file-backed work-queue stream, with at most
// cfg.RawWindow awaiting acknowledgement, while a pull consumer on another
// connection consumes and acknowledges them. It returns messages per
// second from the first publish until the stream is empty again, which
// the work-queue retention makes it once every message was acknowledged.
func measureRaw(ctx context.Context, c *cluster) (float64, error) {
	cfg := c.cfg
	pubConn, err := c.connect("bench raw publisher")
	if err != nil {
		return 0, err
	}
	subConn, err := c.connect("bench raw consumer")
	if err != nil {
		return 0, err
	}

	var pubErrors atomic.Int64
	pubJS, err := jetstream.New(pubConn,
		jetstream.WithPublishAsyncMaxPending(cfg.RawWindow),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { pubErrors.Add(1) }),
	)
	if err != nil {
		return 0, err
	}
	subJS, err := jetstream.New(subConn)
	if err != nil {
		return 0, err
	}

	stream, err := pubJS.CreateStream(ctx, jetstream.StreamConfig{
		Name:      rawStream,
		Subjects:  []string{rawSubject},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.WorkQueuePolicy,
	})
	if err != nil {
		return 0, fmt.Errorf("create stream %s: %w", rawStream, err)
	}
	defer func() { _ = pubJS.DeleteStream(context.WithoutCancel(ctx), rawStream) }()

	cons, err := subJS.CreateConsumer(ctx, rawStream, jetstream.ConsumerConfig{
		Durable:   rawConsumer,
		AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		return 0, fmt.Errorf("create consumer %s: %w", rawConsumer, err)
	}

	var consumed atomic.Int64
	allConsumed := make(chan struct{})
	total := int64(cfg.RawMessages)
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		_ = msg.Ack()
		if consumed.Add(1) == total {
			close(allConsumed)
		}
	}, jetstream.PullMaxMessages(cfg.RawWindow))
	if err != nil {
		return 0, fmt.Errorf("consume %s: %w", rawStream, err)
	}
	defer cc.Stop()

	payload := make([]byte, cfg.RawMessageBytes)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}

	began := time.Now()
	for range cfg.RawMessages {
		if _, err := pubJS.PublishAsync(rawSubject, payload, jetstream.WithStallWait(setupTimeout)); err != nil {
			return 0, fmt.Errorf("publish to %s: %w", rawSubject, err)
		}
	}
	select {
	case <-pubJS.PublishAsyncComplete():
	case <-time.After(setupTimeout):
		return 0, fmt.Errorf("publishes to %s not acknowledged within %s", rawSubject, setupTimeout)
	}
	if n := pubErrors.Load(); n > 0 {
		return 0, fmt.Errorf("%d of %d publishes to %s failed", n, cfg.RawMessages, rawSubject)
	}

	select {
	case <-allConsumed:
	case <-time.After(setupTimeout):
		return 0, fmt.Errorf("consumer got %d of %d messages within %s", consumed.Load(), total, setupTimeout)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if err := subConn.Flush(); err != nil {
		return 0, fmt.Errorf("flush the acknowledgements: %w", err)
	}
	if err := waitEmpty(ctx, stream); err != nil {
		return 0, err
	}
	return float64(cfg.RawMessages) / time.Since(began).Seconds(), nil
}

// waitEmpty polls the stream until it holds no message.
func waitEmpty(ctx context.Context, stream jetstream.Stream) error {
	deadline := time.Now().Add(setupTimeout)
	for {
		info, err := stream.Info(ctx)
		if err != nil {
			return fmt.Errorf("read stream %s info: %w", rawStream, err)
		}
		if info.State.Msgs == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stream %s is not empty %s after the last acknowledgement was sent: some acknowledgements were lost", rawStream, setupTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}
