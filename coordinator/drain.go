package coordinator

import (
	"github.com/nats-io/nats.go/micro"

	"github.com/jetqueue/jetqueue/messages"
)

func (c *Coordinator) handleDrain(req micro.Request) {
	var r messages.DrainRequest
	if !c.decode(req, &r) {
		return
	}
	if err := checkVersion(r.V); err != nil {
		c.respondError(req, err)
		return
	}
	if err := messages.ValidateToken("worker name", r.Worker); err != nil {
		c.respondError(req, err)
		return
	}
	c.withState(req, func(s *state) { s.drain(req, r.Worker, r.Drain) })
}

// drain records a drain or undrain in the journal and replies with the
// worker's state once it is durable. A drained worker gets no new jobs;
// its running jobs finish.
func (s *state) drain(req micro.Request, worker string, drain bool) {
	if s.broken {
		s.c.respondError(req, errBroken)
		return
	}
	s.setDrained(worker, drain)
	kind := messages.EventUndrain
	if drain {
		kind = messages.EventDrain
	}
	w := s.workerFor(worker, s.now())
	view := w.view()
	ev := messages.Event{V: messages.ProtocolVersion, Kind: kind, Time: s.now(), Term: s.c.term, Leader: s.c.cfg.Name, Worker: worker}
	s.c.journal.appendTo(s.c.subj.DrainControl(), &ev, func(_ uint64, err error) {
		if err != nil {
			s.later(func() { s.journalFailed(err) })
			s.c.respondError(req, messages.Errorf(messages.CodeUnavailable, "storing the drain failed: %v; retry", err))
			return
		}
		s.c.respond(req, &messages.DrainReply{Worker: view})
	})
	s.c.log.Info("worker drain changed", "worker", worker, "drained", drain)
}

// setDrained marks a worker drained or not, whether it is connected or not.
func (s *state) setDrained(worker string, drain bool) {
	if drain {
		s.drained[worker] = true
	} else {
		delete(s.drained, worker)
	}
	if w := s.workers[worker]; w != nil {
		w.drained = drain
	}
	s.dirty = true
}
