package cli

import (
	"context"
	"flag"
	"fmt"
)

var drainCommand = &command{
	name:     "drain",
	synopsis: "[flags] WORKER",
	summary:  "Send no new jobs to a worker; its running jobs finish.",
	details: `
The drain is stored with the queue, so it outlives coordinator restarts and
also applies to a worker that connects later. Undo it with jetqueue undrain.`,
	setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error { return setupDrain(fs, e, true) },
}

var undrainCommand = &command{
	name:     "undrain",
	synopsis: "[flags] WORKER",
	summary:  "Send jobs to a drained worker again.",
	setup:    func(fs *flag.FlagSet, e *env) func(context.Context, []string) error { return setupDrain(fs, e, false) },
}

func init() {
	register(drainCommand, undrainCommand)
}

func setupDrain(fs *flag.FlagSet, e *env, drain bool) func(context.Context, []string) error {
	var conn clientFlags
	conn.register(fs, e, "timeout")
	name := "undrain"
	if drain {
		name = "drain"
	}

	return func(ctx context.Context, args []string) error {
		if len(args) != 1 {
			return usagef("expected one worker name, got %d arguments", len(args))
		}
		c, nc, err := conn.open(name)
		if err != nil {
			return err
		}
		defer nc.Close()

		w, err := c.Drain(ctx, args[0], drain)
		if err != nil {
			return interrupted(ctx, err)
		}
		if conn.json {
			return printJSON(e.stdout, w)
		}
		_, err = fmt.Fprintf(e.stdout, "worker %s is %s with %d running jobs\n", args[0], w.Status, len(w.Jobs))
		return err
	}
}
