package messages

import "time"

// WorkerInfo is a worker's advertisement of itself, sent in every heartbeat.
type WorkerInfo struct {
	Name string `msgpack:"name" json:"name"`
	// Instance is a fresh UUID per worker process, so the coordinator can
	// tell a restarted worker from a live one of the same name.
	Instance  string    `msgpack:"instance" json:"instance"`
	Version   string    `msgpack:"version" json:"version"`
	Host      string    `msgpack:"host" json:"host"`
	StartedAt time.Time `msgpack:"started_at" json:"started_at"`
	// MaxJobs is how many jobs the worker runs at once.
	MaxJobs int `msgpack:"max_jobs" json:"max_jobs"`
	// CPUs is the number of usable CPU cores (cgroup quota respected).
	CPUs float64 `msgpack:"cpus" json:"cpus"`
	// MemoryTotalMB is the usable system memory in MiB: the machine's total,
	// or the cgroup limit when lower.
	MemoryTotalMB     int64        `msgpack:"memory_total_mb" json:"memory_total_mb"`
	MemoryAvailableMB int64        `msgpack:"memory_available_mb" json:"memory_available_mb"`
	GPUs              []GPU        `msgpack:"gpus" json:"gpus"`
	Plugins           []PluginInfo `msgpack:"plugins" json:"plugins"`
	Draining          bool         `msgpack:"draining" json:"draining"`
}

// GPU is one accelerator of a worker, as nvidia-smi reports it or as
// declared on the command line. Memory is in MiB.
type GPU struct {
	Index         int    `msgpack:"index" json:"index"`
	UUID          string `msgpack:"uuid" json:"uuid"`
	Name          string `msgpack:"name" json:"name"`
	MemoryTotalMB int64  `msgpack:"memory_total_mb" json:"memory_total_mb"`
	MemoryUsedMB  int64  `msgpack:"memory_used_mb" json:"memory_used_mb"`
	MemoryFreeMB  int64  `msgpack:"memory_free_mb" json:"memory_free_mb"`
	// UtilizationPct is the GPU utilisation in percent, or -1 when unknown.
	UtilizationPct int `msgpack:"utilization_pct" json:"utilization_pct"`
	// Unhealthy is the reason the GPU must not be used, such as uncorrectable
	// ECC errors; empty when it is healthy.
	Unhealthy string `msgpack:"unhealthy" json:"unhealthy,omitempty"`
	// Processes are the compute processes on the GPU, of jetqueue or not.
	Processes []GPUProcess `msgpack:"processes" json:"processes,omitempty"`
}

// GPUProcess is one compute process on a GPU, as nvidia-smi
// --query-compute-apps reports it.
type GPUProcess struct {
	PID int `msgpack:"pid" json:"pid"`
	// UsedMB is the GPU memory the process uses, in MiB.
	UsedMB int64 `msgpack:"used_mb" json:"used_mb"`
}

// Plugin modes.
const (
	ModePersistent = "persistent" // one long-lived process serves job after job
	ModeExec       = "exec"       // one process per job
	ModeInProcess  = "in-process" // a Go handler registered in the worker process
)

// PluginInfo is one plugin a worker can run, and the state of its processes.
type PluginInfo struct {
	Name      string    `msgpack:"name" json:"name"`
	Mode      string    `msgpack:"mode" json:"mode"`
	Resources Resources `msgpack:"resources" json:"resources"`
	// Instances is how many jobs of this plugin the worker runs at once.
	Instances int `msgpack:"instances" json:"instances"`
	// Busy counts instances running a job; Warm counts idle persistent
	// processes that are loaded and ready.
	Busy     int       `msgpack:"busy" json:"busy"`
	Warm     int       `msgpack:"warm" json:"warm"`
	LastUsed time.Time `msgpack:"last_used" json:"last_used"`
	// Processes are the plugin's live persistent processes, busy or warm.
	Processes []PluginProcess `msgpack:"processes" json:"processes,omitempty"`
}

// PluginProcess is one live persistent plugin process. An idle one holds
// its GPU memory (a loaded model) until it is evicted.
type PluginProcess struct {
	PID int `msgpack:"pid" json:"pid"`
	// GPUs are the GPU indexes the process was started with.
	GPUs []int `msgpack:"gpus" json:"gpus"`
	Busy bool  `msgpack:"busy" json:"busy"`
	// LastUsed is when the process last ended a job.
	LastUsed time.Time `msgpack:"last_used" json:"last_used"`
	// GPUMemoryMB is the GPU memory the process holds on each of its GPUs,
	// in MiB: measured by nvidia-smi for its process group when it reports
	// compute processes, else the manifest's gpu_memory_mb.
	GPUMemoryMB int64 `msgpack:"gpu_memory_mb" json:"gpu_memory_mb"`
}

