// Package bench measures a jetqueue queue end to end: plain JetStream as
// the ceiling, submit throughput, end-to-end throughput, start and cancel
// latency, the coordinator's memory per pending job, its restart time, and
// the NATS messages each job costs. `jetqueue bench` runs it, and
// docs/BENCHMARKS.md records its figures.
//
// Run starts everything in the calling process: an embedded nats-server
// storing into files, a coordinator and workers with in-process no-op
// handlers, each on its own TCP connection over loopback. The figures are
// therefore those of one machine whose cores the server, the coordinator,
// the workers and the load generator share.
package bench
