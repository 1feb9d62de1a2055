package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetqueue/jetqueue/messages"
)

// journal writes lifecycle events to the JQ_EVENTS stream, which is both
// the public event feed and the log the coordinator rebuilds its state from.
//
// Writes are pipelined: append publishes asynchronously and returns at once,
// and a goroutine calls each write's callback, in write order, once
// JetStream has acknowledged it. Every write expects the stream's last
// sequence to be the one before it, so if anything else wrote to the
// stream, or one write failed, every later write fails too: the stream
// never holds a gap or a reordering that the coordinator did not see.
type journal struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	subj   messages.Subjects
	log    *slog.Logger

	// lastSeq is the stream sequence of the newest write, acknowledged or
	// not. Only the loop goroutine touches it.
	lastSeq uint64

	acks chan pendingWrite
	done chan struct{}
	// pending counts writes whose callbacks have not run yet.
	pending atomic.Int64
	// acked is the newest acknowledged sequence; ackedMu and ackedCh wake
	// waitAcked.
	acked   atomic.Uint64
	ackedMu sync.Mutex
	ackedCh chan struct{}
}

type pendingWrite struct {
	future jetstream.PubAckFuture
	err    error
	then   func(seq uint64, err error)
}

// ackQueueLength bounds the writes whose acknowledgements are awaited.
const ackQueueLength = 1 << 16

// openJournal creates or updates the event and log streams.
func openJournal(ctx context.Context, js jetstream.JetStream, cfg Config, subj messages.Subjects) (*journal, error) {
	events := jetstream.StreamConfig{
		Name:        subj.EventsStream(),
		Description: "jetqueue lifecycle events; the coordinator's journal",
		Subjects:    []string{subj.Events(), subj.Control()},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		// The leader purges events that a snapshot covers and that are
		// older than EventRetention; see snapshot.go.
	}
	stream, err := js.CreateOrUpdateStream(ctx, events)
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", events.Name, err)
	}

	logs := jetstream.StreamConfig{
		Name:              subj.LogsStream(),
		Description:       "jetqueue job log lines, one message per line",
		Subjects:          []string{subj.Logs()},
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: cfg.LogLinesPerJob,
		MaxBytes:          cfg.LogMaxBytes,
		MaxAge:            cfg.LogMaxAge,
	}
	if _, err := js.CreateOrUpdateStream(ctx, logs); err != nil {
		return nil, fmt.Errorf("create stream %s: %w", logs.Name, err)
	}

	j := &journal{
		js:     js,
		stream: stream,
		subj:   subj,
		log:    cfg.Logger,
		acks:   make(chan pendingWrite, ackQueueLength),
		done:   make(chan struct{}),
	}
	go j.collect()
	return j, nil
}

// replay calls fn for every event in the stream from sequence from on,
// oldest first, and leaves lastSeq at the stream's last sequence. Events that do not decode are
// logged and skipped.
func (j *journal) replay(ctx context.Context, from uint64, fn func(seq uint64, ev *messages.Event)) (int, error) {
	info, err := j.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("read stream %s info: %w", j.subj.EventsStream(), err)
	}
	last := info.State.LastSeq
	j.lastSeq = last
	j.acked.Store(last)
	if info.State.Msgs == 0 || last < max(from, 1) {
		return 0, nil
	}
	if info.State.FirstSeq > max(from, 1) {
		j.log.Warn("the journal starts after the snapshot; events in between are gone",
			slog.Uint64("first_seq", info.State.FirstSeq), slog.Uint64("from", from))
	}

	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if from > 1 {
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from}
	}
	cons, err := j.stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return 0, fmt.Errorf("replay stream %s: %w", j.subj.EventsStream(), err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return 0, fmt.Errorf("replay stream %s: %w", j.subj.EventsStream(), err)
	}
	defer it.Stop()

	count := 0
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return count, fmt.Errorf("replay stream %s after %d events: %w", j.subj.EventsStream(), count, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return count, fmt.Errorf("replay stream %s: %w", j.subj.EventsStream(), err)
		}
		var ev messages.Event
		if err := messages.Decode(msg.Data(), &ev); err != nil {
			j.log.Error("skipping an event that does not decode", slog.Uint64("seq", meta.Sequence.Stream), slog.String("subject", msg.Subject()), slog.Any("error", err))
		} else {
			fn(meta.Sequence.Stream, &ev)
			count++
		}
		if meta.Sequence.Stream >= last {
			return count, nil
		}
	}
}

