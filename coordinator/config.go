package coordinator

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxAttempts       = 3
	DefaultWorkerLease       = 10 * time.Second
	DefaultDispatchTimeout   = 5 * time.Second
	DefaultProgressInterval  = 250 * time.Millisecond
	DefaultMaxHistory        = 10_000
	DefaultHistoryTTL        = 7 * 24 * time.Hour
	DefaultLogLinesPerJob    = 10_000
	DefaultLogMaxBytes       = 1 << 30
	DefaultLogMaxAge         = 7 * 24 * time.Hour
	DefaultPublishAckTimeout = 10 * time.Second
	DefaultLeaderLease       = 3 * time.Second
	DefaultMaxWorkerLosses   = 3
	DefaultSnapshotEvery     = 50_000
	DefaultSnapshotInterval  = 5 * time.Minute
	DefaultEventRetention    = 24 * time.Hour
)

// Scheduling policies.
const (
	// PolicyStrict starts no job ahead of a waiting higher-priority or
	// earlier job.
	PolicyStrict = "strict"
	// PolicyBackfill lets a job start ahead of waiting ones on resources
	// none of them can use: other workers, CPU slots a GPU job leaves, and
	// never a GPU a waiting job could take.
	PolicyBackfill = "backfill"
)

// Config configures a Coordinator. The zero value of every field but none
// is usable: WithDefaults fills them in.
type Config struct {
	// Name identifies this coordinator in logs and in state replies.
	// Defaults to the host name.
	Name string
	// Prefix is the first token of every subject, so several queues can
	// share one NATS system. Defaults to messages.DefaultPrefix ("jq").
	Prefix string
	// Replicas is the replica count of the JetStream streams: 1 on a single
	// server, 3 on a cluster. Defaults to 1.
	Replicas int
	// MaxPayloadBytes limits args plus kwargs of one job, and one result,
	// in bytes. Defaults to messages.DefaultMaxPayloadBytes (256 KiB).
	MaxPayloadBytes int
	// DefaultMaxAttempts is a job's max_attempts when its submit gives 0.
	// Defaults to 3.
	DefaultMaxAttempts int
	// MaxWorkerLosses is how many lost workers a job may take down with it
	// before it fails instead of being re-queued. Lost workers do not count
	// toward a job's max_attempts. Defaults to 3.
	MaxWorkerLosses int
	// WorkerLease is how long a worker may stay silent before it is
	// declared lost and its jobs are re-queued. Defaults to 10s.
	WorkerLease time.Duration
	// DispatchTimeout is how long a worker has to acknowledge a job sent
	// to it before the job is re-queued. Defaults to 5s.
	DispatchTimeout time.Duration
	// ProgressInterval is the shortest time between two progress events of
	// one job; the latest value wins. Defaults to 250ms.
	ProgressInterval time.Duration
	// MaxHistory is how many finished jobs are kept in state. Defaults to 10,000.
	MaxHistory int
	// HistoryTTL is how long finished jobs are kept in state. Defaults to 7 days.
	HistoryTTL time.Duration
	// LogLinesPerJob caps the lines kept in JQ_LOGS for one job; older lines
	// are dropped first. Defaults to 10,000.
	LogLinesPerJob int64
	// LogMaxBytes caps the JQ_LOGS stream, in bytes. Defaults to 1 GiB.
	LogMaxBytes int64
	// LogMaxAge is how long log lines are kept. Defaults to 7 days.
	LogMaxAge time.Duration
	// PublishAckTimeout bounds the wait for JetStream to acknowledge a
	// write. Defaults to 10s.
	PublishAckTimeout time.Duration
	// LeaderLease is how long the leader lease lasts unless renewed. The
	// leader renews it every third of that, so a standby takes over at most
	// this long after the leader died. Defaults to 3s.
	LeaderLease time.Duration
	// Policy is the scheduling policy, PolicyStrict or PolicyBackfill.
	// Defaults to PolicyStrict.
	Policy string
	// SnapshotEvery is how many journal events trigger a snapshot of the
	// state. Defaults to 50,000.
	SnapshotEvery int
	// SnapshotInterval is the longest time between snapshots while events
	// are written. Defaults to 5m.
	SnapshotInterval time.Duration
	// EventRetention is how long lifecycle events stay in JQ_EVENTS after a
	// snapshot covers them, so apps reading the stream can fall this far
	// behind without missing events. Defaults to 24h.
	EventRetention time.Duration
	// Logger receives the coordinator's logs. Defaults to slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns a copy of c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Name == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "coordinator"
		}
		c.Name = host
	}
	if c.Prefix == "" {
		c.Prefix = messages.DefaultPrefix
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxPayloadBytes == 0 {
		c.MaxPayloadBytes = messages.DefaultMaxPayloadBytes
	}
	if c.DefaultMaxAttempts == 0 {
		c.DefaultMaxAttempts = DefaultMaxAttempts
	}
	if c.MaxWorkerLosses == 0 {
		c.MaxWorkerLosses = DefaultMaxWorkerLosses
	}
	if c.WorkerLease == 0 {
		c.WorkerLease = DefaultWorkerLease
	}
	if c.DispatchTimeout == 0 {
		c.DispatchTimeout = DefaultDispatchTimeout
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	if c.MaxHistory == 0 {
		c.MaxHistory = DefaultMaxHistory
	}
	if c.HistoryTTL == 0 {
		c.HistoryTTL = DefaultHistoryTTL
	}
	if c.LogLinesPerJob == 0 {
		c.LogLinesPerJob = DefaultLogLinesPerJob
	}
	if c.LogMaxBytes == 0 {
		c.LogMaxBytes = DefaultLogMaxBytes
	}
	if c.LogMaxAge == 0 {
		c.LogMaxAge = DefaultLogMaxAge
	}
	if c.PublishAckTimeout == 0 {
		c.PublishAckTimeout = DefaultPublishAckTimeout
	}
	if c.LeaderLease == 0 {
		c.LeaderLease = DefaultLeaderLease
	}
	if c.Policy == "" {
		c.Policy = PolicyStrict
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = DefaultSnapshotEvery
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = DefaultSnapshotInterval
	}
	if c.EventRetention == 0 {
		c.EventRetention = DefaultEventRetention
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// validate checks a Config that WithDefaults has filled in.
func (c Config) validate() error {
	if _, err := messages.NewSubjects(c.Prefix); err != nil {
		return fmt.Errorf("coordinator config: Prefix: %w", err)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("coordinator config: Replicas is %d: use 1 to 5 (3 on a cluster)", c.Replicas)
	}
	if c.MaxPayloadBytes < 0 {
		return fmt.Errorf("coordinator config: MaxPayloadBytes is %d: use a positive byte count", c.MaxPayloadBytes)
	}
	if c.DefaultMaxAttempts < 1 || c.DefaultMaxAttempts > messages.MaxAttemptsLimit {
		return fmt.Errorf("coordinator config: DefaultMaxAttempts is %d: use 1 to %d", c.DefaultMaxAttempts, messages.MaxAttemptsLimit)
	}
	durations := []struct {
		name string
		d    time.Duration
	}{
		{"WorkerLease", c.WorkerLease}, {"DispatchTimeout", c.DispatchTimeout},
		{"ProgressInterval", c.ProgressInterval}, {"HistoryTTL", c.HistoryTTL},
		{"LogMaxAge", c.LogMaxAge}, {"PublishAckTimeout", c.PublishAckTimeout},
		{"LeaderLease", c.LeaderLease}, {"SnapshotInterval", c.SnapshotInterval},
		{"EventRetention", c.EventRetention},
	}
	for _, d := range durations {
		if d.d < 0 {
			return fmt.Errorf("coordinator config: %s is %s: use a positive duration", d.name, d.d)
		}
	}
	if c.Policy != PolicyStrict && c.Policy != PolicyBackfill {
		return fmt.Errorf("coordinator config: Policy is %q: use %q or %q", c.Policy, PolicyStrict, PolicyBackfill)
	}
	if c.SnapshotEvery < 1 {
		return fmt.Errorf("coordinator config: SnapshotEvery is %d: use 1 or more events (default %d)", c.SnapshotEvery, DefaultSnapshotEvery)
	}
	if c.MaxWorkerLosses < 1 {
		return fmt.Errorf("coordinator config: MaxWorkerLosses is %d: use 1 or more (default %d)", c.MaxWorkerLosses, DefaultMaxWorkerLosses)
	}
	if c.LeaderLease < 300*time.Millisecond {
		return fmt.Errorf("coordinator config: LeaderLease is %s: use 300ms or more (default %s)", c.LeaderLease, DefaultLeaderLease)
	}
	if c.MaxHistory < 0 || c.LogLinesPerJob < 0 || c.LogMaxBytes < 0 {
		return fmt.Errorf("coordinator config: MaxHistory, LogLinesPerJob and LogMaxBytes must not be negative")
	}
	return nil
}
