package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/jetqueue/jetqueue/messages"
)

// Version is the coordinator's software version, reported by the micro service.
const Version = "0.1.0"

// Coordinator owns the authoritative job queue while it holds the leader
// lease, and waits as a hot standby while another coordinator does. The
// leader serves the jq.api.* request-reply API, assigns jobs to workers,
// and records every state change in the JQ_EVENTS stream before it
// acknowledges it.
//
// All state is owned by one goroutine, the loop; NATS callbacks post
// functions to its mailbox. Leadership is won and renewed by a second
// goroutine, the elector, which has the loop take over or step down.
type Coordinator struct {
	cfg  Config
	nc   *nats.Conn
	js   jetstream.JetStream
	subj messages.Subjects
	log  *slog.Logger

	mailbox   *mailbox
	lease     *lease
	snapshots jetstream.ObjectStore
	leading   atomic.Bool
	// renewedAt is when the lease was last written, in Unix nanoseconds.
	renewedAt atomic.Int64
	// currentTerm mirrors term for goroutines other than the loop.
	currentTerm atomic.Uint64

	// Owned by the loop goroutine; nil or empty while standing by.
	state   *state
	journal *journal
	service micro.Service
	subs    []*nats.Subscription
	// dispatchInbox prefixes the reply subjects of run commands.
	dispatchInbox string
	// term is the leadership term; each new leader takes the last term
	// found in the journal plus one.
	term uint64

	startOnce sync.Once
	stopOnce  sync.Once
	started   bool
	stopLoop  context.CancelFunc
	loopDone  chan struct{}
	stopElect context.CancelFunc
	electDone chan struct{}
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

	return &Coordinator{
		cfg:       cfg,
		nc:        nc,
		js:        js,
		subj:      subj,
		log:       cfg.Logger.With(slog.String("coordinator", cfg.Name)),
		mailbox:   newMailbox(),
		loopDone:  make(chan struct{}),
		electDone: make(chan struct{}),
	}, nil
}

// Start opens the leader lease and campaigns for it once. When it wins, it
// rebuilds the queue from the journal and returns once the API serves;
// otherwise it returns as a standby that keeps campaigning in the
// background and takes over when the leader's lease expires.
func (c *Coordinator) Start(ctx context.Context) error {
	err := errors.New("coordinator: Start called twice")
	c.startOnce.Do(func() { err = c.start(ctx) })
	return err
}

func (c *Coordinator) start(ctx context.Context) error {
	l, err := openLease(ctx, c.js, c.cfg, c.subj.LeaderBucket())
	if err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	c.lease = l
	obs, err := openSnapshots(ctx, c.js, c.cfg, c.subj.SnapshotBucket())
	if err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	c.snapshots = obs

	loopCtx, stopLoop := context.WithCancel(context.Background())
	c.stopLoop = stopLoop
	go c.loop(loopCtx)

	electCtx, stopElect := context.WithCancel(context.Background())
	c.stopElect = stopElect
	if err := c.campaign(ctx); err != nil {
		stopElect()
		stopLoop()
		<-c.loopDone
		return fmt.Errorf("coordinator: %w", err)
	}
	go c.elect(electCtx)
	c.started = true
	if !c.leading.Load() {
		c.log.Info("coordinator started as a standby", slog.String("leader", c.lease.holderName(ctx)))
	}
	return nil
}

// IsLeader reports whether this coordinator holds the leader lease and serves.
func (c *Coordinator) IsLeader() bool { return c.leading.Load() }

// campaign tries once to take the lease and, having it, the queue. An
// error means the attempt could not be made; losing to a leader is no error.
func (c *Coordinator) campaign(ctx context.Context) error {
	won, err := c.lease.acquire(ctx)
	if err != nil || !won {
		return err
	}
	began := time.Now()
	c.renewedAt.Store(c.lease.renewed.UnixNano())
	if err := c.onLoop(func() error { return c.lead(ctx) }); err != nil {
		c.log.Error("taking over as leader failed; releasing the lease", slog.Any("error", err))
		if e := c.lease.release(context.Background()); e != nil {
			c.log.Warn("release leader lease failed", slog.Any("error", e))
		}
		return err
	}
	c.leading.Store(true)
	c.log.Info("coordinator is the leader", slog.Uint64("term", c.term), slog.Duration("took", time.Since(began)))
	return nil
}

// elect keeps the lease renewed while leading, and campaigns while not.
func (c *Coordinator) elect(ctx context.Context) {
	defer close(c.electDone)
	renewEvery := c.cfg.LeaderLease / 3
	retryEvery := c.cfg.LeaderLease / 12
	for {
		wait := retryEvery
		if c.leading.Load() {
			wait = renewEvery
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}

		if !c.leading.Load() {
			if err := c.campaign(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("campaign for leadership failed", slog.Any("error", err))
			}
			continue
		}

		rctx, cancel := context.WithTimeout(ctx, renewEvery)
		err := c.lease.renew(rctx)
		cancel()
		switch {
		case err == nil:
			c.renewedAt.Store(c.lease.renewed.UnixNano())
		case errors.Is(err, errLeaseLost), time.Since(c.lease.renewed) > c.cfg.LeaderLease-renewEvery:
			c.log.Error("lost the leader lease; stepping down", slog.Any("error", err))
			c.stepDownNow()
		default:
			c.log.Warn("renew leader lease failed; retrying", slog.Any("error", err))
		}
	}
}

