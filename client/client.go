package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/jetqueue/jetqueue/messages"
)

// DefaultTimeout is how long a request waits for the coordinator's reply
// unless WithTimeout sets another limit.
const DefaultTimeout = 5 * time.Second

var (
	// ErrNoCoordinator is returned, wrapped with the subject and the fix, when
	// no coordinator replies to a request: nothing listens on the subject, or
	// no reply came within the request timeout.
	ErrNoCoordinator = errors.New("coordinator not reachable")

	// ErrInvalidReply is returned, wrapped, when a reply does not decode as
	// the msgpack body the request expects.
	ErrInvalidReply = errors.New("invalid reply from the coordinator")
)

// Client calls the coordinator's API and reads the event and log streams of
// one queue. It is safe for concurrent use. The caller owns the NATS
// connection: the client never closes it.
type Client struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	subjects messages.Subjects
	timeout  time.Duration
	retryFor time.Duration
	logger   *slog.Logger
}

// Option configures a Client.
type Option func(*options)

type options struct {
	prefix   string
	timeout  time.Duration
	retryFor time.Duration
	logger   *slog.Logger
}

// WithPrefix sets the first token of the queue's subjects, so several
// queues can share one NATS system. Defaults to messages.DefaultPrefix ("jq").
func WithPrefix(prefix string) Option {
	return func(o *options) { o.prefix = prefix }
}

// WithTimeout sets how long each request waits for the coordinator's reply.
// It must be positive. Defaults to DefaultTimeout (5s). A context deadline
// shorter than the timeout ends the request first.
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}

// DefaultRetryFor is how long a request is retried while no coordinator
// leads, such as during a failover.
const DefaultRetryFor = 15 * time.Second

// WithRetry sets how long a request is retried when no coordinator replies
// (no responders, a timeout, or a standby's not_leader reply) before the
// error is returned. Submits carry an idempotency key, so a retry never
// queues a job twice; cancels are retried only when the first attempt
// surely did not arrive. Zero disables retries. Defaults to DefaultRetryFor.
func WithRetry(d time.Duration) Option {
	return func(o *options) { o.retryFor = d }
}

// WithLogger sets the logger that receives warnings about undecodable
// stream messages. Defaults to a logger that discards everything.
func WithLogger(logger *slog.Logger) Option {
	return func(o *options) { o.logger = logger }
}

// New returns a client that uses nc, an open connection to the NATS system
// that the coordinator serves.
func New(nc *nats.Conn, opts ...Option) (*Client, error) {
	if nc == nil {
		return nil, errors.New("client: the NATS connection is nil: pass the result of nats.Connect")
	}

	o := options{prefix: messages.DefaultPrefix, timeout: DefaultTimeout, retryFor: DefaultRetryFor}
	for _, opt := range opts {
		opt(&o)
	}
	if o.timeout <= 0 {
		return nil, fmt.Errorf("client: request timeout %s is not positive: pass a duration such as 5s to WithTimeout", o.timeout)
	}
	if o.retryFor < 0 {
		return nil, fmt.Errorf("client: retry duration %s is negative: pass 0 to disable retries", o.retryFor)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}

	subjects, err := messages.NewSubjects(o.prefix)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("client: open JetStream: %w", err)
	}

	return &Client{nc: nc, js: js, subjects: subjects, timeout: o.timeout, retryFor: o.retryFor, logger: o.logger}, nil
}

// Subjects returns the subject and stream names of the client's queue.
func (c *Client) Subjects() messages.Subjects { return c.subjects }

// SubmitRequest queues the job that req describes and returns its id. A
// zero req.V is sent as messages.ProtocolVersion. The coordinator replies
// only once the job is durable. A submit without an IdempotencyKey gets a
// random one, so the client's own retries after a timeout or a leader
// change never queue the job twice.
func (c *Client) SubmitRequest(ctx context.Context, req messages.SubmitRequest) (messages.SubmitReply, error) {
	if req.V == 0 {
		req.V = messages.ProtocolVersion
	}
	if req.IdempotencyKey == "" {
		req.IdempotencyKey = uuid.NewString()
	}

	var reply messages.SubmitReply
	if err := c.request(ctx, messages.VerbSubmit, req, &reply); err != nil {
		return messages.SubmitReply{}, err
	}
	if reply.ID == "" {
		return messages.SubmitReply{}, fmt.Errorf("%w on %s: the reply has no job id", ErrInvalidReply, c.subjects.API(messages.VerbSubmit))
	}
	return reply, nil
}

