package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/messages"
)

// DefaultNATSURL is the server that commands connect to unless --nats or
// JETQUEUE_NATS names another.
const DefaultNATSURL = "nats://127.0.0.1:4222"

// parseInterspersed parses fs from args, where flags and positional
// arguments may come in any order, and returns the positional arguments.
// "--" ends the flags, and a negative number such as -5 is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var flagArgs, positional []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--":
			positional = append(positional, args[i+1:]...)
			i = len(args)
		case !strings.HasPrefix(arg, "-") || arg == "-" || isNumber(arg):
			positional = append(positional, arg)
		default:
			flagArgs = append(flagArgs, arg)
			if takesValue(fs, arg) && i+1 < len(args) {
				i++
				flagArgs = append(flagArgs, args[i])
			}
		}
	}

	if err := fs.Parse(flagArgs); err != nil {
		return nil, err
	}
	return positional, nil
}

// takesValue reports whether arg names a flag of fs that reads the next
// argument as its value: a defined, non-boolean flag without "=value".
func takesValue(fs *flag.FlagSet, arg string) bool {
	name := strings.TrimLeft(arg, "-")
	if strings.Contains(name, "=") {
		return false
	}
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return false
	}
	return true
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// envDefault returns the environment variable key, or fallback when it is
// unset or empty.
func envDefault(e *env, key, fallback string) string {
	if v := e.getenv(key); v != "" {
		return v
	}
	return fallback
}

// connectionFlagNames are the flags that connFlags registers, listed apart
// in the help text.
var connectionFlagNames = map[string]bool{
	"nats": true, "prefix": true, "creds": true, "nkey": true, "user": true,
	"password": true, "token": true, "tls-ca": true, "tls-cert": true, "tls-key": true,
}

// connFlags are the flags that set how to reach NATS and which queue to
// use.
type connFlags struct {
	url      string
	prefix   string
	creds    string
	nkey     string
	user     string
	password string
	token    string
	tlsCA    string
	tlsCert  string
	tlsKey   string
}

func (c *connFlags) register(fs *flag.FlagSet, e *env) {
	fs.StringVar(&c.url, "nats", envDefault(e, "JETQUEUE_NATS", DefaultNATSURL), "NATS server `URL`; several URLs are separated by commas (env JETQUEUE_NATS)")
	fs.StringVar(&c.prefix, "prefix", envDefault(e, "JETQUEUE_PREFIX", messages.DefaultPrefix), "subject `PREFIX` of the queue: the first token of its subjects, so queues can share NATS (env JETQUEUE_PREFIX)")
	fs.StringVar(&c.creds, "creds", envDefault(e, "JETQUEUE_CREDS", ""), "NATS credentials `FILE` with a user JWT and NKey seed (env JETQUEUE_CREDS)")
	fs.StringVar(&c.nkey, "nkey", envDefault(e, "JETQUEUE_NKEY", ""), "NKey seed `FILE` to authenticate with (env JETQUEUE_NKEY)")
	fs.StringVar(&c.user, "user", envDefault(e, "JETQUEUE_USER", ""), "user `NAME` to authenticate with (env JETQUEUE_USER)")
	fs.StringVar(&c.password, "password", envDefault(e, "JETQUEUE_PASSWORD", ""), "`PASSWORD` for --user; prefer the environment variable, which ps does not show (env JETQUEUE_PASSWORD)")
	fs.StringVar(&c.token, "token", envDefault(e, "JETQUEUE_TOKEN", ""), "authentication `TOKEN` (env JETQUEUE_TOKEN)")
	fs.StringVar(&c.tlsCA, "tls-ca", envDefault(e, "JETQUEUE_TLS_CA", ""), "PEM `FILE` of the CAs that verify the server (env JETQUEUE_TLS_CA)")
	fs.StringVar(&c.tlsCert, "tls-cert", envDefault(e, "JETQUEUE_TLS_CERT", ""), "client certificate PEM `FILE`; needs --tls-key (env JETQUEUE_TLS_CERT)")
	fs.StringVar(&c.tlsKey, "tls-key", envDefault(e, "JETQUEUE_TLS_KEY", ""), "client private key PEM `FILE`; needs --tls-cert (env JETQUEUE_TLS_KEY)")
}

