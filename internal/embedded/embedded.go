// Package embedded starts a nats-server with JetStream inside the current
// process, for `jetqueue serve`, `jetqueue nats`, `jetqueue demo` and tests.
package embedded

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultListen is the address the embedded server listens on by default.
const DefaultListen = "127.0.0.1:4222"

// Options configure an embedded server.
type Options struct {
	// Listen is host:port to accept clients on. Port -1 picks a free port.
	// Defaults to DefaultListen.
	Listen string
	// DataDir is where JetStream stores streams. Required.
	DataDir string
	// ServerName names the server in cluster and monitoring output.
	// Defaults to "jetqueue".
	ServerName string
	// Logger receives the server's notices and errors; nil discards them.
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for the server to accept clients.
	// Defaults to 10s.
	ReadyTimeout time.Duration
}

// Start starts a nats-server with JetStream and returns once it accepts
// clients. Call Shutdown and WaitForShutdown on the result to stop it.
func Start(opts Options) (*server.Server, error) {
	if opts.DataDir == "" {
		return nil, errors.New("embedded nats-server: DataDir is empty: give a directory for JetStream storage")
	}
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	if opts.ServerName == "" {
		opts.ServerName = "jetqueue"
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 10 * time.Second
	}
	host, portText, err := net.SplitHostPort(opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: invalid listen address %q: %w (expected host:port such as 127.0.0.1:4222)", opts.Listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < -1 || port > 65535 {
		return nil, fmt.Errorf("embedded nats-server: invalid port %q in listen address %q: use 0-65535, or -1 for any free port", portText, opts.Listen)
	}

	sopts := &server.Options{
		ServerName: opts.ServerName,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   opts.DataDir,
		NoSigs:     true,
		NoLog:      opts.Logger == nil,
		// The monitoring and cluster ports stay closed.
		HTTPPort: 0,
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	if opts.Logger != nil {
		ns.SetLoggerV2(&slogAdapter{log: opts.Logger}, false, false, false)
	}
	go ns.Start()
	if !ns.ReadyForConnections(opts.ReadyTimeout) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats-server: not ready within %s on %s (is the port in use?)", opts.ReadyTimeout, opts.Listen)
	}
	return ns, nil
}

// slogAdapter forwards the nats-server logger interface to slog.
type slogAdapter struct{ log *slog.Logger }

func (a *slogAdapter) Noticef(format string, v ...any) {
	a.log.Debug(fmt.Sprintf(format, v...), slog.String("component", "nats-server"))
}

func (a *slogAdapter) Warnf(format string, v ...any) {
	a.log.Warn(fmt.Sprintf(format, v...), slog.String("component", "nats-server"))
}

func (a *slogAdapter) Fatalf(format string, v ...any) {
	a.log.Error(fmt.Sprintf(format, v...), slog.String("component", "nats-server"))
}

func (a *slogAdapter) Errorf(format string, v ...any) {
	a.log.Error(fmt.Sprintf(format, v...), slog.String("component", "nats-server"))
}

func (a *slogAdapter) Debugf(format string, v ...any) {}

func (a *slogAdapter) Tracef(format string, v ...any) {}
