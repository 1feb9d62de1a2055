package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/jetqueue/jetqueue/messages"
)

// Version is the coordinator's software version, reported by the micro service.
const Version = "0.1.0"

// Coordinator owns the authoritative job queue. It serves the jq.api.*
// request-reply API, assigns jobs to workers, and records every state change
// in the JQ_EVENTS stream before it acknowledges it.
//
// All state is owned by one goroutine, the loop; NATS callbacks post
// functions to its mailbox.
type Coordinator struct {
	cfg  Config
	nc   *nats.Conn
	js   jetstream.JetStream
	subj messages.Subjects
	log  *slog.Logger

	mailbox *mailbox
	journal *journal
	service micro.Service
	subs    []*nats.Subscription
	// dispatchInbox prefixes the reply subjects of run commands.
	dispatchInbox string

	state *state

	startOnce sync.Once
	stopOnce  sync.Once
	started   bool
	stopLoop  context.CancelFunc
	loopDone  chan struct{}
}

// New returns a Coordinator that will use nc. Call Start to serve.
func New(nc *nats.Conn, cfg Config) (*Coordinator, error) {
	if nc == nil {
		return nil, errors.New("coordinator: nil NATS connection")
	}
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	subj, _ := messages.NewSubjects(cfg.Prefix)

	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncTimeout(cfg.PublishAckTimeout),
	)
	if err != nil {
		return nil, fmt.Errorf("coordinator: JetStream context: %w", err)
	}

	c := &Coordinator{
		cfg:      cfg,
		nc:       nc,
		js:       js,
		subj:     subj,
		log:      cfg.Logger.With(slog.String("coordinator", cfg.Name)),
		mailbox:  newMailbox(),
		loopDone: make(chan struct{}),
	}
	c.state = newState(c)
	return c, nil
}

// Start creates the streams, rebuilds the queue from the journal, and
// starts serving. It returns once the API answers requests.
func (c *Coordinator) Start(ctx context.Context) error {
	err := errors.New("coordinator: Start called twice")
	c.startOnce.Do(func() { err = c.start(ctx) })
	return err
}

func (c *Coordinator) start(ctx context.Context) error {
	began := time.Now()
	j, err := openJournal(ctx, c.js, c.cfg, c.subj)
	if err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	c.journal = j

	n, err := j.replay(ctx, c.state.apply)
	if err != nil {
		_ = j.close(ctx)
		return fmt.Errorf("coordinator: rebuild state: %w", err)
	}
	c.state.finishReplay(time.Now())
	c.log.Info("state rebuilt from journal",
		slog.Int("events", n),
		slog.Int("pending", c.state.queue.Len()+c.state.parkedCount()),
		slog.Int("running", len(c.state.running)),
		slog.Int("history", c.state.history.len()),
		slog.Duration("took", time.Since(began)))

	if err := c.subscribe(); err != nil {
		c.unsubscribe()
		_ = j.close(ctx)
		return fmt.Errorf("coordinator: %w", err)
	}

	loopCtx, cancel := context.WithCancel(context.Background())
	c.stopLoop = cancel
	go c.loop(loopCtx)

	if err := c.addService(); err != nil {
		c.unsubscribe()
		cancel()
		<-c.loopDone
		return fmt.Errorf("coordinator: %w", err)
	}
	c.started = true
	c.log.Info("coordinator started", slog.String("prefix", c.cfg.Prefix), slog.Duration("took", time.Since(began)))
	return nil
}

// subscribe starts the worker-facing subscriptions.
func (c *Coordinator) subscribe() error {
	c.dispatchInbox = c.nc.NewRespInbox()
	handlers := []struct {
		subject string
		fn      nats.MsgHandler
	}{
		{c.subj.Heartbeat(), c.onHeartbeat},
		{c.subj.Report(), c.onReport},
		{c.dispatchInbox + ".>", c.onDispatchReply},
	}
	for _, h := range handlers {
		sub, err := c.nc.Subscribe(h.subject, h.fn)
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", h.subject, err)
		}
		if err := sub.SetPendingLimits(-1, 256<<20); err != nil {
			return fmt.Errorf("subscribe %s: %w", h.subject, err)
		}
		c.subs = append(c.subs, sub)
	}
	return nil
}

func (c *Coordinator) unsubscribe() {
	for _, s := range c.subs {
		if err := s.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			c.log.Warn("unsubscribe failed", slog.String("subject", s.Subject), slog.Any("error", err))
		}
	}
	c.subs = nil
}

// Stop stops serving and waits for pending journal writes. Jobs keep their
// state in JetStream; running jobs keep running on their workers, and a
// coordinator started later takes them over. Stop is idempotent and safe
// before Start.
func (c *Coordinator) Stop(ctx context.Context) error {
	var err error
	c.stopOnce.Do(func() {
		if !c.started {
			return
		}
		if c.service != nil {
			if e := c.service.Stop(); e != nil {
				c.log.Warn("stop micro service", slog.Any("error", e))
			}
		}
		c.unsubscribe()
		c.stopLoop()
		select {
		case <-c.loopDone:
		case <-ctx.Done():
			err = fmt.Errorf("coordinator: stop: %w", ctx.Err())
			return
		}
		if e := c.journal.close(ctx); e != nil {
			err = fmt.Errorf("coordinator: stop: %w", e)
		}
		c.log.Info("coordinator stopped")
	})
	return err
}

// tick is the period of the loop's timer work: lost workers, dispatch
// timeouts, progress flushing and history expiry.
const tick = 100 * time.Millisecond

// loop runs every state change, one at a time.
func (c *Coordinator) loop(ctx context.Context) {
	defer close(c.loopDone)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()

	var batch []func()
	for {
		select {
		case <-ctx.Done():
			// Run what was posted before the stop so no callback is lost.
			for _, fn := range c.mailbox.take(batch) {
				fn()
			}
			return
		case <-c.mailbox.notify:
			batch = c.mailbox.take(batch)
			for i, fn := range batch {
				fn()
				batch[i] = nil
			}
		case now := <-ticker.C:
			c.state.onTick(now)
		}
		c.state.schedule()
	}
}

// do runs fn on the loop goroutine.
func (c *Coordinator) do(fn func()) { c.mailbox.post(fn) }
