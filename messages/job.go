package messages

import "time"

// Job is the record of one job, as stored by the coordinator, carried in
// lifecycle events and returned by the API. Field names follow the
// cjm-plugin-system JobQueue, plus the fields a distributed queue needs.
type Job struct {
	ID         string  `msgpack:"id" json:"id"`
	PluginName string  `msgpack:"plugin_name" json:"plugin_name"`
	Args       Payload `msgpack:"args" json:"args"`
	Kwargs     Payload `msgpack:"kwargs" json:"kwargs"`
	Status     Status  `msgpack:"status" json:"status"`
	// Priority orders dispatch: higher runs first. It lies within int32.
	Priority    int        `msgpack:"priority" json:"priority"`
	CreatedAt   time.Time  `msgpack:"created_at" json:"created_at"`
	StartedAt   *time.Time `msgpack:"started_at" json:"started_at"`
	CompletedAt *time.Time `msgpack:"completed_at" json:"completed_at"`
	Result      Payload    `msgpack:"result" json:"result"`
	Error       string     `msgpack:"error" json:"error"`
	// Progress is the fraction done, 0 to 1, or -1 while indeterminate.
	Progress      float64 `msgpack:"progress" json:"progress"`
	StatusMessage string  `msgpack:"status_message" json:"status_message"`
	// Seq is the submission sequence number the coordinator assigned. Jobs of
	// equal priority run in Seq order.
	Seq uint64 `msgpack:"seq" json:"seq"`
	// Worker names the worker running the job, or that ran it last.
	Worker string `msgpack:"worker" json:"worker"`
	// Attempt counts dispatches: 0 while the job has never started, 1 on its
	// first run, and one more each time it is re-queued and started again.
	Attempt     int `msgpack:"attempt" json:"attempt"`
	MaxAttempts int `msgpack:"max_attempts" json:"max_attempts"`
	// Requirements override the plugin manifest's resources; nil fields
	// keep the manifest's values.
	Requirements   *Requirements     `msgpack:"requirements" json:"requirements"`
	IdempotencyKey string            `msgpack:"idempotency_key" json:"idempotency_key"`
	CancelPhase    CancelPhase       `msgpack:"cancel_phase" json:"cancel_phase"`
	PendingReason  string            `msgpack:"pending_reason" json:"pending_reason"`
	Labels         map[string]string `msgpack:"labels" json:"labels,omitempty"`
	// Requeues lists each time the job went back to the queue, oldest first.
	Requeues []Requeue `msgpack:"requeues" json:"requeues,omitempty"`
	// WorkerLosses counts the workers lost while they ran the job.
	WorkerLosses int `msgpack:"worker_losses" json:"worker_losses"`
}

// Requeue records one return of a running job to the queue.
type Requeue struct {
	Time    time.Time `msgpack:"time" json:"time"`
	Worker  string    `msgpack:"worker" json:"worker"`
	Attempt int       `msgpack:"attempt" json:"attempt"`
	Reason  string    `msgpack:"reason" json:"reason"`
}

// Requirements are the resources one job needs on one worker. A nil field
// means "as the plugin manifest says".
type Requirements struct {
	// GPUs is the number of GPUs, all on one worker.
	GPUs *int `msgpack:"gpus" json:"gpus,omitempty"`
	// GPUMemoryMB is the free memory needed on each of those GPUs, in MiB.
	GPUMemoryMB *int64 `msgpack:"gpu_memory_mb" json:"gpu_memory_mb,omitempty"`
	// MemoryMB is the system memory needed, in MiB.
	MemoryMB *int64 `msgpack:"memory_mb" json:"memory_mb,omitempty"`
	// CPUs is the number of CPU cores, fractions allowed.
	CPUs *float64 `msgpack:"cpus" json:"cpus,omitempty"`
}

// Resources are concrete resource amounts: what a manifest declares, or
// what a job's requirements resolve to on a worker.
type Resources struct {
	GPUs        int     `msgpack:"gpus" json:"gpus"`
	GPUMemoryMB int64   `msgpack:"gpu_memory_mb" json:"gpu_memory_mb"`
	MemoryMB    int64   `msgpack:"memory_mb" json:"memory_mb"`
	CPUs        float64 `msgpack:"cpus" json:"cpus"`
}

// Apply returns base with the fields that r sets replaced. A nil r returns base.
func (r *Requirements) Apply(base Resources) Resources {
	if r == nil {
		return base
	}
	if r.GPUs != nil {
		base.GPUs = *r.GPUs
	}
	if r.GPUMemoryMB != nil {
		base.GPUMemoryMB = *r.GPUMemoryMB
	}
	if r.MemoryMB != nil {
		base.MemoryMB = *r.MemoryMB
	}
	if r.CPUs != nil {
		base.CPUs = *r.CPUs
	}
	return base
}

// Summary returns a copy of j without its args, kwargs and result, as
// carried by progress events.
func (j *Job) Summary() Job {
	s := *j
	s.Args, s.Kwargs, s.Result = nil, nil, nil
	return s
}
