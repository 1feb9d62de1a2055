package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/messages"
)

var statusCommand = &command{
	name:     "status",
	synopsis: "[flags] [JOB]",
	summary:  "Print the queue, or the record of one job.",
	details: `
Without JOB it prints the running jobs, the pending jobs in dispatch order
with the reason each waits, recent history, job counts and the workers. With
--json it prints the coordinator's state, or the job record with the field
names of the wire format.`,
	setup: setupStatus,
}

func setupStatus(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	var conn clientFlags
	conn.register(fs, e, "timeout")
	history := fs.Int("history", 20, "how many finished jobs to list, newest first; -1 lists all the coordinator keeps")

	return func(ctx context.Context, args []string) error {
		if len(args) > 1 {
			return usagef("too many arguments %q: give at most one job id", args)
		}
		if *history == 0 || *history < -1 {
			return usagef("invalid --history %d: use a positive count, or -1 for all", *history)
		}
		c, nc, err := conn.open("status")
		if err != nil {
			return err
		}
		defer nc.Close()

		if len(args) == 1 {
			job, err := c.Get(ctx, args[0])
			if err != nil {
				return interrupted(ctx, err)
			}
			if conn.json {
				return printJSON(e.stdout, job)
			}
			return printJob(e.stdout, job, time.Now())
		}

		state, err := c.State(ctx, messages.StateRequest{HistoryLimit: *history})
		if err != nil {
			return interrupted(ctx, err)
		}
		if conn.json {
			return printJSON(e.stdout, state)
		}
		return printState(e.stdout, state, time.Now())
	}
}

var waitCommand = &command{
	name:     "wait",
	synopsis: "[flags] JOB",
	summary:  "Wait for a job to end and exit with its outcome.",
	details: `
Prints the final status with the result or the error, or with --json the job
record. Exits 0 when the job completed, 1 when it failed, 2 when it was
cancelled and 3 when --timeout passed first; the job carries on after a
timeout.`,
	setup: setupWait,
}

func setupWait(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	var conn clientFlags
	conn.register(fs, e, "request-timeout")
	timeout := fs.Duration("timeout", 0, "how long to wait before exiting 3; 0 waits without limit")

	return func(ctx context.Context, args []string) error {
		if len(args) != 1 {
			return usagef("expected one job id, got %d arguments", len(args))
		}
		if *timeout < 0 {
			return usagef("invalid --timeout %s: use a duration such as 30s, or 0 for no limit", *timeout)
		}
		c, nc, err := conn.open("wait")
		if err != nil {
			return err
		}
		defer nc.Close()

		return waitAndPrint(ctx, e, c, args[0], *timeout, conn.json)
	}
}

// waitAndPrint waits for a job, prints how it ended and returns the error
// that sets wait's exit code.
func waitAndPrint(ctx context.Context, e *env, c *client.Client, id string, timeout time.Duration, asJSON bool) error {
	waitCtx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}

	job, err := c.WaitForJob(waitCtx, id)
	if err != nil {
		if ctx.Err() == nil && waitCtx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			if asJSON {
				if err := printJSON(e.stdout, job); err != nil {
					return err
				}
			}
			return &exitError{code: ExitTimeout, message: fmt.Sprintf("timed out after %s waiting for job %s, which is %s; the job carries on", timeout, id, job.Status)}
		}
		return interrupted(ctx, err)
	}

	if asJSON {
		err = printJSON(e.stdout, job)
	} else {
		err = printOutcome(e.stdout, job)
	}
	if err != nil {
		return err
	}

	switch job.Status {
	case messages.StatusCompleted:
		return nil
	case messages.StatusCancelled:
		return &exitError{code: ExitJobCancelled}
	default:
		return &exitError{code: ExitJobFailed}
	}
}

var cancelCommand = &command{
	name:     "cancel",
	synopsis: "[flags] JOB",
	summary:  "Cancel a job.",
	details: `
A pending job is cancelled at once. A running job is asked to stop: the
plugin gets a cancel message, then SIGTERM and SIGKILL if it does not stop in
time. Use jetqueue wait to see it end.`,
	setup: setupCancel,
}

func setupCancel(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	var conn clientFlags
	conn.register(fs, e, "timeout")

	return func(ctx context.Context, args []string) error {
		if len(args) != 1 {
			return usagef("expected one job id, got %d arguments", len(args))
		}
		c, nc, err := conn.open("cancel")
		if err != nil {
			return err
		}
		defer nc.Close()

		job, err := c.Cancel(ctx, args[0])
		if err != nil {
			return interrupted(ctx, err)
		}
		if conn.json {
			return printJSON(e.stdout, job)
		}
		if job.Status == messages.StatusCancelled {
			_, err = fmt.Fprintf(e.stdout, "job %s cancelled\n", job.ID)
			return err
		}
		_, err = fmt.Fprintf(e.stdout, "job %s: cancel requested; it is %s, cancel phase %s\n", job.ID, job.Status, orDash(string(job.CancelPhase)))
		return err
	}
}