// SubmitBatch queues several jobs in one request and returns one result per
// request, in request order. The coordinator validates each job on its own,
// so a result may carry an error while the others hold ids. A zero V is
// sent as messages.ProtocolVersion.
func (c *Client) SubmitBatch(ctx context.Context, reqs []messages.SubmitRequest) ([]messages.SubmitResult, error) {
	batch := messages.SubmitBatchRequest{V: messages.ProtocolVersion, Jobs: make([]messages.SubmitRequest, len(reqs))}
	for i, req := range reqs {
		if req.V == 0 {
			req.V = messages.ProtocolVersion
		}
		if req.IdempotencyKey == "" {
			req.IdempotencyKey = uuid.NewString()
		}
		batch.Jobs[i] = req
	}

	var reply messages.SubmitBatchReply
	if err := c.request(ctx, messages.VerbSubmitBatch, batch, &reply); err != nil {
		return nil, err
	}
	if len(reply.Results) != len(reqs) {
		return nil, fmt.Errorf("%w on %s: %d results for %d jobs", ErrInvalidReply, c.subjects.API(messages.VerbSubmitBatch), len(reply.Results), len(reqs))
	}
	return reply.Results, nil
}

// Cancel cancels a job and returns its record after the request. A pending
// job comes back cancelled. A running job comes back still running with a
// cancel phase, and ends cancelled once its worker has stopped it: use
// WaitForJob to see the end. Cancelling a finished job returns an
// *messages.Error with CodeConflict.
func (c *Client) Cancel(ctx context.Context, id string) (messages.Job, error) {
	return c.jobRequest(ctx, messages.VerbCancel, id)
}

// Reorder sets the priority of a pending job and returns its record. Higher
// priorities run first. The job keeps its submission sequence, so among jobs
// of the new priority it sits where its submission puts it.
func (c *Client) Reorder(ctx context.Context, id string, priority int) (messages.Job, error) {
	if err := messages.ValidateJobID(id); err != nil {
		return messages.Job{}, err
	}
	if err := messages.ValidatePriority(priority); err != nil {
		return messages.Job{}, err
	}

	req := messages.ReorderRequest{V: messages.ProtocolVersion, ID: id, Priority: priority}
	var reply messages.JobReply
	if err := c.request(ctx, messages.VerbReorder, req, &reply); err != nil {
		return messages.Job{}, err
	}
	return reply.Job, nil
}

// Get returns the record of one job. An unknown id returns an
// *messages.Error with CodeNotFound.
func (c *Client) Get(ctx context.Context, id string) (messages.Job, error) {
	return c.jobRequest(ctx, messages.VerbGet, id)
}

// State returns the whole queue: running jobs, pending jobs in dispatch
// order, recent history, counters and workers. A zero req.V is sent as
// messages.ProtocolVersion.
func (c *Client) State(ctx context.Context, req messages.StateRequest) (messages.StateReply, error) {
	if req.V == 0 {
		req.V = messages.ProtocolVersion
	}

	var reply messages.StateReply
	if err := c.request(ctx, messages.VerbState, req, &reply); err != nil {
		return messages.StateReply{}, err
	}
	return reply, nil
}

// Workers returns the workers registered with the coordinator, sorted by
// name.
func (c *Client) Workers(ctx context.Context) ([]messages.WorkerState, error) {
	var reply messages.WorkersReply
	if err := c.request(ctx, messages.VerbWorkers, messages.WorkersRequest{V: messages.ProtocolVersion}, &reply); err != nil {
		return nil, err
	}
	return reply.Workers, nil
}

func (c *Client) jobRequest(ctx context.Context, verb, id string) (messages.Job, error) {
	if err := messages.ValidateJobID(id); err != nil {
		return messages.Job{}, err
	}

	var reply messages.JobReply
	if err := c.request(ctx, verb, messages.JobRequest{V: messages.ProtocolVersion, ID: id}, &reply); err != nil {
		return messages.Job{}, err
	}
	return reply.Job, nil
}