// RunningJob names a job a worker holds: one that runs, or that ended and
// whose final report the coordinator has not acknowledged yet.
type RunningJob struct {
	ID      string `msgpack:"id" json:"id"`
	Attempt int    `msgpack:"attempt" json:"attempt"`
}

// Heartbeat is published by every worker on jq.wrk.hb at its heartbeat
// interval and after each job start and end. It carries the full
// advertisement, so a coordinator that starts learns everything from one
// heartbeat.
type Heartbeat struct {
	V       int          `msgpack:"v" json:"v"`
	Info    WorkerInfo   `msgpack:"info" json:"info"`
	Running []RunningJob `msgpack:"running" json:"running"`
	Time    time.Time    `msgpack:"time" json:"time"`
	// Leaving is set in the last heartbeat of a worker that stops: the
	// coordinator marks it lost at once instead of waiting for the lease.
	Leaving bool `msgpack:"leaving" json:"leaving,omitempty"`
}

// HeartbeatReply is the leader coordinator's acknowledgement of a
// heartbeat. A worker that gets none for half the lease stops its jobs,
// because the coordinator re-queues them once the lease has passed.
type HeartbeatReply struct {
	V      int    `msgpack:"v" json:"v"`
	Leader string `msgpack:"leader" json:"leader"`
	// LeaseMS is the worker lease in milliseconds.
	LeaseMS int64 `msgpack:"lease_ms" json:"lease_ms"`
	// Term is the leader's leadership term. A worker rejects commands of an
	// older term than the newest it has seen, so a deposed leader cannot
	// order it about.
	Term uint64 `msgpack:"term" json:"term"`
}

// Worker command kinds, sent by the coordinator on jq.wrk.cmd.<worker>.
const (
	CommandRun    = "run"    // start a job; the worker replies with a CommandReply
	CommandCancel = "cancel" // cancel a job; the outcome comes as a report
	CommandEvict  = "evict"  // stop idle plugin processes; a CommandReply follows when the command has a reply subject
)

// WorkerCommand is a coordinator's order to one worker. Run and cancel share
// one subject, so a worker receives them in the order they were sent.
type WorkerCommand struct {
	V    int    `msgpack:"v" json:"v"`
	Kind string `msgpack:"kind" json:"kind"`
	// Job is the record to run, set for CommandRun.
	Job *Job `msgpack:"job" json:"job,omitempty"`
	// JobID and Attempt name the job for CommandCancel.
	JobID   string `msgpack:"job_id" json:"job_id,omitempty"`
	Attempt int    `msgpack:"attempt" json:"attempt,omitempty"`
	// GPUs are the GPU indexes the job is given (CUDA_VISIBLE_DEVICES).
	GPUs []int `msgpack:"gpus" json:"gpus,omitempty"`
	// Evict lists the pids of idle plugin processes to stop, for
	// CommandEvict; busy ones are left alone.
	Evict []int `msgpack:"evict" json:"evict,omitempty"`
	// Reason is the reason for CommandEvict, for logs and events.
	Reason string `msgpack:"reason" json:"reason,omitempty"`
	// Term is the sending leader's leadership term.
	Term uint64 `msgpack:"term" json:"term"`
}

// CommandReply acknowledges a WorkerCommand. Error is set when the worker
// rejects it.
type CommandReply struct {
	Error *Error `msgpack:"error" json:"error,omitempty"`
}

// Report kinds, sent by workers on jq.wrk.report.
const (
	ReportProgress   = "progress"
	ReportCompleted  = "completed"
	ReportFailed     = "failed"
	ReportCancelled  = "cancelled"
	ReportCancelStep = "cancel_step" // the worker escalated a cancel (see Job.CancelPhase)
)

// Report is a worker's news about one job. Progress reports are published;
// final reports (completed, failed, cancelled) are requests that the worker
// repeats until the coordinator acknowledges them.
type Report struct {
	V       int       `msgpack:"v" json:"v"`
	Kind    string    `msgpack:"kind" json:"kind"`
	Worker  string    `msgpack:"worker" json:"worker"`
	JobID   string    `msgpack:"job_id" json:"job_id"`
	Attempt int       `msgpack:"attempt" json:"attempt"`
	Time    time.Time `msgpack:"time" json:"time"`
	// Progress is 0 to 1, or -1 while indeterminate.
	Progress      float64     `msgpack:"progress" json:"progress"`
	StatusMessage string      `msgpack:"status_message" json:"status_message"`
	Result        Payload     `msgpack:"result" json:"result"`
	Error         string      `msgpack:"error" json:"error"`
	CancelPhase   CancelPhase `msgpack:"cancel_phase" json:"cancel_phase"`
}

// ReportReply acknowledges a final report. Error is set when the
// coordinator does not accept it, for example because the job was
// re-queued to another worker meanwhile.
type ReportReply struct {
	Error *Error `msgpack:"error" json:"error,omitempty"`
}