// fence writes a leader event for a new term. Its write expects the last
// sequence this coordinator replayed, so it fails if the previous leader
// wrote after the replay; once it is stored, every later write of the
// previous leader fails its own sequence check.
func (j *journal) fence(ctx context.Context, term uint64, leader string) error {
	ev := messages.Event{V: messages.ProtocolVersion, Kind: messages.EventLeader, Time: time.Now(), Term: term, Leader: leader}
	msg := nats.NewMsg(j.subj.LeaderFence())
	msg.Data = messages.MustEncode(&ev)
	ack, err := j.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequence(j.lastSeq))
	if err != nil {
		return fmt.Errorf("write leader event for term %d: %w", term, err)
	}
	j.lastSeq = ack.Sequence
	j.markAcked(ack.Sequence)
	return nil
}

// append writes ev and calls then, from the acknowledgement goroutine, once
// JetStream has stored it or the write failed. append must be called from
// the loop goroutine only.
func (j *journal) append(ev *messages.Event, then func(seq uint64, err error)) {
	j.appendTo(j.subj.Event(ev.Job.PluginName, ev.Job.ID, ev.Kind), ev, then)
}

// appendTo is append with an explicit subject, for control events.
func (j *journal) appendTo(subject string, ev *messages.Event, then func(seq uint64, err error)) {
	j.pending.Add(1)
	data, err := messages.Encode(ev)
	if err != nil {
		j.acks <- pendingWrite{err: fmt.Errorf("encode %s event of job %s: %w", ev.Kind, ev.Job.ID, err), then: then}
		return
	}
	msg := nats.NewMsg(subject)
	msg.Data = data

	future, err := j.js.PublishMsgAsync(msg, jetstream.WithExpectLastSequence(j.lastSeq), jetstream.WithStallWait(5*time.Second))
	if err != nil {
		j.acks <- pendingWrite{err: fmt.Errorf("write %s event of job %s: %w", ev.Kind, ev.Job.ID, err), then: then}
		return
	}
	j.lastSeq++
	j.acks <- pendingWrite{future: future, then: then}
}

// collect waits for acknowledgements in write order and runs the callbacks.
func (j *journal) collect() {
	defer close(j.done)
	for w := range j.acks {
		switch {
		case w.err != nil:
			w.then(0, w.err)
		default:
			select {
			case ack := <-w.future.Ok():
				j.markAcked(ack.Sequence)
				w.then(ack.Sequence, nil)
			case err := <-w.future.Err():
				w.then(0, fmt.Errorf("write to stream: %w", err))
			}
		}
		j.pending.Add(-1)
	}
}

func (j *journal) markAcked(seq uint64) {
	if seq <= j.acked.Load() {
		return
	}
	j.acked.Store(seq)
	j.ackedMu.Lock()
	if j.ackedCh != nil {
		close(j.ackedCh)
		j.ackedCh = nil
	}
	j.ackedMu.Unlock()
}

// waitAcked blocks until JetStream acknowledged every write up to seq.
func (j *journal) waitAcked(ctx context.Context, seq uint64) error {
	for {
		j.ackedMu.Lock()
		if j.acked.Load() >= seq {
			j.ackedMu.Unlock()
			return nil
		}
		if j.ackedCh == nil {
			j.ackedCh = make(chan struct{})
		}
		ch := j.ackedCh
		j.ackedMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for journal sequence %d: %w", seq, ctx.Err())
		}
	}
}

// inflight returns how many writes await their callbacks.
func (j *journal) inflight() int { return int(j.pending.Load()) }

// close stops the acknowledgement goroutine after the pending callbacks
// ran, or when ctx ends. It must be called from the loop goroutine, after
// the last append.
func (j *journal) close(ctx context.Context) error {
	close(j.acks)
	select {
	case <-j.done:
		return nil
	case <-ctx.Done():
		return errors.New("journal: gave up waiting for JetStream acknowledgements: " + ctx.Err().Error())
	}
}
