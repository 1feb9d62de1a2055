package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

// figureKeys are the top-level numbers of a full run's JSON.
var figureKeys = []string{
	"raw_jetstream_msgs_per_s",
	"submit_jobs_per_s",
	"e2e_jobs_per_s",
	"start_latency_p50_us",
	"start_latency_p99_us",
	"cancel_latency_p99_ms",
	"pending_bytes_per_job",
	"recovery_s",
	"nats_msgs_per_job",
}

func testLogger() *slog.Logger {
	if os.Getenv("JETQUEUE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func TestRunTinyReportsEveryFigure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	cfg := Tiny()
	cfg.DataDir = t.TempDir()
	cfg.Logger = testLogger()
	var progress bytes.Buffer
	cfg.Progress = &progress
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}

	data, err := json.Marshal(res)
	if err != nil {
		t.Fatalf("marshal the result: %v", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("unmarshal the result: %v", err)
	}
	for _, key := range figureKeys {
		v, ok := doc[key].(float64)
		if !ok {
			t.Errorf("key %s missing or not a number in %s", key, data)
			continue
		}
		if v <= 0 {
			t.Errorf("%s = %v, want > 0", key, v)
		}
	}
	for _, key := range []string{"machine", "versions", "parameters"} {
		if _, ok := doc[key].(map[string]any); !ok {
			t.Errorf("key %s missing or not an object in %s", key, data)
		}
	}

	if res.Machine.Cores < 1 {
		t.Errorf("machine cores = %d, want >= 1", res.Machine.Cores)
	}
	if b := res.Machine.BusyBeforeStart; b != -1 && (b < 0 || b > 1) {
		t.Errorf("machine busy_before_start = %v, want -1 or 0 to 1", b)
	}
	if res.Versions.NATSServer == "" || res.Versions.NATSGo == "" || res.Versions.Go == "" || res.Versions.Jetqueue == "" {
		t.Errorf("versions incomplete: %+v", res.Versions)
	}
	if m := res.Parameters.SubmitMethod; m != "request" && m != "batch" {
		t.Errorf("parameters.submit_method = %q, want request or batch", m)
	}
	if res.Details.SubmitRequestJobsPerS <= 0 || res.Details.SubmitBatchJobsPerS <= 0 {
		t.Errorf("submit details not positive: %+v", res.Details)
	}
	if res.StartLatencyP99US < res.StartLatencyP50US {
		t.Errorf("start latency p99 %v below p50 %v", res.StartLatencyP99US, res.StartLatencyP50US)
	}
	for _, p := range AllPhases {
		if !strings.Contains(progress.String(), "bench: "+string(p)+" done") {
			t.Errorf("progress has no line for phase %s:\n%s", p, progress.String())
		}
	}
}

func TestRunOnlySelectedPhases(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cfg := Tiny()
	cfg.DataDir = t.TempDir()
	cfg.Logger = testLogger()
	cfg.Phases = []Phase{PhaseStart}
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.StartLatencyP50US <= 0 {
		t.Errorf("start_latency_p50_us = %v, want > 0", res.StartLatencyP50US)
	}

	data, err := json.Marshal(res)
	if err != nil {
		t.Fatalf("marshal the result: %v", err)
	}
	for _, key := range []string{"e2e_jobs_per_s", "raw_jetstream_msgs_per_s", "recovery_s"} {
		if bytes.Contains(data, []byte(`"`+key+`"`)) {
			t.Errorf("key %s present although its phase did not run: %s", key, data)
		}
	}
}

func TestParsePhases(t *testing.T) {
	phases, err := ParsePhases("e2e, start,e2e")
	if err != nil {
		t.Fatalf("ParsePhases: %v", err)
	}
	if len(phases) != 2 || phases[0] != PhaseE2E || phases[1] != PhaseStart {
		t.Errorf("ParsePhases = %v, want [e2e start]", phases)
	}

	if _, err := ParsePhases("e2e,warp"); err == nil || !strings.Contains(err.Error(), `"warp"`) {
		t.Errorf("ParsePhases(e2e,warp) error = %v, want one naming warp", err)
	}
	if phases, err := ParsePhases(""); err != nil || phases != nil {
		t.Errorf(`ParsePhases("") = %v, %v; want nil, nil`, phases, err)
	}
}

func TestPercentile(t *testing.T) {
	samples := make([]time.Duration, 100)
	for i := range samples {
		samples[i] = time.Duration(100-i) * time.Millisecond
	}
	cases := []struct {
		p    float64
		want time.Duration
	}{
		{50, 50 * time.Millisecond},
		{99, 99 * time.Millisecond},
		{100, 100 * time.Millisecond},
		{0, time.Millisecond},
	}
	for _, c := range cases {
		if got := percentile(samples, c.p); got != c.want {
			t.Errorf("percentile(p%v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile of no samples = %v, want 0", got)
	}
}

func TestConfigRejectsZeroCounts(t *testing.T) {
	cfg := Tiny().WithDefaults()
	cfg.E2EJobs = -1
	if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), "E2EJobs") {
		t.Errorf("validate with E2EJobs -1: error = %v, want one naming E2EJobs", err)
	}

	cfg = Tiny().WithDefaults()
	cfg.BatchSize = maxBatchSize + 1
	if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), "BatchSize") {
		t.Errorf("validate with BatchSize %d: error = %v, want one naming BatchSize", cfg.BatchSize, err)
	}
}
