package bench

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
)

// Phase names one group of measurements that Run can take.
type Phase string

// Phases of a run, in the order Run takes them.
const (
	// PhaseRaw measures plain JetStream: raw_jetstream_msgs_per_s.
	PhaseRaw Phase = "raw"
	// PhaseStart measures the submit-to-start latency on an idle queue:
	// start_latency_p50_us and start_latency_p99_us.
	PhaseStart Phase = "start"
	// PhaseCancel measures the cancel-to-cancelled latency:
	// cancel_latency_p99_ms.
	PhaseCancel Phase = "cancel"
	// PhaseE2E measures throughput from submit to completion, and the NATS
	// messages per job: e2e_jobs_per_s and nats_msgs_per_job.
	PhaseE2E Phase = "e2e"
	// PhaseSubmit measures how fast a coordinator acknowledges submits:
	// submit_jobs_per_s.
	PhaseSubmit Phase = "submit"
	// PhaseMemory measures the coordinator's heap per pending job and its
	// restart time: pending_bytes_per_job and recovery_s.
	PhaseMemory Phase = "memory"
)

// AllPhases lists every phase in the order Run takes them.
var AllPhases = []Phase{PhaseRaw, PhaseStart, PhaseCancel, PhaseE2E, PhaseSubmit, PhaseMemory}

// ParsePhases parses a comma-separated list of phase names, such as
// "e2e,start". An empty list selects every phase.
func ParsePhases(list string) ([]Phase, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	var phases []Phase
	for _, name := range strings.Split(list, ",") {
		p := Phase(strings.TrimSpace(name))
		if !slices.Contains(AllPhases, p) {
			return nil, fmt.Errorf("unknown phase %q: use raw, start, cancel, e2e, submit or memory", name)
		}
		if !slices.Contains(phases, p) {
			phases = append(phases, p)
		}
	}
	return phases, nil
}

// Defaults for Config fields left zero: the full run that
// docs/BENCHMARKS.md records.
const (
	DefaultWorkers         = 2
	DefaultMaxJobs         = 64
	DefaultRawMessages     = 200_000
	DefaultRawMessageBytes = 256
	DefaultRawWindow       = 1024
	DefaultSubmitJobs      = 20_000
	DefaultSubmitters      = 16
	DefaultBatchSize       = 100
	DefaultE2EJobs         = 20_000
	DefaultStartSamples    = 500
	DefaultCancelSamples   = 200
	DefaultPendingJobs     = 100_000
)

// Config sets the size of a run. The zero value runs the full benchmark,
// and Quick and Tiny return smaller runs.
type Config struct {
	// Workers is the number of workers, each with its own NATS connection.
	// Defaults to DefaultWorkers (2).
	Workers int
	// MaxJobs is each worker's limit of jobs running at once. Defaults to
	// DefaultMaxJobs (64).
	MaxJobs int
	// NoopHandlers is the number of no-op plugins each worker registers for
	// the end-to-end jobs, which go to them in turn. An in-process handler
	// runs one job at a time (worker.Handle), so this bounds the jobs each
	// worker runs at once, up to MaxJobs. Defaults to 1.
	NoopHandlers int
	// RawMessages is the number of messages of the raw JetStream
	// measurement. Defaults to 200,000.
	RawMessages int
	// RawMessageBytes is the size of each raw message. Defaults to 256.
	RawMessageBytes int
	// RawWindow bounds the raw publishes awaiting their acknowledgement.
	// Defaults to 1,024.
	RawWindow int
	// SubmitJobs is the number of jobs submitted with each of the two
	// submit methods. Defaults to 20,000.
	SubmitJobs int
	// Submitters is the number of goroutines that submit at once, each
	// waiting for its reply before the next request. Defaults to 16.
	Submitters int
	// BatchSize is the number of jobs per submit_batch request, in the
	// submit and end-to-end measurements. Defaults to 100.
	BatchSize int
	// E2EJobs is the number of no-op jobs of the end-to-end measurement.
	// Defaults to 20,000.
	E2EJobs int
	// StartSamples is the number of jobs timed from submit to handler
	// start, one at a time. Defaults to 500.
	StartSamples int
	// CancelSamples is the number of running jobs timed from the cancel
	// request to their cancelled event. Defaults to 200.
	CancelSamples int
	// PendingJobs is the number of pending jobs of the memory and recovery
	// measurement. Defaults to 100,000.
	PendingJobs int
	// Phases selects the measurements to take. Empty takes all of them.
	Phases []Phase
	// DataDir is the JetStream store directory. Empty makes a temporary
	// directory and removes it at the end of the run.
	DataDir string
	// Logger receives the logs of the server, coordinators and workers.
	// Defaults to a logger that discards them.
	Logger *slog.Logger
	// Progress receives one line as each phase starts and ends, for people
	// watching a long run. Nil writes nothing.
	Progress io.Writer
}

