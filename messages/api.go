package messages

import "time"

// API verbs: the last token of the jq.api.<verb> request subjects.
const (
	VerbSubmit      = "submit"
	VerbSubmitBatch = "submit_batch"
	VerbCancel      = "cancel"
	VerbReorder     = "reorder"
	VerbGet         = "get"
	VerbState       = "state"
	VerbLogs        = "logs"
	VerbWorkers     = "workers"
	VerbDrain       = "drain"
)

// Verbs lists every API verb.
var Verbs = []string{VerbSubmit, VerbSubmitBatch, VerbCancel, VerbReorder, VerbGet, VerbState, VerbLogs, VerbWorkers, VerbDrain}

// SubmitRequest is a request to queue a job. The reply is sent only
// once the job is durable in JetStream.
type SubmitRequest struct {
	V          int     `msgpack:"v" json:"v"`
	PluginName string  `msgpack:"plugin_name" json:"plugin_name"`
	Args       Payload `msgpack:"args" json:"args"`
	Kwargs     Payload `msgpack:"kwargs" json:"kwargs"`
	Priority   int     `msgpack:"priority" json:"priority"`
	// MaxAttempts caps how often the job is started; 0 takes the
	// coordinator's default.
	MaxAttempts    int               `msgpack:"max_attempts" json:"max_attempts"`
	Requirements   *Requirements     `msgpack:"requirements" json:"requirements,omitempty"`
	IdempotencyKey string            `msgpack:"idempotency_key" json:"idempotency_key,omitempty"`
	Labels         map[string]string `msgpack:"labels" json:"labels,omitempty"`
}

// SubmitReply returns the id of the queued job.
type SubmitReply struct {
	ID  string `msgpack:"id" json:"id"`
	Seq uint64 `msgpack:"seq" json:"seq"`
	// Duplicate is true when the idempotency key matched an earlier submit,
	// whose job id is returned instead of a new one.
	Duplicate bool `msgpack:"duplicate" json:"duplicate,omitempty"`
}

// SubmitBatchRequest queues several jobs in one request. Each job is
// validated on its own; valid jobs are queued even when others fail.
type SubmitBatchRequest struct {
	V    int             `msgpack:"v" json:"v"`
	Jobs []SubmitRequest `msgpack:"jobs" json:"jobs"`
}

// SubmitBatchReply has one result per requested job, in request order.
type SubmitBatchReply struct {
	Results []SubmitResult `msgpack:"results" json:"results"`
}

// SubmitResult is the outcome of one job of a batch: an id, or an error.
type SubmitResult struct {
	ID        string `msgpack:"id" json:"id,omitempty"`
	Seq       uint64 `msgpack:"seq" json:"seq,omitempty"`
	Duplicate bool   `msgpack:"duplicate" json:"duplicate,omitempty"`
	Error     *Error `msgpack:"error" json:"error,omitempty"`
}

// JobRequest names one job: the body of get and cancel.
type JobRequest struct {
	V  int    `msgpack:"v" json:"v"`
	ID string `msgpack:"id" json:"id"`
}

// ReorderRequest changes the priority of a pending job. The job keeps its
// submission sequence, so among jobs of its new priority it sits where its
// original submission puts it.
type ReorderRequest struct {
	V        int    `msgpack:"v" json:"v"`
	ID       string `msgpack:"id" json:"id"`
	Priority int    `msgpack:"priority" json:"priority"`
}

// JobReply carries one job record: the reply of get, cancel and reorder.
type JobReply struct {
	Job Job `msgpack:"job" json:"job"`
}

// StateRequest is a request for the whole queue.
type StateRequest struct {
	V int `msgpack:"v" json:"v"`
	// HistoryLimit caps the finished jobs returned, newest first. 0 takes
	// the default of 100; -1 returns all that the coordinator keeps.
	HistoryLimit int `msgpack:"history_limit" json:"history_limit"`
	// PendingLimit caps the pending jobs returned, in dispatch order. 0
	// takes the default of 1,000; -1 returns all.
	PendingLimit int `msgpack:"pending_limit" json:"pending_limit"`
}

