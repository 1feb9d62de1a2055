package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/examples/plugins"
	"github.com/jetqueue/jetqueue/messages"
)

func init() {
	register(demoCommand)
}

var demoCommand = &command{
	name:     "demo",
	synopsis: "[flags]",
	summary:  "Hash Go source directories with jobs at mixed priorities, cancel one, print the results.",
	details: `
Starts NATS, a coordinator and a worker in a temporary directory on a free
loopback port, writes the example plugins there and submits one hash-files
job per directory of --root at mixed priorities. It prints each job's
lifecycle events as they arrive, cancels the job over the largest directory
while it runs, waits for the others and prints a table of the results. It
exits 0 when every job but the cancelled one completed. Needs python3.`,
	setup: setupDemo,
}

// demoDirs are the directories of $GOROOT/src the demo hashes, with their
// priorities. The cancelled job hashes the largest one, so it is still
// running when the cancel arrives.
var demoDirs = []struct {
	name     string
	priority int
}{
	{"cmd", 9},
	{"fmt", 1},
	{"os", 2},
	{"go", 3},
	{"net", 5},
	{"crypto", 4},
	{"runtime", 0},
}

// demoProgressInterval is the shortest time between two progress events of
// one demo job.
const demoProgressInterval = 5 * time.Millisecond

// demoCancelDir names the directory whose job the demo cancels.
const demoCancelDir = "cmd"

// demoJob is one job of the demo.
type demoJob struct {
	id       string
	dir      string
	priority int
	// cancelled is true for the job that the demo cancels.
	cancelled bool
	final     messages.Job
}

func setupDemo(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	root := fs.String("root", "", "`DIR` whose subdirectories are hashed (default: $GOROOT/src)")
	maxJobs := fs.Int("max-jobs", 2, "how many jobs the worker runs at once")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long the whole demo may take before it gives up")
	keep := fs.Bool("keep", false, "keep the temporary directory (data and plugins) and print its path")
	logLevel := registerLogLevel(fs, "warn")

	return func(ctx context.Context, args []string) error {
		if len(args) != 0 {
			return usagef("unexpected arguments %q: demo takes only flags", args)
		}
		if *maxJobs < 1 {
			return usagef("invalid --max-jobs %d: use 1 or more", *maxJobs)
		}
		logger, err := newLogger(e.stderr, *logLevel)
		if err != nil {
			return err
		}
		if *root == "" {
			*root = filepath.Join(goroot(), "src")
		}
		jobs, err := demoJobs(*root)
		if err != nil {
			return err
		}

		runCtx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()

		dir, err := os.MkdirTemp("", "jetqueue-demo-")
		if err != nil {
			return fmt.Errorf("create the demo directory: %w", err)
		}
		if *keep {
			fmt.Fprintf(e.stdout, "demo directory: %s\n", dir)
		} else {
			defer os.RemoveAll(dir)
		}
		pluginsDir := filepath.Join(dir, "plugins")
		if err := writeDemoPlugins(pluginsDir, *maxJobs); err != nil {
			return err
		}

		wf := workerFlags{name: "demo-worker", pluginsDir: pluginsDir, maxJobs: *maxJobs}
		wcfg := wf.config(messages.DefaultPrefix, logger)
		// The demo's jobs take tens of milliseconds, so progress is reported
		// far more often than by default, or none would show.
		wcfg.ProgressInterval = demoProgressInterval
		st, err := startStack(runCtx, stackConfig{
			listen:           "127.0.0.1:-1",
			dataDir:          filepath.Join(dir, "data"),
			prefix:           messages.DefaultPrefix,
			progressInterval: demoProgressInterval,
			worker:           wcfg,
			logger:           logger,
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "jetqueue demo: NATS on %s, worker runs %d jobs at once\n\n", st.server.ClientURL(), *maxJobs)

		runErr := runDemo(runCtx, e.stdout, st, jobs)
		stopErr := st.stop()
		if runErr != nil && ctx.Err() == nil && runCtx.Err() != nil {
			return fmt.Errorf("demo: timed out after %s (--timeout): %w", *timeout, runErr)
		}
		if runErr != nil {
			return interrupted(ctx, runErr)
		}
		return stopErr
	}
}

// runDemo submits the jobs, follows their events, cancels one and prints
// the results. It returns an error when a job other than the cancelled one
// did not complete.
func runDemo(ctx context.Context, out io.Writer, st *stack, jobs []*demoJob) error {
	nc, err := st.connect("jetqueue demo")
	if err != nil {
		return err
	}
	c, err := client.New(nc)
	if err != nil {
		return err
	}

	// The stream is new, so DeliverAll shows every event of the demo, also
	// those published before the watch's consumer exists.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	printer := &eventPrinter{out: out, started: make(chan string, len(jobs))}
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- c.Watch(watchCtx, client.WatchFilter{Plugin: "hash-files", DeliverAll: true}, printer.print)
	}()

	err = submitCancelAndWait(ctx, c, printer, jobs)

	// The final events may still be on their way to the printer.
	if err == nil {
		printer.waitFor(ctx, len(jobs))
	}
	stopWatch()
	if watchErr := <-watchDone; watchErr != nil && !errors.Is(watchErr, watchCtx.Err()) {
		return fmt.Errorf("watch the demo's events: %w", watchErr)
	}
	if err != nil {
		return err
	}

	fmt.Fprintln(out)
	if err := printDemoResults(out, jobs); err != nil {
		return err
	}
	return demoOutcome(jobs)
}

