package messages

import "time"

// LogStream names where a log line came from.
type LogStream string

// Log line sources.
const (
	LogStdout LogStream = "stdout" // a line the plugin printed that is not a protocol message
	LogStderr LogStream = "stderr" // a line the plugin wrote to stderr
	LogPlugin LogStream = "plugin" // a "log" protocol message, or an in-process handler's log call
	LogWorker LogStream = "worker" // a line the worker wrote about the job, such as a cancel step
)

// LogLine is one line of a job's log, published on jq.log.<job_id> into the
// JQ_LOGS stream.
type LogLine struct {
	JobID   string    `msgpack:"job_id" json:"job_id"`
	Attempt int       `msgpack:"attempt" json:"attempt"`
	Time    time.Time `msgpack:"time" json:"time"`
	Stream  LogStream `msgpack:"stream" json:"stream"`
	// Level is "debug", "info", "warning" or "error"; stdout lines are
	// "info" and stderr lines "warning" unless the plugin says otherwise.
	Level string `msgpack:"level" json:"level"`
	Text  string `msgpack:"text" json:"text"`
}
