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
// # Submitting and waiting
//
// Submit returns once the coordinator has stored the job durably:
//
//	id, err := jq.Submit(ctx, "hash-files", map[string]any{"path": "/data/set-1"},
//		client.Priority(10), client.IdempotencyKey("set-1"))
//
//	job, err := jq.WaitForJob(ctx, id) // blocks until completed, failed or cancelled
//	if job.Status == messages.StatusCompleted {
//		result, _ := job.Result.Value() // the plugin's result, decoded
//	}
//
// A submit that fails with a timeout may still have queued the job. Set an
// idempotency key to make the retry return the same job instead of a second
// one. A worker that is lost mid-job gets its job re-queued, so a plugin may
// run a job more than once: delivery to plugins is at least once.
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
// A request that gets no reply returns an error wrapping ErrNoCoordinator.
//
// # Events and logs
//
// Watch streams lifecycle events from the JQ_EVENTS stream, filtered on the
// server by plugin, job and event kind. FollowLogs streams one job's log
// lines from the JQ_LOGS stream until the job ends. WaitForJob, Watch and
// FollowLogs read the streams through ordered consumers and never poll the
// coordinator.
package client
