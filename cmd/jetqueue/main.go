// Command jetqueue runs and uses a jetqueue job queue: `jetqueue serve`
// starts NATS, a coordinator and a worker in one process, and the other
// commands submit and inspect jobs. Run `jetqueue help` for the list.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/jetqueue/jetqueue/internal/cli"
)

func main() {
	// The first SIGINT or SIGTERM ends ctx, which shuts a server down in
	// order. Then stop restores the default handling, so a second signal
	// kills the process at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()

	os.Exit(cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