var reorderCommand = &command{
	name:     "reorder",
	synopsis: "[flags] JOB PRIORITY",
	summary:  "Set the priority of a pending job.",
	details: `
PRIORITY is an integer within int32; higher runs first. The job keeps its
submission order among the jobs of its new priority.`,
	setup: setupReorder,
}

func setupReorder(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	var conn clientFlags
	conn.register(fs, e, "timeout")

	return func(ctx context.Context, args []string) error {
		if len(args) != 2 {
			return usagef("expected a job id and a priority, got %d arguments", len(args))
		}
		priority, err := strconv.Atoi(args[1])
		if err != nil {
			return usagef("invalid priority %q: expected an integer such as 10 or -5", args[1])
		}
		c, nc, err := conn.open("reorder")
		if err != nil {
			return err
		}
		defer nc.Close()

		job, err := c.Reorder(ctx, args[0], priority)
		if err != nil {
			return interrupted(ctx, err)
		}
		if conn.json {
			return printJSON(e.stdout, job)
		}
		_, err = fmt.Fprintf(e.stdout, "job %s: priority %d\n", job.ID, job.Priority)
		return err
	}
}

var logsCommand = &command{
	name:     "logs",
	synopsis: "[flags] JOB",
	summary:  "Print the log of a job.",
	details: `
Prints the newest lines of the job's log, oldest first: time, source (stdout,
stderr, plugin or worker), level and text. With -f it keeps printing new lines
until the job ends. With --json it prints the lines as one JSON document, or
with -f one JSON object per line.`,
	setup: setupLogs,
}

func setupLogs(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	var conn clientFlags
	conn.register(fs, e, "timeout")
	lines := fs.Int("lines", 100, "how many of the newest lines to print first; -1 prints every line kept, and 0 none, so -f prints only new lines")
	var follow bool
	fs.BoolVar(&follow, "f", false, "follow: print new lines as they arrive until the job ends")
	fs.BoolVar(&follow, "follow", false, "the same as -f")

	return func(ctx context.Context, args []string) error {
		if len(args) != 1 {
			return usagef("expected one job id, got %d arguments", len(args))
		}
		if *lines < -1 {
			return usagef("invalid --lines %d: use a count, or -1 for all", *lines)
		}
		c, nc, err := conn.open("logs")
		if err != nil {
			return err
		}
		defer nc.Close()

		if follow {
			var printErr error
			err := c.FollowLogs(ctx, args[0], *lines, func(line messages.LogLine) {
				if printErr != nil {
					return
				}
				if conn.json {
					printErr = printJSONLine(e.stdout, line)
				} else {
					printErr = printLogLine(e.stdout, line)
				}
			})
			if printErr != nil {
				return printErr
			}
			return interrupted(ctx, err)
		}

		// A count of 0 would take the coordinator's default of 100.
		if *lines == 0 {
			return nil
		}
		reply, err := c.Logs(ctx, args[0], *lines)
		if err != nil {
			return interrupted(ctx, err)
		}
		if conn.json {
			return printJSON(e.stdout, reply)
		}
		for _, line := range reply.Lines {
			if err := printLogLine(e.stdout, line); err != nil {
				return err
			}
		}
		if reply.Truncated {
			fmt.Fprintf(e.stderr, "jetqueue: older lines are not shown: pass --lines -1 for every line kept\n")
		}
		return nil
	}
}

var workersCommand = &command{
	name:     "workers",
	synopsis: "[flags]",
	summary:  "Print the workers and their resources.",
	details: `
Prints one row per worker: status, running jobs and maximum, CPUs, available
and total memory, each GPU with free and total memory, and each plugin with
its busy and warm (idle, loaded) processes. Memory is in MiB.`,
	setup: setupWorkers,
}

func setupWorkers(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	var conn clientFlags
	conn.register(fs, e, "timeout")

	return func(ctx context.Context, args []string) error {
		if len(args) != 0 {
			return usagef("unexpected arguments %q: workers takes none", args)
		}
		c, nc, err := conn.open("workers")
		if err != nil {
			return err
		}
		defer nc.Close()

		workers, err := c.Workers(ctx)
		if err != nil {
			return interrupted(ctx, err)
		}
		if conn.json {
			return printJSON(e.stdout, messages.WorkersReply{Workers: workers})
		}
		return printWorkers(e.stdout, workers, time.Now())
	}
}