// StateReply is the queue as cjm-plugin-system's get_state returns it:
// running jobs, pending jobs in dispatch order, history newest first,
// counters and the workers.
type StateReply struct {
	Running []Job         `msgpack:"running" json:"running"`
	Pending []PendingJob  `msgpack:"pending" json:"pending"`
	History []Job         `msgpack:"history" json:"history"`
	Stats   Stats         `msgpack:"stats" json:"stats"`
	Workers []WorkerState `msgpack:"workers" json:"workers"`
	// Leader names the coordinator that served the request.
	Leader string    `msgpack:"leader" json:"leader"`
	Time   time.Time `msgpack:"time" json:"time"`
}

// PendingJob is a pending job and its place in the dispatch order.
type PendingJob struct {
	// Position is 1 for the job that is dispatched next.
	Position int `msgpack:"position" json:"position"`
	Job      Job `msgpack:"job" json:"job"`
}

// Stats counts jobs by status.
type Stats struct {
	Pending   int `msgpack:"pending" json:"pending"`
	Running   int `msgpack:"running" json:"running"`
	Completed int `msgpack:"completed" json:"completed"`
	Failed    int `msgpack:"failed" json:"failed"`
	Cancelled int `msgpack:"cancelled" json:"cancelled"`
	// Submitted counts jobs accepted since the queue was created.
	Submitted uint64 `msgpack:"submitted" json:"submitted"`
}

// LogsRequest is a request for the last lines of one job's log.
type LogsRequest struct {
	V  int    `msgpack:"v" json:"v"`
	ID string `msgpack:"id" json:"id"`
	// Lines is how many of the newest lines to return; 0 takes the default
	// of 100, -1 returns all that are kept.
	Lines int `msgpack:"lines" json:"lines"`
}

// LogsReply returns log lines, oldest first.
type LogsReply struct {
	Lines []LogLine `msgpack:"lines" json:"lines"`
	// Truncated is true when older lines exist than those returned.
	Truncated bool `msgpack:"truncated" json:"truncated"`
}

// WorkersRequest is a request for the registered workers.
type WorkersRequest struct {
	V int `msgpack:"v" json:"v"`
}

// WorkersReply lists the registered workers, sorted by name.
type WorkersReply struct {
	Workers []WorkerState `msgpack:"workers" json:"workers"`
}

// DrainRequest drains a worker (it gets no new jobs; running ones finish)
// or, with Drain false, undrains it. A drain outlives coordinator restarts
// and applies to a worker that has not connected yet.
type DrainRequest struct {
	V      int    `msgpack:"v" json:"v"`
	Worker string `msgpack:"worker" json:"worker"`
	Drain  bool   `msgpack:"drain" json:"drain"`
}

// DrainReply returns the worker's state after the request.
type DrainReply struct {
	Worker WorkerState `msgpack:"worker" json:"worker"`
}

// WorkerState is the coordinator's view of a worker: its last
// advertisement, the jobs the coordinator assigned to it, and liveness.
type WorkerState struct {
	Info WorkerInfo `msgpack:"info" json:"info"`
	// Jobs are the ids of the jobs assigned to the worker.
	Jobs     []string  `msgpack:"jobs" json:"jobs"`
	LastSeen time.Time `msgpack:"last_seen" json:"last_seen"`
	// Status is "ready", "draining" (drained by an operator, or stopping)
	// or "lost".
	Status string `msgpack:"status" json:"status"`
	// GPUs is the coordinator's ledger of each GPU, in Info.GPUs order.
	GPUs []GPUState `msgpack:"gpus" json:"gpus,omitempty"`
}

// GPUState is the coordinator's view of one GPU of a worker. Memory is in
// MiB.
type GPUState struct {
	Index int `msgpack:"index" json:"index"`
	// ReservedMB is the memory reserved for the jobs running on the GPU.
	ReservedMB int64 `msgpack:"reserved_mb" json:"reserved_mb"`
	// EvictableMB is the memory idle plugin processes hold, which an
	// eviction can free.
	EvictableMB int64 `msgpack:"evictable_mb" json:"evictable_mb"`
	// Jobs counts the running jobs on the GPU.
	Jobs int `msgpack:"jobs" json:"jobs"`
}
