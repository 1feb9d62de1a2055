package messages

import (
	"fmt"
	"slices"
	"strings"
)

// DefaultPrefix is the first token of every jetqueue subject.
const DefaultPrefix = "jq"

// Subjects builds the subject and stream names of one queue. Several queues
// share a NATS system by using different prefixes.
type Subjects struct {
	prefix string
}

// NewSubjects returns the subjects for prefix, which must be a valid subject
// token (see ValidateToken). An empty prefix means DefaultPrefix.
func NewSubjects(prefix string) (Subjects, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if err := ValidateToken("subject prefix", prefix); err != nil {
		return Subjects{}, err
	}
	if strings.ToLower(prefix) != prefix {
		return Subjects{}, Errorf(CodeInvalid, "subject prefix %q has upper-case letters: use lower case, because stream names are the upper-cased prefix", prefix)
	}
	return Subjects{prefix: prefix}, nil
}

// DefaultSubjects returns the subjects for DefaultPrefix.
func DefaultSubjects() Subjects { return Subjects{prefix: DefaultPrefix} }

// Prefix returns the first token of the queue's subjects.
func (s Subjects) Prefix() string { return s.prefix }

// API returns the request subject of an API verb: jq.api.<verb>.
func (s Subjects) API(verb string) string { return s.prefix + ".api." + verb }

// APIGroup returns the micro endpoint group of the API: jq.api.
func (s Subjects) APIGroup() string { return s.prefix + ".api" }

// Event returns the subject of one lifecycle event:
// jq.evt.<plugin>.<job_id>.<event>.
func (s Subjects) Event(plugin, jobID string, kind EventKind) string {
	return s.prefix + ".evt." + plugin + "." + jobID + "." + string(kind)
}

// EventFilter returns a subject filter over events. Empty arguments match
// any plugin, job or event kind.
func (s Subjects) EventFilter(plugin, jobID string, kind EventKind) string {
	if plugin == "" {
		plugin = "*"
	}
	if jobID == "" {
		jobID = "*"
	}
	k := string(kind)
	if k == "" {
		k = "*"
	}
	return s.Event(plugin, jobID, EventKind(k))
}

// Events returns the filter of all events: jq.evt.>.
func (s Subjects) Events() string { return s.prefix + ".evt.>" }

// LeaderFence returns the subject of leader events in the JQ_EVENTS stream:
// jq.ctl.leader.
func (s Subjects) LeaderFence() string { return s.prefix + ".ctl.leader" }

// DrainControl returns the subject of drain and undrain events in the
// JQ_EVENTS stream: jq.ctl.drain.
func (s Subjects) DrainControl() string { return s.prefix + ".ctl.drain" }

// Control returns the filter of control subjects: jq.ctl.>.
func (s Subjects) Control() string { return s.prefix + ".ctl.>" }

// LeaderBucket returns the name of the key-value bucket that holds the
// coordinator leader lease: JQ_LEADER for the default prefix.
func (s Subjects) LeaderBucket() string { return s.streamName("LEADER") }

// SnapshotBucket returns the name of the object store that holds the
// coordinator's state snapshots: JQ_SNAPSHOTS for the default prefix.
func (s Subjects) SnapshotBucket() string { return s.streamName("SNAPSHOTS") }

// Log returns the subject of one job's log lines: jq.log.<job_id>.
func (s Subjects) Log(jobID string) string { return s.prefix + ".log." + jobID }

// Logs returns the filter of all log lines: jq.log.>.
func (s Subjects) Logs() string { return s.prefix + ".log.>" }

// Heartbeat returns the subject workers publish heartbeats on: jq.wrk.hb.
func (s Subjects) Heartbeat() string { return s.prefix + ".wrk.hb" }

// Report returns the subject workers send job reports on: jq.wrk.report.
func (s Subjects) Report() string { return s.prefix + ".wrk.report" }

// DispatchAcks returns the prefix of the reply subjects on which workers
// acknowledge run commands to one coordinator: jq.wrk.ack.<id>. A reply
// subject inside the queue's prefix lets the worker role publish
// acknowledgements without being allowed to reply on arbitrary inboxes.
func (s Subjects) DispatchAcks(coordinatorID string) string {
	return s.prefix + ".wrk.ack." + coordinatorID
}

// WorkerCommand returns the subject a worker receives commands on:
// jq.wrk.cmd.<worker>.
func (s Subjects) WorkerCommand(worker string) string { return s.prefix + ".wrk.cmd." + worker }

// EventsStream returns the name of the lifecycle event stream: JQ_EVENTS for
// the default prefix, <PREFIX>_EVENTS otherwise.
func (s Subjects) EventsStream() string { return s.streamName("EVENTS") }

// LogsStream returns the name of the log stream: JQ_LOGS for the default prefix.
func (s Subjects) LogsStream() string { return s.streamName("LOGS") }

func (s Subjects) streamName(kind string) string {
	return strings.ToUpper(s.prefix) + "_" + kind
}

// ParseEventSubject splits an event subject into plugin, job id and kind.
func (s Subjects) ParseEventSubject(subject string) (plugin, jobID string, kind EventKind, err error) {
	rest, ok := strings.CutPrefix(subject, s.prefix+".evt.")
	parts := strings.Split(rest, ".")
	if !ok || len(parts) != 3 || slices.Contains(parts, "") {
		return "", "", "", fmt.Errorf("invalid event subject %q: expected %s.evt.<plugin>.<job_id>.<event>", subject, s.prefix)
	}
	return parts[0], parts[1], EventKind(parts[2]), nil
}
