// Package client is the Go SDK of jetqueue: it submits jobs to the
// coordinator, changes and inspects them, and follows their events and logs.
//
// # Connecting
//
// A Client wraps a NATS connection that the caller opens and closes:
//
//	nc, err := nats.Connect("nats://127.0.0.1:4222")
//	if err != nil {
//		return err
//	}
//	defer nc.Close()
//
//	jq, err := client.New(nc) // client.WithPrefix("jq"), client.WithTimeout(5*time.Second)
//	if err != nil {
//		return err
//	}
//
// One Client serves any number of goroutines. Requests go to the jq.api.*
// subjects, which the coordinator serves; events and logs come from the
// JQ_EVENTS and JQ_LOGS streams.
//
// # Submitting and waiting
//
// Submit returns the new job's id once the coordinator has stored the job
// durably:
//
//	id, err := jq.Submit(ctx, "hash-files", map[string]any{"path": "/data/set-1"},
//		client.Priority(10), client.IdempotencyKey("set-1"))
//
//	job, err := jq.WaitForJob(ctx, id) // blocks until completed, failed or cancelled
//	if job.Status == messages.StatusCompleted {
//		result, _ := job.Result.Value() // the plugin's result, decoded
//	}
//
// Higher priorities run first, and equal priorities in submission order.
// SubmitRequest takes a whole messages.SubmitRequest, and SubmitBatch queues
// many jobs in one request. Cancel, Reorder, Get, State, Logs and Workers
// are the other verbs.
//
// # Watching events
//
// Every change of a job is a lifecycle event on the subject
// jq.evt.<plugin>.<job_id>.<event>, stored in the JQ_EVENTS stream in the
// order it happened: submitted, started, progress, completed, failed,
// cancelled, requeued, reordered and cancel_requested. Watch calls a
// function with the events that a WatchFilter selects:
//
//	filter := client.WatchFilter{JobID: id, DeliverAll: true}
//	err := jq.Watch(ctx, filter, func(event messages.Event) error {
//		fmt.Println(event.Kind, event.Job.Progress, event.Job.StatusMessage)
//		if event.Job.Status.Final() {
//			return errDone // ends the watch; Watch returns errDone
//		}
//		return nil
//	})
//
// DeliverAll replays the events stored before the call, so a watch that
// starts after the submit still receives every event of the job. Progress
// events are rate limited per job: at most one per coordinator
// ProgressInterval (250ms by default) and per worker ProgressInterval (100ms
// by default), the latest value winning, so a plugin that reports progress
// in a tight loop does not flood the stream. A completed job's record has
// progress 1.
//
// Watch, WaitForJob and FollowLogs read the streams through ordered
// consumers that live only as long as the call, and never poll the
// coordinator. A program that must handle every event even across its own
// restarts, such as one that starts a follow-up job for each completion,
// needs a durable JetStream consumer with explicit acknowledgements instead:
// examples/subscriber in the repository is one, and docs/PROTOCOL.md says how
// long the stream keeps events.
//
// # Errors
//
// Errors that the coordinator returns are *messages.Error values with a
// stable code:
//
//	_, err := jq.Cancel(ctx, id)
//	if errors.Is(err, &messages.Error{Code: messages.CodeConflict}) {
//		// the job had already ended
//	}
//
// messages.CodeOf returns the code of any error. A request that gets no
// reply returns an error wrapping ErrNoCoordinator, and a reply that does
// not decode one wrapping ErrInvalidReply.
//
// # Delivery guarantees
//
// Submit returns only after the job's submitted event is stored in
// JetStream, so a job whose id was returned survives a restart of the
// coordinator. Every submit carries an idempotency key (a random one unless
// you set IdempotencyKey), and the client retries requests for up to
// DefaultRetryFor (see WithRetry) while no coordinator answers, as during a
// failover: a retried submit returns the first job's id instead of queuing
// a second job.
//
// Running a job is at least once. When a worker stops sending heartbeats
// mid-job, its job goes back to the queue (a requeued event) and runs
// again, until MaxWorkerLosses of the coordinator, so a plugin may see the
// same job more than once and should be idempotent. Handlers of events read through
// a durable consumer see an event again when they did not acknowledge it in
// time, so they should be idempotent too.
package client
