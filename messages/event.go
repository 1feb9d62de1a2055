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
)

// EventKinds lists every event kind.
var EventKinds = []EventKind{
	EventSubmitted, EventStarted, EventProgress, EventCompleted, EventFailed,
	EventCancelled, EventRequeued, EventReordered, EventCancelRequested,
}

// Event is one lifecycle event. The JQ_EVENTS stream of events is also the
// coordinator's journal: replaying it rebuilds the queue.
type Event struct {
	V    int       `msgpack:"v" json:"v"`
	Kind EventKind `msgpack:"event" json:"event"`
	Time time.Time `msgpack:"time" json:"time"`
	// Job is the record after the event. Progress events carry the record
	// without args, kwargs and result (see Job.Summary).
	Job Job `msgpack:"job" json:"job"`
}
