// Package clienttest runs a scripted stand-in for the coordinator's API on
// a real embedded nats-server, for tests of code that uses package client
// while no coordinator runs. The API verbs are served by a NATS micro
// service whose replies each test scripts, and the JQ_EVENTS and JQ_LOGS
// streams are real JetStream streams that tests publish into.
package clienttest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/jetqueue/jetqueue/internal/embedded"
	"github.com/jetqueue/jetqueue/messages"
)

// ErrNoReply makes the server send no reply to a request, so the client
// runs into its request timeout.
var ErrNoReply = errors.New("clienttest: no reply")

// Handler returns the reply to one API request, given its msgpack body. A
// nil error sends reply encoded as msgpack, or as is when it is a RawReply.
// A *messages.Error is sent as an API error reply: micro error headers plus
// the error as the msgpack body. ErrNoReply sends nothing. Any other error
// is sent as an API error with code internal.
type Handler func(body []byte) (reply any, err error)

// RawReply is a reply sent exactly as given, for tests of malformed replies.
type RawReply struct {
	Header nats.Header
	Data   []byte
}

// Server is an embedded nats-server with the event and log streams of one
// queue and a scripted API service.
type Server struct {
	// NATS is the embedded server. It listens on a free loopback port.
	NATS *server.Server
	// Conn is the connection the service replies and publishes on.
	Conn *nats.Conn
	// JetStream is the JetStream context of Conn.
	JetStream jetstream.JetStream
	// Subjects names the queue's subjects and streams.
	Subjects messages.Subjects

	mu       sync.Mutex
	handlers map[string]Handler
	requests map[string]int
}

// Start starts a server for the queue with the given subject prefix ("" for
// the default) and stops it when the test ends. Every verb of
// messages.Verbs is served. A verb without a Handler gets an internal error
// reply naming the verb.
func Start(t testing.TB, prefix string) *Server {
	t.Helper()

	subjects, err := messages.NewSubjects(prefix)
	if err != nil {
		t.Fatalf("clienttest: %v", err)
	}
	ns, err := embedded.Start(embedded.Options{Listen: "127.0.0.1:-1", DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("clienttest: %v", err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatalf("clienttest: connect to %s: %v", ns.ClientURL(), err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("clienttest: %v", err)
	}

	s := &Server{NATS: ns, Conn: nc, JetStream: js, Subjects: subjects, handlers: map[string]Handler{}, requests: map[string]int{}}
	s.createStreams(t)
	s.startService(t)
	return s
}

// URL returns the nats:// URL that clients connect to.
func (s *Server) URL() string { return s.NATS.ClientURL() }

// Connect opens a new connection to the server, closed when the test ends.
func (s *Server) Connect(t testing.TB) *nats.Conn {
	t.Helper()

	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatalf("clienttest: connect to %s: %v", s.URL(), err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Handle sets the handler of an API verb, replacing any earlier one.
func (s *Server) Handle(verb string, h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[verb] = h
}

// Requests returns how many requests of verb the server has received.
func (s *Server) Requests(verb string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[verb]
}

// PublishEvent stores an event of kind about job in the events stream, on
// the subject of job's plugin and id, and returns once the stream has it.
func (s *Server) PublishEvent(ctx context.Context, kind messages.EventKind, job messages.Job) error {
	event := messages.Event{V: messages.ProtocolVersion, Kind: kind, Time: time.Now().UTC(), Job: job}
	subject := s.Subjects.Event(job.PluginName, job.ID, kind)
	if _, err := s.JetStream.Publish(ctx, subject, messages.MustEncode(event)); err != nil {
		return fmt.Errorf("clienttest: publish %s: %w", subject, err)
	}
	return nil
}

// PublishLog stores a log line in the logs stream and returns once the
// stream has it.
func (s *Server) PublishLog(ctx context.Context, line messages.LogLine) error {
	subject := s.Subjects.Log(line.JobID)
	if _, err := s.JetStream.Publish(ctx, subject, messages.MustEncode(line)); err != nil {
		return fmt.Errorf("clienttest: publish %s: %w", subject, err)
	}
	return nil
}

func (s *Server) createStreams(t testing.TB) {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	streams := []jetstream.StreamConfig{
		{Name: s.Subjects.EventsStream(), Subjects: []string{s.Subjects.Events()}, Storage: jetstream.FileStorage},
		{Name: s.Subjects.LogsStream(), Subjects: []string{s.Subjects.Logs()}, Storage: jetstream.FileStorage},
	}
	for _, cfg := range streams {
		if _, err := s.JetStream.CreateStream(ctx, cfg); err != nil {
			t.Fatalf("clienttest: create stream %s: %v", cfg.Name, err)
		}
	}
}

func (s *Server) startService(t testing.TB) {
	t.Helper()

	svc, err := micro.AddService(s.Conn, micro.Config{Name: "jetqueue-clienttest", Version: "0.0.1"})
	if err != nil {
		t.Fatalf("clienttest: start the API service: %v", err)
	}
	t.Cleanup(func() { _ = svc.Stop() })

	group := svc.AddGroup(s.Subjects.APIGroup())
	for _, verb := range messages.Verbs {
		if err := group.AddEndpoint(verb, micro.HandlerFunc(func(req micro.Request) { s.serve(verb, req) })); err != nil {
			t.Fatalf("clienttest: add endpoint %s: %v", verb, err)
		}
	}

	// The flush returns once the server has the endpoints' subscriptions,
	// so the first request does not meet "no responders".
	if err := s.Conn.Flush(); err != nil {
		t.Fatalf("clienttest: flush subscriptions: %v", err)
	}
}

func (s *Server) serve(verb string, req micro.Request) {
	s.mu.Lock()
	h := s.handlers[verb]
	s.requests[verb]++
	s.mu.Unlock()

	if h == nil {
		respondError(req, messages.Errorf(messages.CodeInternal, "clienttest: no handler for verb %q", verb))
		return
	}

	reply, err := h(req.Data())
	var apiErr *messages.Error
	switch {
	case errors.Is(err, ErrNoReply):
	case errors.As(err, &apiErr):
		respondError(req, apiErr)
	case err != nil:
		respondError(req, messages.Errorf(messages.CodeInternal, "%v", err))
	default:
		respondValue(req, reply)
	}
}

func respondValue(req micro.Request, reply any) {
	if raw, ok := reply.(RawReply); ok {
		_ = req.Respond(raw.Data, micro.WithHeaders(micro.Headers(raw.Header)))
		return
	}
	data, err := messages.Encode(reply)
	if err != nil {
		respondError(req, messages.Errorf(messages.CodeInternal, "clienttest: encode %T: %v", reply, err))
		return
	}
	_ = req.Respond(data)
}

func respondError(req micro.Request, e *messages.Error) {
	_ = req.Error(strconv.Itoa(e.Code.HTTPStatus()), e.Message, messages.MustEncode(e))
}
