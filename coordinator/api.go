package coordinator

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/jetqueue/jetqueue/messages"
)

// addService registers the jq.api.* endpoints as a NATS micro service.
func (c *Coordinator) addService() error {
	svc, err := micro.AddService(c.nc, micro.Config{
		Name:        "jetqueue",
		Version:     Version,
		Description: "jetqueue coordinator API",
		Metadata:    map[string]string{"coordinator": c.cfg.Name, "prefix": c.cfg.Prefix},
	})
	if err != nil {
		return fmt.Errorf("add micro service: %w", err)
	}
	group := svc.AddGroup(c.subj.APIGroup())
	endpoints := []struct {
		verb    string
		handler micro.HandlerFunc
	}{
		{messages.VerbSubmit, c.handleSubmit},
		{messages.VerbSubmitBatch, c.handleSubmitBatch},
		{messages.VerbCancel, c.handleCancel},
		{messages.VerbReorder, c.handleReorder},
		{messages.VerbGet, c.handleGet},
		{messages.VerbState, c.handleState},
		{messages.VerbLogs, c.handleLogs},
		{messages.VerbWorkers, c.handleWorkers},
		{messages.VerbDrain, c.handleDrain},
	}
	for _, ep := range endpoints {
		if err := group.AddEndpoint(ep.verb, ep.handler); err != nil {
			_ = svc.Stop()
			return fmt.Errorf("add endpoint %s: %w", c.subj.API(ep.verb), err)
		}
	}
	c.service = svc
	return nil
}

// respond sends v as the msgpack reply of req.
func (c *Coordinator) respond(req micro.Request, v any) {
	data, err := messages.Encode(v)
	if err != nil {
		c.respondError(req, fmt.Errorf("encode %T reply: %w", v, err))
		return
	}
	c.reply(req, &nats.Msg{Data: data})
}

// respondError sends err as a micro error reply: the code and message in
// the headers, and a msgpack messages.Error as the body.
func (c *Coordinator) respondError(req micro.Request, err error) {
	apiErr := asAPIError(err)
	if apiErr.Code == messages.CodeInternal {
		c.log.Error("request failed", slog.String("subject", req.Subject()), slog.Any("error", err))
	}
	msg := &nats.Msg{
		Header: nats.Header{
			micro.ErrorCodeHeader: []string{strconv.Itoa(apiErr.Code.HTTPStatus())},
			micro.ErrorHeader:     []string{apiErr.Message},
		},
		Data: messages.MustEncode(apiErr),
	}
	c.reply(req, msg)
}

// reply publishes msg to the request's reply subject. Most replies are
// sent after the micro handler returned, from the loop or the journal's
// acknowledgement goroutine, so they bypass micro.Request, whose reply
// methods record state that the service reads without a lock.
func (c *Coordinator) reply(req micro.Request, msg *nats.Msg) {
	msg.Subject = req.Reply()
	if msg.Subject == "" {
		return
	}
	if err := c.nc.PublishMsg(msg); err != nil {
		c.log.Warn("send reply failed", slog.String("subject", req.Subject()), slog.Any("error", err))
	}
}

// asAPIError returns err as a *messages.Error, wrapping errors that are not
// one as internal errors.
func asAPIError(err error) *messages.Error {
	var apiErr *messages.Error
	if errors.As(err, &apiErr) {
		return apiErr
	}
	return &messages.Error{Code: messages.CodeInternal, Message: err.Error()}
}

// decode decodes a request body and replies with an error to a bad one.
func (c *Coordinator) decode(req micro.Request, v any) bool {
	if err := messages.Decode(req.Data(), v); err != nil {
		c.respondError(req, err)
		return false
	}
	return true
}

// checkVersion rejects requests from a newer protocol.
func checkVersion(v int) error {
	if v > messages.ProtocolVersion {
		return messages.Errorf(messages.CodeUnsupported, "request protocol version %d is newer than this coordinator's %d: upgrade the coordinator", v, messages.ProtocolVersion)
	}
	return nil
}