// submitCancelAndWait submits the jobs, cancels the one over demoCancelDir
// once it has started and waits for every job to end.
func submitCancelAndWait(ctx context.Context, c *client.Client, printer *eventPrinter, jobs []*demoJob) error {
	// One batch queues every job before the first dispatch, so the jobs
	// start in priority order.
	reqs := make([]messages.SubmitRequest, len(jobs))
	for i, job := range jobs {
		kwargs, err := messages.NewPayload(map[string]any{"path": job.dir})
		if err != nil {
			return err
		}
		reqs[i] = messages.SubmitRequest{
			PluginName: "hash-files",
			Kwargs:     kwargs,
			Priority:   job.priority,
			Labels:     map[string]string{"dir": filepath.Base(job.dir)},
		}
	}
	results, err := c.SubmitBatch(ctx, reqs)
	if err != nil {
		return err
	}

	var target *demoJob
	for i, job := range jobs {
		if results[i].Error != nil {
			return fmt.Errorf("submit the job over %s: %w", job.dir, results[i].Error)
		}
		job.id = results[i].ID
		if filepath.Base(job.dir) == demoCancelDir {
			target = job
		}
	}

	if target != nil {
		if err := cancelWhenStarted(ctx, c, printer, target); err != nil {
			return err
		}
	}
	for _, job := range jobs {
		final, err := c.WaitForJob(ctx, job.id)
		if err != nil {
			return err
		}
		job.final = final
	}
	return nil
}

// cancelWhenStarted cancels target once its started event arrives.
func cancelWhenStarted(ctx context.Context, c *client.Client, printer *eventPrinter, target *demoJob) error {
	target.cancelled = true
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case id := <-printer.started:
			if id != target.id {
				continue
			}
			job, err := c.Cancel(ctx, target.id)
			if errors.Is(err, &messages.Error{Code: messages.CodeConflict}) {
				printer.printf("  %-16s %-8s the job ended before the cancel arrived\n", "cancel", demoCancelDir)
				return nil
			}
			if err != nil {
				return err
			}
			printer.printf("  %-16s %-8s requested while the job is %s\n", "cancel", demoCancelDir, job.Status)
			return nil
		}
	}
}

// demoOutcome returns an error naming the jobs, other than the cancelled
// one, that did not complete.
func demoOutcome(jobs []*demoJob) error {
	var failed []string
	for _, job := range jobs {
		if !job.cancelled && job.final.Status != messages.StatusCompleted {
			failed = append(failed, fmt.Sprintf("%s (%s)", filepath.Base(job.dir), job.final.Status))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("demo: jobs that did not complete: %s", strings.Join(failed, ", "))
	}
	return nil
}

// eventPrinter prints the lifecycle events of the demo's jobs.
type eventPrinter struct {
	out     io.Writer
	started chan string // receives the id of each job that starts

	mu       sync.Mutex
	shown    map[string]float64 // the last progress printed, per job
	finished int
	changed  chan struct{}
}

// printf writes one line under the printer's lock, so it does not mix with
// the event lines.
func (p *eventPrinter) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, format, args...)
}

