// Command subscriber reacts to the completed jobs of one jetqueue plugin. It
// reads the plugin's completed events from the JQ_EVENTS stream through a
// durable JetStream consumer, prints one JSON line per completed job, and can
// submit a follow-up job for each one:
//
//	subscriber --plugin compress --follow-up hash-files --map path=dst
//
// checksums every gzip file that a compress job writes: the follow-up
// hash-files job gets the kwarg path set to the "dst" field of the compress
// job's result.
//
// The consumer lives on the NATS server under the name --durable, so the
// subscriber can stop, crash or restart without missing a completion:
// events stored while it was down arrive when it starts again. That holds
// while it is down for less than the coordinator's EventRetention (24h by
// default), after which the coordinator purges old events. Each event is
// acknowledged after it is handled, so delivery is at least once: an event
// that was handled but not yet acknowledged when the process died arrives
// again once the consumer's ack wait (30s) has passed since its delivery.
// Follow-up submits carry the idempotency key "<durable>-<job id>", so such
// a repeat never queues a second follow-up.
//
// The subscriber stops on SIGINT or SIGTERM. Delete a consumer that is no
// longer needed, for example with `nats consumer rm JQ_EVENTS NAME`: the
// server keeps it, and its place in the stream, until then.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/messages"
)

// defaultNATSURL is the server the subscriber connects to unless --nats or
// JETQUEUE_NATS names another.
const defaultNATSURL = "nats://127.0.0.1:4222"

func main() {
	os.Exit(runMain())
}

// runMain runs the subscriber and returns its exit status: 0 after SIGINT
// or SIGTERM, 1 when it fails, 2 for an invalid command line.
func runMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := parseFlags(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "subscriber: %v\n", err)
		return 2
	}

	if err := run(ctx, cfg, os.Stdout, logger); err != nil {
		logger.Error("subscriber stopped", "error", err)
		return 1
	}
	return 0
}

// config is the subscriber's command line.
type config struct {
	natsURL  string
	prefix   string
	plugin   string
	durable  string
	deliver  string
	followUp string
	// fieldMap maps a follow-up kwarg to a field of the completed job's
	// result.
	fieldMap map[string]string
}

// mapFlag collects repeated --map KEY=FIELD flags.
type mapFlag map[string]string

func (m mapFlag) String() string { return fmt.Sprint(map[string]string(m)) }

func (m mapFlag) Set(value string) error {
	key, field, ok := strings.Cut(value, "=")
	if !ok || key == "" || field == "" {
		return fmt.Errorf("%q is not KEY=FIELD: use for example path=dst", value)
	}
	m[key] = field
	return nil
}

// parseFlags reads the command line. getenv supplies JETQUEUE_NATS and
// JETQUEUE_PREFIX, the defaults of --nats and --prefix.
func parseFlags(args []string, getenv func(string) string, output io.Writer) (config, error) {
	fs := flag.NewFlagSet("subscriber", flag.ContinueOnError)
	fs.SetOutput(output)

	natsDefault := getenv("JETQUEUE_NATS")
	if natsDefault == "" {
		natsDefault = defaultNATSURL
	}
	prefixDefault := getenv("JETQUEUE_PREFIX")
	if prefixDefault == "" {
		prefixDefault = messages.DefaultPrefix
	}

	cfg := config{fieldMap: mapFlag{}}
	fs.StringVar(&cfg.natsURL, "nats", natsDefault, "`URL` of the NATS server (env JETQUEUE_NATS)")
	fs.StringVar(&cfg.prefix, "prefix", prefixDefault, "subject `PREFIX` of the queue (env JETQUEUE_PREFIX)")
	fs.StringVar(&cfg.plugin, "plugin", "hash-files", "react to completed jobs of this `PLUGIN`")
	fs.StringVar(&cfg.durable, "durable", "", "`NAME` of the durable consumer, kept on the server across restarts (default subscriber-PLUGIN)")
	fs.StringVar(&cfg.deliver, "deliver", "all", "where a new consumer starts: all (every completion stored) or new (completions from now on); fixed when the consumer is created")
	fs.StringVar(&cfg.followUp, "follow-up", "", "submit a job of `PLUGIN` for every completed job (default: only print)")
	fs.Var(mapFlag(cfg.fieldMap), "map", "follow-up kwarg `KEY=FIELD`: set KEY to the FIELD of the completed job's result; repeat for several")

	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q: the subscriber takes only flags", fs.Args())
	}
	if cfg.durable == "" {
		cfg.durable = "subscriber-" + cfg.plugin
	}
	return cfg, cfg.validate()
}

func (c config) validate() error {
	if _, err := messages.NewSubjects(c.prefix); err != nil {
		return fmt.Errorf("--prefix: %w", err)
	}
	if err := messages.ValidateToken("--plugin", c.plugin); err != nil {
		return err
	}
	if err := messages.ValidateToken("--durable", c.durable); err != nil {
		return err
	}
	if c.deliver != "all" && c.deliver != "new" {
		return fmt.Errorf("--deliver %q is invalid: use all or new", c.deliver)
	}
	if c.followUp != "" {
		if err := messages.ValidateToken("--follow-up", c.followUp); err != nil {
			return err
		}
	}
	if c.followUp == "" && len(c.fieldMap) > 0 {
		return errors.New("--map needs --follow-up: name the plugin that the mapped kwargs go to")
	}
	return nil
}

// run handles completed events until ctx ends; then it returns nil.
func run(ctx context.Context, cfg config, out io.Writer, logger *slog.Logger) error {
	nc, err := nats.Connect(cfg.natsURL,
		nats.Name("jetqueue subscriber "+cfg.durable),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// A nil error means the subscriber closed the connection itself.
			if err != nil {
				logger.Warn("disconnected from NATS; reconnecting", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("reconnected to NATS", "url", nc.ConnectedUrl())
		}),
	)
	if err != nil {
		return fmt.Errorf("connect to %s: %w: start a server with `jetqueue serve`, or pass --nats", cfg.natsURL, err)
	}
	defer nc.Close()

	jq, err := client.New(nc, client.WithPrefix(cfg.prefix))
	if err != nil {
		return err
	}
	s := &subscriber{cfg: cfg, jq: jq, out: out, log: logger}
	return s.consume(ctx, nc)
}