// leaseValid reports whether this coordinator leads and renewed its lease
// recently enough that no standby can have taken over. A leader that was
// paused (SIGSTOP, a long GC pause, a frozen VM) finds an old renewal when it
// resumes, and does nothing until the elector confirms or drops the lease.
func (c *Coordinator) leaseValid() bool {
	if !c.leading.Load() {
		return false
	}
	renewed := time.Unix(0, c.renewedAt.Load())
	return time.Since(renewed) < c.cfg.LeaderLease*2/3
}

// stepDownNow stops serving as leader.
func (c *Coordinator) stepDownNow() {
	c.leading.Store(false)
	if err := c.onLoop(func() error { c.stepDown(); return nil }); err != nil {
		c.log.Warn("step down", slog.Any("error", err))
	}
}

// onLoop runs fn on the loop goroutine and returns its error.
func (c *Coordinator) onLoop(fn func() error) error {
	result := make(chan error, 1)
	c.do(func() { result <- fn() })
	select {
	case err := <-result:
		return err
	case <-c.loopDone:
		return errors.New("coordinator stopped")
	}
}

// lead rebuilds the queue from the journal, fences off the previous
// leader, and starts serving. It runs on the loop goroutine.
func (c *Coordinator) lead(ctx context.Context) error {
	began := time.Now()
	j, err := openJournal(ctx, c.js, c.cfg, c.subj)
	if err != nil {
		return err
	}
	st := newState(c)
	snap, err := loadSnapshot(ctx, c.snapshots)
	if err != nil {
		_ = j.close(ctx)
		return err
	}
	from := uint64(1)
	if snap != nil {
		st.loadSnapshot(snap)
		from = snap.Seq + 1
	}
	n, err := j.replay(ctx, from, st.apply)
	if err != nil {
		_ = j.close(ctx)
		return fmt.Errorf("rebuild state: %w", err)
	}
	st.finishReplay(time.Now())
	c.term = st.lastTerm + 1
	c.currentTerm.Store(c.term)
	if err := j.fence(ctx, c.term, c.cfg.Name); err != nil {
		_ = j.close(ctx)
		return err
	}
	c.journal = j
	c.state = st
	c.log.Info("state rebuilt from journal",
		slog.Bool("snapshot", snap != nil),
		slog.Int("events", n),
		slog.Int("pending", st.queue.Len()+st.parkedCount()),
		slog.Int("running", len(st.running)),
		slog.Int("history", st.history.len()),
		slog.Duration("took", time.Since(began)))

	if err := c.subscribe(); err != nil {
		c.stepDown()
		return err
	}
	if err := c.addService(); err != nil {
		c.stepDown()
		return err
	}
	return nil
}

// stepDown stops serving and drops the state. It runs on the loop goroutine.
func (c *Coordinator) stepDown() {
	if c.service != nil {
		if err := c.service.Stop(); err != nil {
			c.log.Warn("stop micro service", slog.Any("error", err))
		}
		c.service = nil
	}
	c.unsubscribe()
	if c.journal != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := c.journal.close(ctx); err != nil {
			c.log.Warn("close journal", slog.Any("error", err))
		}
		cancel()
		c.journal = nil
	}
	c.state = nil
}

// subscribe starts the worker-facing subscriptions.
func (c *Coordinator) subscribe() error {
	c.dispatchInbox = c.subj.DispatchAcks(uuid.NewString())
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

// Stop stops serving, waits for pending journal writes and releases the
// lease, so a standby takes over at once. Jobs keep their state in
// JetStream; running jobs keep running on their workers, and the next
// leader takes them over. Stop is idempotent and safe before Start.
func (c *Coordinator) Stop(ctx context.Context) error {
	var err error
	c.stopOnce.Do(func() {
		if !c.started {
			return
		}
		c.stopElect()
		select {
		case <-c.electDone:
		case <-ctx.Done():
			err = fmt.Errorf("coordinator: stop: %w", ctx.Err())
			return
		}
		wasLeader := c.leading.Swap(false)
		if e := c.onLoop(func() error { c.stepDown(); return nil }); e != nil {
			err = fmt.Errorf("coordinator: stop: %w", e)
		}
		if wasLeader {
			if e := c.lease.release(ctx); e != nil {
				c.log.Warn("release leader lease failed", slog.Any("error", e))
			}
		}
		c.stopLoop()
		<-c.loopDone
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
			return
		case <-c.mailbox.notify:
			batch = c.mailbox.take(batch)
			for i, fn := range batch {
				fn()
				batch[i] = nil
			}
		case now := <-ticker.C:
			if c.state != nil && c.leaseValid() {
				c.state.onTick(now)
			}
		}
		if c.state != nil && c.leaseValid() {
			c.state.schedule()
		}
	}
}

// do runs fn on the loop goroutine.
func (c *Coordinator) do(fn func()) { c.mailbox.post(fn) }

// doState runs fn on the loop goroutine if this coordinator leads.
func (c *Coordinator) doState(fn func(s *state)) {
	c.do(func() {
		if c.state != nil && c.leaseValid() {
			fn(c.state)
		}
	})
}
