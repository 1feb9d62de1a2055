// Package coordinator owns jetqueue's authoritative job queue.
//
// A Coordinator serves the jq.api.* request-reply API as a NATS micro
// service, keeps the pending jobs in a priority heap (highest priority
// first, then submission order), assigns jobs to the workers whose
// heartbeats advertise room for them, and follows each job through its
// states: pending, running, completed, failed or cancelled.
//
// Every state change is written to the JQ_EVENTS stream before any client
// hears of it: a submit is acknowledged only once its submitted event is
// stored. That stream is the journal: a coordinator that starts replays it
// to rebuild the queue, so a crash loses no acknowledged job. Writes are
// pipelined and each expects the stream's previous sequence, so nothing
// else can interleave writes unnoticed.
//
// Delivery is at least once: a job whose worker is lost (no heartbeat for
// WorkerLease) goes back to the queue and runs again elsewhere, until it
// has lost MaxWorkerLosses workers.
//
// Any number of coordinators may run on one prefix. They campaign for a
// lease in a JetStream key-value bucket; the holder leads, and the others
// stand by and take over when its lease expires. A new leader first writes
// a leader event whose expected sequence makes JetStream reject any later
// journal write of the previous leader.
//
// Usage:
//
//	c, err := coordinator.New(nc, coordinator.Config{Name: "coordinator-1"})
//	if err != nil { ... }
//	if err := c.Start(ctx); err != nil { ... }
//	defer c.Stop(context.Background())
package coordinator