func (p *eventPrinter) print(ev messages.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown == nil {
		p.shown = map[string]float64{}
	}
	dir := ev.Job.Labels["dir"]

	switch ev.Kind {
	case messages.EventSubmitted:
		fmt.Fprintf(p.out, "  %-16s %-8s priority %d, job %s\n", ev.Kind, dir, ev.Job.Priority, ev.Job.ID)
	case messages.EventStarted:
		fmt.Fprintf(p.out, "  %-16s %-8s on %s\n", ev.Kind, dir, ev.Job.Worker)
		select {
		case p.started <- ev.Job.ID:
		default:
		}
	case messages.EventProgress:
		// One line per quarter of the work keeps the output short.
		if ev.Job.Progress >= 0 && ev.Job.Progress-p.shown[ev.Job.ID] >= 0.25 {
			p.shown[ev.Job.ID] = ev.Job.Progress
			fmt.Fprintf(p.out, "  %-16s %-8s %s %s\n", ev.Kind, dir, formatProgress(ev.Job.Progress), ev.Job.StatusMessage)
		}
	case messages.EventCompleted:
		files, bytes := resultCounts(ev.Job)
		fmt.Fprintf(p.out, "  %-16s %-8s %s files, %s bytes\n", ev.Kind, dir, files, bytes)
		p.markFinished()
	case messages.EventFailed, messages.EventCancelled:
		fmt.Fprintf(p.out, "  %-16s %-8s %s\n", ev.Kind, dir, firstLine(ev.Job.Error))
		p.markFinished()
	case messages.EventCancelRequested:
		fmt.Fprintf(p.out, "  %-16s %-8s phase %s\n", ev.Kind, dir, ev.Job.CancelPhase)
	default:
		fmt.Fprintf(p.out, "  %-16s %-8s %s\n", ev.Kind, dir, ev.Job.StatusMessage)
	}
	return nil
}

// markFinished counts a final event and wakes waitFor. The caller holds mu.
func (p *eventPrinter) markFinished() {
	p.finished++
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
}

// resultCounts returns the file and byte counts of a hash-files result, or
// "-" for each when the result has none.
func resultCounts(job messages.Job) (files, bytes string) {
	v, err := job.Result.Value()
	m, ok := v.(map[string]any)
	if err != nil || !ok {
		return "-", "-"
	}
	return fmt.Sprint(m["files"]), fmt.Sprint(m["bytes"])
}

// waitFor returns once n final events were printed, or ctx ends.
func (p *eventPrinter) waitFor(ctx context.Context, n int) {
	for {
		p.mu.Lock()
		if p.finished >= n {
			p.mu.Unlock()
			return
		}
		if p.changed == nil {
			p.changed = make(chan struct{})
		}
		changed := p.changed
		p.mu.Unlock()

		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

func printDemoResults(w io.Writer, jobs []*demoJob) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tDIR\tPRIORITY\tSTATUS\tFILES\tBYTES\tTIME")
	for _, job := range jobs {
		files, bytes := resultCounts(job.final)
		took := "-"
		if d, ok := runTime(job.final, time.Now()); ok {
			took = formatDuration(d)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", job.id, filepath.Base(job.dir), job.priority, job.final.Status, files, bytes, took)
	}
	return tw.Flush()
}

// demoJobs returns one job per directory of demoDirs that exists under root.
func demoJobs(root string) ([]*demoJob, error) {
	var jobs []*demoJob
	for _, d := range demoDirs {
		dir := filepath.Join(root, d.name)
		if info, err := os.Stat(dir); err != nil || !info.IsDir() {
			continue
		}
		jobs = append(jobs, &demoJob{dir: dir, priority: d.priority})
	}
	if len(jobs) == 0 {
		return nil, usagef("no Go source directories (cmd, fmt, os, go, net, crypto, runtime) under %s: pass --root DIR", root)
	}
	return jobs, nil
}

// writeDemoPlugins writes the example plugins into dir and lets hash-files
// run maxJobs jobs at once.
func writeDemoPlugins(dir string, maxJobs int) error {
	if err := plugins.WriteTo(dir); err != nil {
		return err
	}

	path := filepath.Join(dir, "hash-files.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read the hash-files manifest: %w", err)
	}
	var manifest map[string]any
	if err := json.Unmarshal(data, &manifest); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	manifest["instances"] = maxJobs
	data, err = json.MarshalIndent(manifest, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// goroot returns the Go root: $GOROOT, else `go env GOROOT`, else the root
// this program was built with.
func goroot() string {
	if dir := os.Getenv("GOROOT"); dir != "" {
		return dir
	}
	if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); dir != "" {
			return dir
		}
	}
	// runtime.GOROOT is deprecated, but it is the only source left when
	// the go command is missing.
	return runtime.GOROOT()
}