// options returns the nats.Connect options that the flags ask for.
func (c *connFlags) options(name string) ([]nats.Option, error) {
	opts := []nats.Option{nats.Name(name)}
	if c.creds != "" {
		opts = append(opts, nats.UserCredentials(c.creds))
	}
	if c.nkey != "" {
		opt, err := nats.NkeyOptionFromSeed(c.nkey)
		if err != nil {
			return nil, fmt.Errorf("read NKey seed file %s given by --nkey: %w", c.nkey, err)
		}
		opts = append(opts, opt)
	}
	if c.user != "" || c.password != "" {
		if c.user == "" {
			return nil, usagef("--password is set without --user: give both")
		}
		opts = append(opts, nats.UserInfo(c.user, c.password))
	}
	if c.token != "" {
		opts = append(opts, nats.Token(c.token))
	}
	if c.tlsCA != "" {
		opts = append(opts, nats.RootCAs(c.tlsCA))
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return nil, usagef("--tls-cert and --tls-key go together: give both or neither")
	}
	if c.tlsCert != "" {
		opts = append(opts, nats.ClientCert(c.tlsCert, c.tlsKey))
	}
	return opts, nil
}

// connect opens a connection to NATS with the flags' options plus extra.
func (c *connFlags) connect(name string, extra ...nats.Option) (*nats.Conn, error) {
	if _, err := messages.NewSubjects(c.prefix); err != nil {
		return nil, usagef("invalid --prefix: %v", err)
	}
	opts, err := c.options(name)
	if err != nil {
		return nil, err
	}

	nc, err := nats.Connect(c.url, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w: start a server with `jetqueue serve`, or pass --nats URL (env JETQUEUE_NATS)", c.url, err)
	}
	return nc, nil
}

// clientFlags are the connection flags of the commands that call the
// coordinator, plus the request timeout and --json.
type clientFlags struct {
	connFlags
	timeout time.Duration
	json    bool
}

// register adds the flags. timeoutFlag names the request timeout flag:
// "timeout", or "request-timeout" for commands whose --timeout bounds a wait.
func (c *clientFlags) register(fs *flag.FlagSet, e *env, timeoutFlag string) {
	c.connFlags.register(fs, e)
	fs.DurationVar(&c.timeout, timeoutFlag, client.DefaultTimeout, "how long each request waits for the coordinator's reply, and the connect timeout")
	fs.BoolVar(&c.json, "json", false, "print one JSON document instead of text")
}

// open connects to NATS and returns a client of the queue. Close the
// connection when done.
func (c *clientFlags) open(command string) (*client.Client, *nats.Conn, error) {
	if c.timeout <= 0 {
		return nil, nil, usagef("the request timeout %s is not positive: give a duration such as 5s", c.timeout)
	}
	nc, err := c.connect("jetqueue "+command, nats.Timeout(c.timeout))
	if err != nil {
		return nil, nil, err
	}

	// Requests are retried through a failover for as long as one request may take.
	cl, err := client.New(nc, client.WithPrefix(c.prefix), client.WithTimeout(c.timeout), client.WithRetry(c.timeout))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return cl, nc, nil
}

// labelsFlag collects repeated --label k=v flags.
type labelsFlag map[string]string

func (l labelsFlag) String() string {
	pairs := make([]string, 0, len(l))
	for k, v := range l {
		pairs = append(pairs, k+"="+v)
	}
	return strings.Join(pairs, ",")
}

func (l labelsFlag) Set(s string) error {
	key, value, ok := strings.Cut(s, "=")
	if !ok || key == "" {
		return errors.New("expected KEY=VALUE with a non-empty key")
	}
	l[key] = value
	return nil
}

// interrupted turns an error caused by the end of ctx into a plain message,
// so Ctrl-C does not print a context error.
func interrupted(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return errors.New("interrupted")
	}
	return err
}
