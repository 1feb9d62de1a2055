package main

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetqueue/jetqueue/internal/bench"
)

func sweep(e2e ...float64) bench.SweepResult {
	s := bench.SweepResult{Machine: bench.Machine{Cores: 2, CPUModel: "Test CPU"}}
	for i, v := range e2e {
		s.Points = append(s.Points, bench.SweepPoint{Workers: 1 << i, E2EJobsPerS: v, StartLatencyP50US: 100, StartLatencyP99US: 400})
	}
	return s
}

func TestSummarizeMedianMinMax(t *testing.T) {
	points, err := summarize([]bench.SweepResult{sweep(10, 30), sweep(30, 10), sweep(20, 20)})
	if err != nil {
		t.Fatalf("summarize: %v", err)
	}
	if len(points) != 2 {
		t.Fatalf("%d points, want 2", len(points))
	}
	want := spread{median: 20, min: 10, max: 30}
	if points[0].e2e != want || points[1].e2e != want {
		t.Errorf("e2e spreads = %+v and %+v, want %+v", points[0].e2e, points[1].e2e, want)
	}
	if points[1].workers != 2 {
		t.Errorf("second point has %d workers, want 2", points[1].workers)
	}
}

func TestSummarizeRejectsDifferentCounts(t *testing.T) {
	_, err := summarize([]bench.SweepResult{sweep(1, 2), sweep(1, 2, 3)})
	if err == nil || !strings.Contains(err.Error(), "different worker counts") {
		t.Errorf("error = %v, want one about different worker counts", err)
	}
}

func TestNiceTicks(t *testing.T) {
	cases := []struct {
		max   float64
		step  float64
		ticks int
	}{
		{4321, 1000, 5},
		{480, 100, 5},
		{9.5, 2, 5},
		{0, 1, 1},
	}
	for _, c := range cases {
		step, ticks := niceTicks(c.max)
		if step != c.step || ticks != c.ticks {
			t.Errorf("niceTicks(%v) = %v, %d; want %v, %d", c.max, step, ticks, c.step, c.ticks)
		}
	}
}

func TestRunWritesWellFormedSVG(t *testing.T) {
	dir := t.TempDir()
	var inputs []string
	for i, s := range []bench.SweepResult{sweep(1000, 1800, 2500), sweep(1100, 1700, 2600)} {
		data, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "sweep-"+string(rune('a'+i))+".json")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, path)
	}
	out := filepath.Join(dir, "chart.svg")
	if err := run(out, false, inputs); err != nil {
		t.Fatalf("run: %v", err)
	}

	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(strings.NewReader(string(data)))
	polylines := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v", err)
		}
		if el, ok := tok.(xml.StartElement); ok && el.Name.Local == "polyline" {
			polylines++
		}
	}
	if polylines != 3 {
		t.Errorf("%d polylines, want 3: e2e, p50 and p99", polylines)
	}
	if !strings.Contains(string(data), "median of 2 runs") {
		t.Errorf("the subtitle does not say it plots the median of 2 runs")
	}
}

func TestRunRejectsEmptySweep(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.json")
	if err := os.WriteFile(path, []byte(`{"points":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run("", false, []string{path}); err == nil || !strings.Contains(err.Error(), "no points") {
		t.Errorf("error = %v, want one saying the file has no points", err)
	}
}

func TestTableMediansAndVerdicts(t *testing.T) {
	dir := t.TempDir()
	var inputs []string
	for i, e2e := range []float64{9_000, 12_000, 11_000} {
		r := bench.Result{
			RawJetStreamMsgsPerS: 70_000, SubmitJobsPerS: 30_000, E2EJobsPerS: e2e,
			StartLatencyP50US: 200, StartLatencyP99US: 900, CancelLatencyP99MS: 2,
			PendingBytesPerJob: 900, RecoveryS: 1.5, NATSMsgsPerJob: 15,
		}
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "run-"+string(rune('a'+i))+".json")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, path)
	}

	out := filepath.Join(dir, "table.md")
	if err := run(out, true, inputs); err != nil {
		t.Fatalf("run -table: %v", err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	table := string(data)
	for _, want := range []string{
		"| `e2e_jobs_per_s` | 11,000 | 9,000 | 12,000 | jobs/s | >= 10,000 | met (110% of the target) |",
		"| `pending_bytes_per_job` | 900 | 900 | 900 | bytes | <= 512 | **missed** (176% of the target) |",
		"| `e2e_jobs_per_s` against raw/7 | 11,000 | | | jobs/s | >= 10,000 | met (110% of the target) |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks the row\n%s\ntable:\n%s", want, table)
		}
	}
}

func TestTableRejectsPartialRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "partial.json")
	if err := os.WriteFile(path, []byte(`{"start_latency_p50_us": 150}`), 0o644); err != nil {
		t.Fatal(err)
	}
	err := run("", true, []string{path})
	if err == nil || !strings.Contains(err.Error(), "raw_jetstream_msgs_per_s") {
		t.Errorf("error = %v, want one naming the missing figure", err)
	}
}