// Quick returns a Config whose run takes well under a minute on two cores:
// every count shrinks by about ten times.
func Quick() Config {
	return Config{
		RawMessages:   20_000,
		SubmitJobs:    2_000,
		E2EJobs:       2_000,
		StartSamples:  100,
		CancelSamples: 30,
		PendingJobs:   10_000,
	}
}

// Tiny returns a Config for tests: a few seconds, figures too noisy to
// compare.
func Tiny() Config {
	return Config{
		RawMessages:   500,
		RawWindow:     64,
		SubmitJobs:    200,
		Submitters:    4,
		BatchSize:     20,
		E2EJobs:       200,
		StartSamples:  10,
		CancelSamples: 5,
		PendingJobs:   500,
	}
}

// WithDefaults returns a copy of c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	set(&c.Workers, DefaultWorkers)
	set(&c.MaxJobs, DefaultMaxJobs)
	set(&c.NoopHandlers, 1)
	set(&c.RawMessages, DefaultRawMessages)
	set(&c.RawMessageBytes, DefaultRawMessageBytes)
	set(&c.RawWindow, DefaultRawWindow)
	set(&c.SubmitJobs, DefaultSubmitJobs)
	set(&c.Submitters, DefaultSubmitters)
	set(&c.BatchSize, DefaultBatchSize)
	set(&c.E2EJobs, DefaultE2EJobs)
	set(&c.StartSamples, DefaultStartSamples)
	set(&c.CancelSamples, DefaultCancelSamples)
	set(&c.PendingJobs, DefaultPendingJobs)
	if len(c.Phases) == 0 {
		c.Phases = AllPhases
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return c
}

// validate checks a Config that WithDefaults has filled in.
func (c Config) validate() error {
	counts := []struct {
		name  string
		value int
	}{
		{"Workers", c.Workers}, {"MaxJobs", c.MaxJobs}, {"NoopHandlers", c.NoopHandlers}, {"RawMessages", c.RawMessages},
		{"RawMessageBytes", c.RawMessageBytes}, {"RawWindow", c.RawWindow}, {"SubmitJobs", c.SubmitJobs},
		{"Submitters", c.Submitters}, {"BatchSize", c.BatchSize}, {"E2EJobs", c.E2EJobs},
		{"StartSamples", c.StartSamples}, {"CancelSamples", c.CancelSamples}, {"PendingJobs", c.PendingJobs},
	}
	for _, n := range counts {
		if n.value < 1 {
			return fmt.Errorf("bench config: %s is %d: use 1 or more", n.name, n.value)
		}
	}
	if c.BatchSize > maxBatchSize {
		return fmt.Errorf("bench config: BatchSize is %d: the coordinator accepts at most %d jobs per batch", c.BatchSize, maxBatchSize)
	}
	return nil
}

// maxBatchSize is the coordinator's limit of jobs per submit_batch request.
const maxBatchSize = 10_000

func (c Config) has(p Phase) bool { return slices.Contains(c.Phases, p) }
