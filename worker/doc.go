// Package worker runs jetqueue jobs on one machine.
//
// A Worker loads plugin manifests from a directory (and in-process Go
// handlers registered with Handle), advertises its CPUs, memory, GPUs and
// plugins in heartbeats on jq.wrk.hb, and runs the jobs the coordinator
// sends on jq.wrk.cmd.<name>, up to MaxJobs at once. Each plugin runs in a
// process group of its own; progress goes back to the coordinator and every
// output line into the JQ_LOGS stream.
//
// A cancel is cooperative first: the plugin gets a cancel message (an in-
// process handler has its context cancelled). A plugin still running
// after its cancel_timeout gets SIGTERM on its whole process group, and
// SIGKILL after kill_grace, so no child process survives.
//
// Persistent plugins stay loaded between jobs (a model stays in GPU
// memory) until idle_timeout, or until the coordinator sends an evict
// command for their idle processes; a busy process is never evicted. Exec
// plugins start one process per job.
//
// GPUs come from nvidia-smi: --query-gpu for memory, utilisation and
// uncorrectable ECC errors, and --query-compute-apps for the processes on
// each GPU, which tell how much memory each warm plugin process group
// holds. Config.StaticGPUs declares GPUs instead, for other accelerators.
// The worker probes every ProbeInterval and after each job start and end,
// and a heartbeat follows. When a job that had GPUs ends, its final report
// waits, at most 10 s, until none of its ended processes is listed on a
// GPU, so the coordinator never offers memory that a killed job still
// fills.
package worker
