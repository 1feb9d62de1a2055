package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// Run starts an embedded nats-server with file storage in a fresh
// directory, a coordinator and cfg.Workers workers with in-process
// handlers, takes the measurements of cfg.Phases in the order of
// AllPhases, and stops everything. The server listens on a free loopback
// port, and every component has its own TCP connection to it.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	res := Result{
		Machine:    DescribeMachine(),
		Versions:   CurrentVersions(),
		Parameters: parametersOf(cfg),
	}

	dataDir, cleanup, err := makeDataDir(cfg.DataDir)
	if err != nil {
		return res, err
	}
	defer cleanup()

	c, err := startCluster(ctx, cfg, dataDir)
	if err != nil {
		return res, fmt.Errorf("start the benchmark cluster: %w", err)
	}
	runErr := runPhases(ctx, c, &res)
	stopErr := c.stop()
	if runErr != nil {
		return res, runErr
	}
	if stopErr != nil {
		return res, fmt.Errorf("stop the benchmark cluster: %w", stopErr)
	}
	return res, nil
}

// runPhases takes the measurements of c.cfg.Phases and stores them in res.
func runPhases(ctx context.Context, c *cluster, res *Result) error {
	cfg := c.cfg
	phase := func(p Phase, fn func() error) error {
		if !cfg.has(p) {
			return nil
		}
		fmt.Fprintf(cfg.Progress, "bench: %s ...\n", p)
		began := time.Now()
		if err := fn(); err != nil {
			return fmt.Errorf("bench phase %s: %w", p, err)
		}
		fmt.Fprintf(cfg.Progress, "bench: %s done in %s\n", p, time.Since(began).Round(time.Millisecond))
		return nil
	}

	err := phase(PhaseRaw, func() (err error) {
		res.RawJetStreamMsgsPerS, err = measureRaw(ctx, c)
		return err
	})
	if err != nil {
		return err
	}

	err = phase(PhaseStart, func() error {
		samples, err := measureStart(ctx, c)
		if err != nil {
			return err
		}
		res.StartLatencyP50US = micros(percentile(samples, 50))
		res.StartLatencyP99US = micros(percentile(samples, 99))
		res.Details.StartLatencyMaxUS = micros(percentile(samples, 100))
		return nil
	})
	if err != nil {
		return err
	}

	err = phase(PhaseCancel, func() error {
		samples, err := measureCancel(ctx, c)
		if err != nil {
			return err
		}
		res.CancelLatencyP99MS = millis(percentile(samples, 99))
		res.Details.CancelLatencyP50MS = millis(percentile(samples, 50))
		return nil
	})
	if err != nil {
		return err
	}

	err = phase(PhaseE2E, func() error {
		e, err := measureE2E(ctx, c)
		if err != nil {
			return err
		}
		res.E2EJobsPerS = e.jobsPerS
		res.NATSMsgsPerJob = e.msgsPerJob
		return nil
	})
	if err != nil {
		return err
	}

	err = phase(PhaseSubmit, func() error {
		s, err := measureSubmit(ctx, c)
		if err != nil {
			return err
		}
		res.Details.SubmitRequestJobsPerS = s.requestJobsPerS
		res.Details.SubmitBatchJobsPerS = s.batchJobsPerS
		res.SubmitJobsPerS, res.Parameters.SubmitMethod = s.requestJobsPerS, "request"
		if s.batchJobsPerS > s.requestJobsPerS {
			res.SubmitJobsPerS, res.Parameters.SubmitMethod = s.batchJobsPerS, "batch"
		}
		return nil
	})
	if err != nil {
		return err
	}

	return phase(PhaseMemory, func() error {
		m, err := measureMemory(ctx, c)
		if err != nil {
			return err
		}
		res.PendingBytesPerJob = m.pendingBytesPerJob
		res.Details.CoordinatorBytesPerJob = m.coordinatorBytesPerJob
		res.RecoveryS = m.recovery.Seconds()
		res.Details.CoordinatorStartS = m.coordinatorStart.Seconds()
		return nil
	})
}

// makeDataDir returns dir, or a new temporary directory and the function
// that removes it.
func makeDataDir(dir string) (string, func(), error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", nil, fmt.Errorf("create data directory %s: %w", dir, err)
		}
		return dir, func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "jetqueue-bench-")
	if err != nil {
		return "", nil, fmt.Errorf("create a temporary data directory: %w", err)
	}
	return tmp, func() { _ = os.RemoveAll(tmp) }, nil
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// SweepPoint is the end-to-end throughput and start latency with one
// number of workers.
type SweepPoint struct {
	Workers           int     `json:"workers"`
	E2EJobsPerS       float64 `json:"e2e_jobs_per_s"`
	StartLatencyP50US float64 `json:"start_latency_p50_us"`
	StartLatencyP99US float64 `json:"start_latency_p99_us"`
	NATSMsgsPerJob    float64 `json:"nats_msgs_per_job"`
}

// SweepResult is the outcome of Sweep.
type SweepResult struct {
	Machine    Machine      `json:"machine"`
	Versions   Versions     `json:"versions"`
	Parameters Parameters   `json:"parameters"`
	Points     []SweepPoint `json:"points"`
}

// Sweep runs the start and e2e phases once per worker count, each in a
// fresh cluster, with the other settings of cfg.
func Sweep(ctx context.Context, cfg Config, workerCounts []int) (SweepResult, error) {
	if len(workerCounts) == 0 {
		return SweepResult{}, errors.New("bench sweep: no worker counts: give at least one, such as 1,2,4")
	}
	cfg = cfg.WithDefaults()
	cfg.Phases = []Phase{PhaseStart, PhaseE2E}
	out := SweepResult{Machine: DescribeMachine(), Versions: CurrentVersions()}
	for _, n := range workerCounts {
		cfg.Workers = n
		fmt.Fprintf(cfg.Progress, "bench: sweep with %d workers\n", n)
		res, err := Run(ctx, cfg)
		if err != nil {
			return out, fmt.Errorf("bench sweep with %d workers: %w", n, err)
		}
		out.Parameters = res.Parameters
		out.Points = append(out.Points, SweepPoint{
			Workers:           n,
			E2EJobsPerS:       res.E2EJobsPerS,
			StartLatencyP50US: res.StartLatencyP50US,
			StartLatencyP99US: res.StartLatencyP99US,
			NATSMsgsPerJob:    res.NATSMsgsPerJob,
		})
	}
	// Each point names its own worker count.
	out.Parameters.Workers = 0
	return out, nil
}
