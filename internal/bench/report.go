package bench

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Target is a goal for one figure, set for the median of five runs on a
// machine with two cores.
type Target struct {
	Key string
	// AtLeast is true for figures that must reach Value, false for those
	// that must stay at or below it.
	AtLeast bool
	Value   float64
}

// Targets are the goals that docs/BENCHMARKS.md checks the medians
// against. e2e_jobs_per_s must also reach a seventh of
// raw_jetstream_msgs_per_s (RawShareTarget).
var Targets = []Target{
	{Key: "e2e_jobs_per_s", AtLeast: true, Value: 10_000},
	{Key: "submit_jobs_per_s", AtLeast: true, Value: 20_000},
	{Key: "start_latency_p50_us", Value: 1_000},
	{Key: "start_latency_p99_us", Value: 5_000},
	{Key: "cancel_latency_p99_ms", Value: 50},
	{Key: "pending_bytes_per_job", Value: 512},
	{Key: "recovery_s", Value: 5},
}

// RawShareTarget is the least fraction of raw_jetstream_msgs_per_s that
// e2e_jobs_per_s must reach.
const RawShareTarget = 1.0 / 7

// Met reports whether v meets the target.
func (t Target) Met(v float64) bool {
	if t.AtLeast {
		return v >= t.Value
	}
	return v <= t.Value
}

// Describe returns the target as text, such as ">= 10,000".
func (t Target) Describe() string {
	if t.AtLeast {
		return ">= " + FormatNumber(t.Value)
	}
	return "<= " + FormatNumber(t.Value)
}

// Figures returns the nine top-level figures of r by their JSON key.
func (r Result) Figures() map[string]float64 {
	return map[string]float64{
		"raw_jetstream_msgs_per_s": r.RawJetStreamMsgsPerS,
		"submit_jobs_per_s":        r.SubmitJobsPerS,
		"e2e_jobs_per_s":           r.E2EJobsPerS,
		"start_latency_p50_us":     r.StartLatencyP50US,
		"start_latency_p99_us":     r.StartLatencyP99US,
		"cancel_latency_p99_ms":    r.CancelLatencyP99MS,
		"pending_bytes_per_job":    r.PendingBytesPerJob,
		"recovery_s":               r.RecoveryS,
		"nats_msgs_per_job":        r.NATSMsgsPerJob,
	}
}

// figureRows are the rows of the text table: key, label and unit.
var figureRows = []struct{ key, label, unit string }{
	{"raw_jetstream_msgs_per_s", "raw JetStream", "msgs/s"},
	{"submit_jobs_per_s", "submit", "jobs/s"},
	{"e2e_jobs_per_s", "end to end", "jobs/s"},
	{"start_latency_p50_us", "start latency p50", "µs"},
	{"start_latency_p99_us", "start latency p99", "µs"},
	{"cancel_latency_p99_ms", "cancel latency p99", "ms"},
	{"pending_bytes_per_job", "heap per pending job", "bytes"},
	{"recovery_s", "recovery", "s"},
	{"nats_msgs_per_job", "NATS messages per job", "msgs"},
}

// WriteTable writes r as a table for people: each figure that was
// measured, its unit, the target and a note on how it was measured.
func WriteTable(w io.Writer, r Result) error {
	p := r.Parameters
	fmt.Fprintf(w, "jetqueue bench: %d workers of at most %d jobs; %s, %d cores, %.0f%% busy before the start; %s, nats-server %s, nats.go %s\n\n",
		p.Workers, p.MaxJobs, r.Machine.CPUModel, r.Machine.Cores, 100*r.Machine.BusyBeforeStart, r.Versions.Go, r.Versions.NATSServer, r.Versions.NATSGo)

	notes := map[string]string{
		"raw_jetstream_msgs_per_s": fmt.Sprintf("%s messages of %d bytes, %d in flight", FormatNumber(float64(p.RawMessages)), p.RawMessageBytes, p.RawWindow),
		"submit_jobs_per_s": fmt.Sprintf("%s; request %s/s, batch of %d %s/s, %d submitters", p.SubmitMethod,
			FormatNumber(r.Details.SubmitRequestJobsPerS), p.BatchSize, FormatNumber(r.Details.SubmitBatchJobsPerS), p.Submitters),
		"e2e_jobs_per_s":        fmt.Sprintf("%s no-op jobs over %d handlers per worker, first submit to last completion", FormatNumber(float64(p.E2EJobs)), p.NoopHandlers),
		"start_latency_p50_us":  fmt.Sprintf("%d jobs one at a time, submit call to handler start", p.StartSamples),
		"start_latency_p99_us":  fmt.Sprintf("max %s µs", FormatNumber(r.Details.StartLatencyMaxUS)),
		"cancel_latency_p99_ms": fmt.Sprintf("%d running jobs; p50 %s ms", p.CancelSamples, FormatNumber(r.Details.CancelLatencyP50MS)),
		"pending_bytes_per_job": fmt.Sprintf("%s jobs; whole process, of which the coordinator %s", FormatNumber(float64(p.PendingJobs)), FormatNumber(r.Details.CoordinatorBytesPerJob)),
		"recovery_s":            fmt.Sprintf("Stop to first get; the new coordinator's Start %s s", FormatNumber(r.Details.CoordinatorStartS)),
		"nats_msgs_per_job":     "client, coordinator and worker connections, in and out",
	}
	targets := make(map[string]Target, len(Targets))
	for _, t := range Targets {
		targets[t.Key] = t
	}

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tVALUE\tUNIT\tTARGET\tHOW")
	figures := r.Figures()
	for _, row := range figureRows {
		v := figures[row.key]
		if v == 0 {
			continue
		}
		target := "-"
		if t, ok := targets[row.key]; ok {
			target = t.Describe()
			if !t.Met(v) {
				target += " (missed)"
			}
		}
		if row.key == "e2e_jobs_per_s" && r.RawJetStreamMsgsPerS > 0 {
			target += fmt.Sprintf(", raw/7 = %s", FormatNumber(r.RawJetStreamMsgsPerS*RawShareTarget))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", row.label, FormatNumber(v), row.unit, target, notes[row.key])
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "Targets are for the median of five runs on two cores; one run on another machine is only indicative.")
	return tw.Flush()
}

// WriteSweepTable writes a sweep as a table: one row per worker count.
func WriteSweepTable(w io.Writer, s SweepResult) error {
	fmt.Fprintf(w, "jetqueue bench sweep: %s e2e jobs and %d start samples per point; %s, %d cores\n\n",
		FormatNumber(float64(s.Parameters.E2EJobs)), s.Parameters.StartSamples, s.Machine.CPUModel, s.Machine.Cores)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "WORKERS\tE2E JOBS/S\tSTART P50 µs\tSTART P99 µs\tMSGS/JOB\t")
	for _, pt := range s.Points {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t\n", pt.Workers, FormatNumber(pt.E2EJobsPerS),
			FormatNumber(pt.StartLatencyP50US), FormatNumber(pt.StartLatencyP99US), FormatNumber(pt.NATSMsgsPerJob))
	}
	return tw.Flush()
}

// FormatNumber formats v for people: thousands separators, no fraction at
// 100 and above, two significant decimals below.
func FormatNumber(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	abs := math.Abs(v)
	switch {
	case abs >= 100:
		return groupThousands(strconv.FormatFloat(math.Round(v), 'f', 0, 64))
	case abs >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case abs >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 2, 64)
}

// groupThousands inserts commas into a string of digits with an optional sign.
func groupThousands(s string) string {
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return sign + b.String()
}