func (c *Coordinator) handleSubmit(req micro.Request) {
	var r messages.SubmitRequest
	if !c.decode(req, &r) {
		return
	}
	if err := messages.ValidateSubmit(&r, c.cfg.MaxPayloadBytes); err != nil {
		c.respondError(req, err)
		return
	}
	c.withState(req, func(s *state) {
		s.submit(&r, func(reply messages.SubmitReply, err error) {
			if err != nil {
				c.respondError(req, err)
				return
			}
			c.respond(req, &reply)
		})
	})
}

func (c *Coordinator) handleSubmitBatch(req micro.Request) {
	var r messages.SubmitBatchRequest
	if !c.decode(req, &r) {
		return
	}
	if err := checkVersion(r.V); err != nil {
		c.respondError(req, err)
		return
	}
	if len(r.Jobs) == 0 {
		c.respondError(req, messages.Errorf(messages.CodeInvalid, "submit_batch has no jobs: send 1 to %d", maxBatch))
		return
	}
	if len(r.Jobs) > maxBatch {
		c.respondError(req, messages.Errorf(messages.CodeTooLarge, "submit_batch has %d jobs: the maximum is %d; split the batch", len(r.Jobs), maxBatch))
		return
	}
	c.withState(req, func(s *state) { s.submitBatch(req, r.Jobs) })
}

// maxBatch is the most jobs one submit_batch request may carry.
const maxBatch = 10_000

func (c *Coordinator) handleGet(req micro.Request) {
	var r messages.JobRequest
	if !c.decode(req, &r) {
		return
	}
	if err := validateJobRequest(r.V, r.ID); err != nil {
		c.respondError(req, err)
		return
	}
	c.withState(req, func(s *state) {
		e, err := s.lookup(r.ID)
		if err != nil {
			c.respondError(req, err)
			return
		}
		c.respond(req, &messages.JobReply{Job: s.view(e)})
	})
}

func (c *Coordinator) handleCancel(req micro.Request) {
	var r messages.JobRequest
	if !c.decode(req, &r) {
		return
	}
	if err := validateJobRequest(r.V, r.ID); err != nil {
		c.respondError(req, err)
		return
	}
	c.withState(req, func(s *state) { s.cancel(req, r.ID) })
}

func (c *Coordinator) handleReorder(req micro.Request) {
	var r messages.ReorderRequest
	if !c.decode(req, &r) {
		return
	}
	if err := validateJobRequest(r.V, r.ID); err != nil {
		c.respondError(req, err)
		return
	}
	if err := messages.ValidatePriority(r.Priority); err != nil {
		c.respondError(req, err)
		return
	}
	c.withState(req, func(s *state) { s.reorder(req, r.ID, r.Priority) })
}

func (c *Coordinator) handleState(req micro.Request) {
	var r messages.StateRequest
	if len(req.Data()) > 0 && !c.decode(req, &r) {
		return
	}
	if err := checkVersion(r.V); err != nil {
		c.respondError(req, err)
		return
	}
	c.withState(req, func(s *state) {
		reply := s.snapshot(r.PendingLimit, r.HistoryLimit)
		c.respond(req, &reply)
	})
}

func (c *Coordinator) handleWorkers(req micro.Request) {
	var r messages.WorkersRequest
	if len(req.Data()) > 0 && !c.decode(req, &r) {
		return
	}
	if err := checkVersion(r.V); err != nil {
		c.respondError(req, err)
		return
	}
	c.withState(req, func(s *state) {
		c.respond(req, &messages.WorkersReply{Workers: s.workerViews()})
	})
}

// withState runs fn on the loop goroutine with the leader's state, or
// replies that this coordinator is not the leader (any more).
func (c *Coordinator) withState(req micro.Request, fn func(s *state)) {
	c.do(func() {
		if c.state == nil || !c.leaseValid() {
			c.respondError(req, messages.Errorf(messages.CodeNotLeader, "coordinator %s is not the leader; retry", c.cfg.Name))
			return
		}
		fn(c.state)
	})
}

func validateJobRequest(v int, id string) error {
	if err := checkVersion(v); err != nil {
		return err
	}
	return messages.ValidateJobID(id)
}