// request sends one API request and decodes the reply into reply. An error
// reply becomes an *messages.Error. While no coordinator replies, it
// retries for up to the client's retry duration.
func (c *Client) request(ctx context.Context, verb string, req, reply any) error {
	data, err := messages.Encode(req)
	if err != nil {
		return fmt.Errorf("encode %s request: %w", verb, err)
	}
	deadline := time.Now().Add(c.retryFor)
	backoff := 50 * time.Millisecond
	for {
		err := c.attempt(ctx, verb, data, reply)
		if err == nil || !c.retryable(verb, err) || time.Now().Add(backoff).After(deadline) {
			return err
		}
		c.logger.Debug("retrying request", slog.String("verb", verb), slog.Any("error", err))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// retryable reports whether a failed request may be sent again: no
// coordinator replied, or one that no longer leads did. A cancel that timed
// out may have
// been carried out, so only its sure failures are retried.
func (c *Client) retryable(verb string, err error) bool {
	var apiErr *messages.Error
	if errors.As(err, &apiErr) {
		return apiErr.Code == messages.CodeNotLeader || apiErr.Code == messages.CodeUnavailable
	}
	if errors.Is(err, errNoResponders) {
		return true
	}
	return errors.Is(err, errTimedOut) && verb != messages.VerbCancel
}

// Markers that requestError wraps next to ErrNoCoordinator.
var (
	errNoResponders = errors.New("no responders")
	errTimedOut     = errors.New("timed out")
)

// attempt sends one request once.
func (c *Client) attempt(ctx context.Context, verb string, data []byte, reply any) error {
	subject := c.subjects.API(verb)
	reqCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	msg, err := c.nc.RequestMsgWithContext(reqCtx, &nats.Msg{Subject: subject, Data: data})
	if err != nil {
		return c.requestError(ctx, subject, err)
	}

	if apiErr := replyError(msg); apiErr != nil {
		return apiErr
	}
	if err := messages.Decode(msg.Data, reply); err != nil {
		return fmt.Errorf("%w on %s: %v", ErrInvalidReply, subject, err)
	}
	return nil
}

// requestError explains a failed request: the caller's context ended, no
// coordinator listens, or none replied in time.
func (c *Client) requestError(ctx context.Context, subject string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("request on %s: %w", subject, ctx.Err())
	}
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%w: nothing listens on %s: start one with `jetqueue serve` or `jetqueue coordinator`, or check --nats and --prefix%w", ErrNoCoordinator, subject, quiet(errNoResponders))
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
		return fmt.Errorf("%w: no reply on %s within %s: check that `jetqueue serve` or `jetqueue coordinator` runs on the server that --nats names%w", ErrNoCoordinator, subject, c.timeout, quiet(errTimedOut))
	}
	return fmt.Errorf("request on %s: %w", subject, err)
}

// quietError wraps a marker error without adding to the message.
type quietError struct{ err error }

func (q quietError) Error() string { return "" }
func (q quietError) Unwrap() error { return q.err }

func quiet(err error) error { return quietError{err} }

// replyError returns the API error that msg carries, or nil when msg is a
// success reply. The msgpack body is preferred; when it does not decode,
// the micro error headers give the code and the message.
func replyError(msg *nats.Msg) *messages.Error {
	status := msg.Header.Get(micro.ErrorCodeHeader)
	text := msg.Header.Get(micro.ErrorHeader)
	if status == "" && text == "" {
		return nil
	}

	var body messages.Error
	if err := messages.Decode(msg.Data, &body); err == nil && body.Code != "" {
		if body.Message == "" {
			body.Message = text
		}
		return &body
	}

	if text == "" {
		text = "the coordinator returned error status " + status + " without a message"
	}
	return &messages.Error{Code: codeForStatus(status), Message: text}
}

// codeForStatus maps the number in a Nats-Service-Error-Code header back to
// an error code. It is the inverse of messages.ErrorCode.HTTPStatus where
// that is one to one; 400 becomes CodeInvalid and 409 CodeConflict.
func codeForStatus(status string) messages.ErrorCode {
	n, err := strconv.Atoi(status)
	if err != nil {
		return messages.CodeInternal
	}
	switch n {
	case 400:
		return messages.CodeInvalid
	case 404:
		return messages.CodeNotFound
	case 409:
		return messages.CodeConflict
	case 413:
		return messages.CodeTooLarge
	case 503:
		return messages.CodeUnavailable
	case 505:
		return messages.CodeUnsupported
	}
	return messages.CodeInternal
}

// Drain stops new jobs from going to a worker, whose running jobs finish;
// with drain false it undoes that. The drain is stored in the journal, so
// it outlives coordinator restarts, and applies to a worker that has not
// connected yet. It returns the worker's state.
func (c *Client) Drain(ctx context.Context, worker string, drain bool) (messages.WorkerState, error) {
	if err := messages.ValidateToken("worker name", worker); err != nil {
		return messages.WorkerState{}, err
	}
	var reply messages.DrainReply
	req := messages.DrainRequest{V: messages.ProtocolVersion, Worker: worker, Drain: drain}
	if err := c.request(ctx, messages.VerbDrain, req, &reply); err != nil {
		return messages.WorkerState{}, err
	}
	return reply.Worker, nil
}
