package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/jetqueue/jetqueue/internal/bench"
)

// tableRows are the figures of the table, in order, with their units.
var tableRows = []struct{ key, unit string }{
	{"raw_jetstream_msgs_per_s", "msgs/s"},
	{"submit_jobs_per_s", "jobs/s"},
	{"e2e_jobs_per_s", "jobs/s"},
	{"start_latency_p50_us", "µs"},
	{"start_latency_p99_us", "µs"},
	{"cancel_latency_p99_ms", "ms"},
	{"pending_bytes_per_job", "bytes"},
	{"recovery_s", "s"},
	{"nats_msgs_per_job", "msgs"},
}

// writeTable reads full runs of `jetqueue bench --json` and writes a
// Markdown table of the median, minimum and maximum of each figure, with
// its target and whether the median meets it.
func writeTable(w io.Writer, inputs []string) error {
	var runs []bench.Result
	for _, path := range inputs {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var r bench.Result
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("%s is not the JSON of `jetqueue bench --json`: %w", path, err)
		}
		runs = append(runs, r)
	}

	targets := make(map[string]bench.Target)
	for _, t := range bench.Targets {
		targets[t.Key] = t
	}
	medians := make(map[string]float64)

	var b strings.Builder
	fmt.Fprintf(&b, "| figure | median | min | max | unit | target | verdict |\n")
	fmt.Fprintf(&b, "| --- | ---: | ---: | ---: | --- | --- | --- |\n")
	for _, row := range tableRows {
		values := make([]float64, 0, len(runs))
		for _, r := range runs {
			v, ok := r.Figures()[row.key]
			if !ok || v == 0 {
				return fmt.Errorf("a run lacks %s: tabulate full runs only, made without --phases", row.key)
			}
			values = append(values, v)
		}
		s := spreadOf(values)
		medians[row.key] = s.median

		target, verdict := "-", "-"
		if t, ok := targets[row.key]; ok {
			target, verdict = t.Describe(), judge(t, s.median)
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s | %s |\n", row.key,
			bench.FormatNumber(s.median), bench.FormatNumber(s.min), bench.FormatNumber(s.max), row.unit, target, verdict)
	}

	share := bench.Target{Key: "e2e_jobs_per_s", AtLeast: true, Value: medians["raw_jetstream_msgs_per_s"] * bench.RawShareTarget}
	fmt.Fprintf(&b, "| `e2e_jobs_per_s` against raw/7 | %s | | | jobs/s | %s | %s |\n",
		bench.FormatNumber(medians["e2e_jobs_per_s"]), share.Describe(), judge(share, medians["e2e_jobs_per_s"]))
	_, err := io.WriteString(w, b.String())
	return err
}

// judge returns whether v meets t, with v as a percentage of the target.
func judge(t bench.Target, v float64) string {
	ratio := v / t.Value * 100
	if t.Met(v) {
		return fmt.Sprintf("met (%.0f%% of the target)", ratio)
	}
	return fmt.Sprintf("**missed** (%.0f%% of the target)", ratio)
}
