package messages

import "time"

// EventKind names a lifecycle event. It is the last token of the event subject.
type EventKind string

// Lifecycle events, published on jq.evt.<plugin>.<job_id>.<event> into the
// JQ_EVENTS stream.
const (
	EventSubmitted       EventKind = "submitted"
	EventStarted         EventKind = "started"
	EventProgress        EventKind = "progress"
	EventCompleted       EventKind = "completed"
	EventFailed          EventKind = "failed"
	EventCancelled       EventKind = "cancelled"
	EventRequeued        EventKind = "requeued"
	EventReordered       EventKind = "reordered"
	EventCancelRequested EventKind = "cancel_requested"
	// EventEvicting is written on the subject of a job that waits for GPU
	// memory when idle plugin processes are stopped to make room for it;
	// the record's status_message names them.
	EventEvicting EventKind = "evicting"
)

// EventLeader is written by a coordinator when it becomes the leader, on
// the <prefix>.ctl.leader subject of the JQ_EVENTS stream. It carries no
// job; its Term fences off writes of the previous leader.
const EventLeader EventKind = "leader"

// EventKinds lists every job event kind.
var EventKinds = []EventKind{
	EventSubmitted, EventStarted, EventProgress, EventCompleted, EventFailed,
	EventCancelled, EventRequeued, EventReordered, EventCancelRequested, EventEvicting,
}

// Drain events are written by the leader on <prefix>.ctl.drain when an
// operator drains or undrains a worker. They carry no job; Worker names the
// worker.
const (
	EventDrain   EventKind = "drain"
	EventUndrain EventKind = "undrain"
)

// Event is one lifecycle event. The JQ_EVENTS stream of events is also the
// coordinator's journal: replaying it rebuilds the queue.
type Event struct {
	V    int       `msgpack:"v" json:"v"`
	Kind EventKind `msgpack:"event" json:"event"`
	Time time.Time `msgpack:"time" json:"time"`
	// Term is the leadership term of the coordinator that wrote the event;
	// each new leader takes the previous term plus one.
	Term uint64 `msgpack:"term" json:"term"`
	// Leader names the coordinator that wrote the event.
	Leader string `msgpack:"leader" json:"leader,omitempty"`
	// Worker names the worker of a drain or undrain event.
	Worker string `msgpack:"worker" json:"worker,omitempty"`
	// Job is the record after the event. Progress events carry the record
	// without args, kwargs and result (see Job.Summary).
	Job Job `msgpack:"job" json:"job"`
}
