package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"

	"github.com/jetqueue/jetqueue/internal/bench"
)

func init() {
	register(benchCommand)
}

var benchCommand = &command{
	name:     "bench",
	synopsis: "[flags]",
	summary:  "Measure throughput, latency and memory of a queue started in this process.",
	details: `
Starts an embedded nats-server with file storage in a temporary directory on a
free loopback port, a coordinator and --workers workers with in-process no-op
handlers, each on its own TCP connection, and measures: plain JetStream
throughput, submit throughput, end-to-end throughput, start and cancel
latency, heap per pending job, coordinator recovery time and NATS messages per
job. A full run takes a few minutes on two cores; --quick shrinks every count
about ten times. docs/BENCHMARKS.md describes each figure.

With --sweep, it runs only the start latency and end-to-end measurements, once
per worker count, each in a fresh cluster.`,
	setup: setupBench,
}

func setupBench(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	workers := fs.Int("workers", bench.DefaultWorkers, "number of workers, each with its own NATS connection")
	maxJobs := fs.Int("max-jobs", bench.DefaultMaxJobs, "how many jobs each worker runs at once")
	noopHandlers := fs.Int("noop-handlers", 1, "no-op plugins per worker that the e2e jobs go to in turn; a handler runs one job at a time, so this bounds each worker's concurrent e2e jobs")
	quick := fs.Bool("quick", false, "shrink every count about ten times, so the run takes well under a minute")
	phases := fs.String("phases", "", "comma-separated `LIST` of measurements to take: raw, start, cancel, e2e, submit, memory (default: all)")
	sweep := fs.String("sweep", "", "comma-separated worker `COUNTS`, such as 1,2,4,8,16: measure e2e throughput and start latency for each")
	asJSON := fs.Bool("json", false, "print one JSON document instead of a table")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to `FILE`, for go tool pprof")
	dataDir := fs.String("data", "", "`DIR` for the JetStream store (default: a temporary directory, removed afterwards)")
	logLevel := registerLogLevel(fs, "error")

	return func(ctx context.Context, args []string) error {
		if len(args) != 0 {
			return usagef("unexpected arguments %q: bench takes only flags", args)
		}
		logger, err := newLogger(e.stderr, *logLevel)
		if err != nil {
			return err
		}
		cfg := bench.Config{}
		if *quick {
			cfg = bench.Quick()
		}
		cfg.Workers, cfg.MaxJobs, cfg.NoopHandlers = *workers, *maxJobs, *noopHandlers
		cfg.DataDir = *dataDir
		cfg.Logger = logger
		cfg.Progress = e.stderr
		if cfg.Phases, err = bench.ParsePhases(*phases); err != nil {
			return usagef("invalid --phases: %v", err)
		}
		if *workers < 1 || *maxJobs < 1 || *noopHandlers < 1 {
			return usagef("--workers %d, --max-jobs %d and --noop-handlers %d must all be 1 or more", *workers, *maxJobs, *noopHandlers)
		}
		counts, err := parseCounts(*sweep)
		if err != nil {
			return usagef("invalid --sweep: %v", err)
		}

		if *cpuProfile != "" {
			stop, err := startCPUProfile(*cpuProfile)
			if err != nil {
				return err
			}
			defer stop()
		}

		if counts != nil {
			res, err := bench.Sweep(ctx, cfg, counts)
			if err != nil {
				return interrupted(ctx, err)
			}
			if *asJSON {
				return printJSON(e.stdout, res)
			}
			return bench.WriteSweepTable(e.stdout, res)
		}

		res, err := bench.Run(ctx, cfg)
		if err != nil {
			return interrupted(ctx, err)
		}
		if *asJSON {
			return printJSON(e.stdout, res)
		}
		return bench.WriteTable(e.stdout, res)
	}
}

// parseCounts parses a comma-separated list of positive integers. An empty
// list returns nil.
func parseCounts(list string) ([]int, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	var counts []int
	for _, field := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer: give worker counts such as 1,2,4", field)
		}
		counts = append(counts, n)
	}
	return counts, nil
}

// startCPUProfile starts writing a CPU profile to path and returns the
// function that stops it and closes the file.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create CPU profile file given by --cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start the CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
