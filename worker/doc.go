// Package worker runs jetqueue jobs on one machine.
//
// A Worker loads plugin manifests from a directory (and in-process Go
// handlers registered with Handle), advertises its CPUs, memory, GPUs and
// plugins in heartbeats on jq.wrk.hb, and runs the jobs the coordinator
// sends on jq.wrk.cmd.<name>, up to MaxJobs at once. Each plugin runs in a
// process group of its own; progress goes back to the coordinator and every
// output line into the JQ_LOGS stream.
//
// A cancel is cooperative first: the plugin gets a cancel message (an
// in-process handler sees its context cancelled). A plugin still running
// after its cancel_timeout gets SIGTERM on its whole process group, and
// SIGKILL after kill_grace, so no child process survives.
//
// Persistent plugins stay loaded between jobs (a model stays in GPU
// memory) until idle_timeout; exec plugins start one process per job.
package worker
