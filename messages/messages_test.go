package messages_test

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/jetqueue/jetqueue/messages"
)

// Fixture times carry nanoseconds so a round trip that truncates them fails.
var (
	createdAt   = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)
	startedAt   = createdAt.Add(1500 * time.Millisecond)
	completedAt = startedAt.Add(42*time.Second + 7)
)

func ptr[T any](v T) *T { return &v }

func fullRequirements() *messages.Requirements {
	return &messages.Requirements{
		GPUs:        ptr(2),
		GPUMemoryMB: ptr(int64(24576)),
		MemoryMB:    ptr(int64(8192)),
		CPUs:        ptr(1.5),
	}
}

func fullJob() messages.Job {
	return messages.Job{
		ID:             "0190c1a2-7b3c-7d4e-8f90-123456789abc",
		PluginName:     "whisper",
		Args:           messages.MustPayload([]any{"audio.wav", 3}),
		Kwargs:         messages.MustPayload(map[string]any{"language": "en", "beam": 5}),
		Status:         messages.StatusCompleted,
		Priority:       -7,
		CreatedAt:      createdAt,
		StartedAt:      ptr(startedAt),
		CompletedAt:    ptr(completedAt),
		Result:         messages.MustPayload(map[string]any{"text": "hello"}),
		Error:          "plugin exited with status 1",
		Progress:       0.25,
		StatusMessage:  "transcribing",
		Seq:            1 << 40,
		Worker:         "gpu-node-1",
		Attempt:        2,
		MaxAttempts:    3,
		Requirements:   fullRequirements(),
		IdempotencyKey: "upload-7781",
		CancelPhase:    messages.CancelTerminate,
		PendingReason:  "waiting for 2 GPUs with 24576 MiB free",
		Labels:         map[string]string{"team": "speech", "env": "prod"},
		Requeues: []messages.Requeue{
			{Time: startedAt, Worker: "gpu-node-0", Attempt: 1, Reason: "worker lost"},
		},
		WorkerLosses: 1,
	}
}

func fullSubmitRequest() messages.SubmitRequest {
	return messages.SubmitRequest{
		V:              messages.ProtocolVersion,
		PluginName:     "whisper",
		Args:           messages.MustPayload([]any{"a", 1}),
		Kwargs:         messages.MustPayload(map[string]any{"k": "v"}),
		Priority:       10,
		MaxAttempts:    5,
		Requirements:   fullRequirements(),
		IdempotencyKey: "key-1",
		Labels:         map[string]string{"team": "speech"},
	}
}

func fullWorkerInfo() messages.WorkerInfo {
	return messages.WorkerInfo{
		Name:              "gpu-node-1",
		Instance:          "0190c1a2-7b3c-7d4e-8f90-000000000001",
		Version:           "0.1.0",
		Host:              "node1.example.internal",
		StartedAt:         createdAt,
		MaxJobs:           4,
		CPUs:              15.5,
		MemoryTotalMB:     64000,
		MemoryAvailableMB: 51200,
		GPUs: []messages.GPU{{
			Index: 1, UUID: "GPU-8a1b", Name: "NVIDIA A100-SXM4-40GB",
			MemoryTotalMB: 40960, MemoryUsedMB: 1024, MemoryFreeMB: 39936, UtilizationPct: 37,
			Unhealthy: "2 uncorrectable ECC errors",
			Processes: []messages.GPUProcess{{PID: 4242, UsedMB: 1024}},
		}},
		Plugins: []messages.PluginInfo{{
			Name: "whisper", Mode: messages.ModePersistent,
			Resources: messages.Resources{GPUs: 1, GPUMemoryMB: 8000, MemoryMB: 4000, CPUs: 0.5},
			Instances: 2, Busy: 1, Warm: 1, LastUsed: completedAt,
			Processes: []messages.PluginProcess{{PID: 4242, GPUs: []int{1}, Busy: true, LastUsed: completedAt, GPUMemoryMB: 8000}},
		}},
		Draining: true,
	}
}

func fullWorkerState() messages.WorkerState {
	return messages.WorkerState{
		Info:     fullWorkerInfo(),
		Jobs:     []string{"0190c1a2-7b3c-7d4e-8f90-123456789abc"},
		LastSeen: completedAt,
		Status:   "draining",
		GPUs:     []messages.GPUState{{Index: 1, ReservedMB: 8000, EvictableMB: 4000, Jobs: 1}},
	}
}

func fullLogLine() messages.LogLine {
	return messages.LogLine{
		JobID:   "0190c1a2-7b3c-7d4e-8f90-123456789abc",
		Attempt: 1,
		Time:    startedAt,
		Stream:  messages.LogStderr,
		Level:   "warning",
		Text:    "CUDA out of memory, retrying with a smaller batch",
	}
}

// wireCase is one message type: a value with every field set, and the
// msgpack field names that pin its wire format.
type wireCase struct {
	value  any
	fields []string
}

// wireCases lists every message type of the package.
func wireCases() map[string]wireCase {
	job := fullJob()
	return map[string]wireCase{
		"Job": {fullJob(), []string{
			"id", "plugin_name", "args", "kwargs", "status", "priority", "created_at", "started_at",
			"completed_at", "result", "error", "progress", "status_message", "seq", "worker",
			"attempt", "max_attempts", "requirements", "idempotency_key", "cancel_phase",
			"pending_reason", "labels", "requeues", "worker_losses",
		}},
		"Requeue":      {job.Requeues[0], []string{"time", "worker", "attempt", "reason"}},
		"Requirements": {*fullRequirements(), []string{"gpus", "gpu_memory_mb", "memory_mb", "cpus"}},
		"Resources": {messages.Resources{GPUs: 1, GPUMemoryMB: 2, MemoryMB: 3, CPUs: 0.5},
			[]string{"gpus", "gpu_memory_mb", "memory_mb", "cpus"}},
		"SubmitRequest": {fullSubmitRequest(), []string{
			"v", "plugin_name", "args", "kwargs", "priority", "max_attempts", "requirements",
			"idempotency_key", "labels",
		}},
		"SubmitReply": {messages.SubmitReply{ID: job.ID, Seq: 9, Duplicate: true},
			[]string{"id", "seq", "duplicate"}},
		"SubmitBatchRequest": {messages.SubmitBatchRequest{V: 1, Jobs: []messages.SubmitRequest{fullSubmitRequest()}},
			[]string{"v", "jobs"}},
		"SubmitBatchReply": {messages.SubmitBatchReply{Results: []messages.SubmitResult{{
			ID: job.ID, Seq: 3, Duplicate: true, Error: messages.Errorf(messages.CodeInvalid, "bad"),
		}}}, []string{"results"}},
		"SubmitResult": {messages.SubmitResult{ID: job.ID, Seq: 3, Duplicate: true,
			Error: messages.Errorf(messages.CodeTooLarge, "too large")},
			[]string{"id", "seq", "duplicate", "error"}},
		"JobRequest":     {messages.JobRequest{V: 1, ID: job.ID}, []string{"v", "id"}},
		"ReorderRequest": {messages.ReorderRequest{V: 1, ID: job.ID, Priority: -3}, []string{"v", "id", "priority"}},
		"JobReply":       {messages.JobReply{Job: fullJob()}, []string{"job"}},
		"StateRequest": {messages.StateRequest{V: 1, HistoryLimit: -1, PendingLimit: 50},
			[]string{"v", "history_limit", "pending_limit"}},
		"StateReply": {messages.StateReply{
			Running: []messages.Job{fullJob()},
			Pending: []messages.PendingJob{{Position: 1, Job: fullJob()}},
			History: []messages.Job{fullJob()},
			Stats: messages.Stats{Pending: 1, Running: 2, Completed: 3, Failed: 4, Cancelled: 5,
				Submitted: 15},
			Workers: []messages.WorkerState{fullWorkerState()},
			Leader:  "coordinator-a",
			Time:    completedAt,
		}, []string{"running", "pending", "history", "stats", "workers", "leader", "time"}},
		"PendingJob": {messages.PendingJob{Position: 4, Job: fullJob()}, []string{"position", "job"}},
		"Stats": {messages.Stats{Pending: 1, Running: 2, Completed: 3, Failed: 4, Cancelled: 5, Submitted: 6},
			[]string{"pending", "running", "completed", "failed", "cancelled", "submitted"}},
		"LogsRequest": {messages.LogsRequest{V: 1, ID: job.ID, Lines: 20}, []string{"v", "id", "lines"}},
		"LogsReply": {messages.LogsReply{Lines: []messages.LogLine{fullLogLine()}, Truncated: true},
			[]string{"lines", "truncated"}},
		"WorkersRequest": {messages.WorkersRequest{V: 1}, []string{"v"}},
		"WorkersReply": {messages.WorkersReply{Workers: []messages.WorkerState{fullWorkerState()}},
			[]string{"workers"}},
		"WorkerState": {fullWorkerState(), []string{"info", "jobs", "last_seen", "status", "gpus"}},
		"Event": {messages.Event{V: 1, Kind: messages.EventCompleted, Time: completedAt, Term: 3, Leader: "coordinator-2", Worker: "gpu-node-1", Job: fullJob()},
			[]string{"v", "event", "time", "term", "leader", "worker", "job"}},
		"LogLine": {fullLogLine(), []string{"job_id", "attempt", "time", "stream", "level", "text"}},
		"WorkerInfo": {fullWorkerInfo(), []string{
			"name", "instance", "version", "host", "started_at", "max_jobs", "cpus",
			"memory_total_mb", "memory_available_mb", "gpus", "plugins", "draining",
		}},
		"GPU": {fullWorkerInfo().GPUs[0], []string{
			"index", "uuid", "name", "memory_total_mb", "memory_used_mb", "memory_free_mb", "utilization_pct", "unhealthy", "processes",
		}},
		"PluginInfo": {fullWorkerInfo().Plugins[0], []string{
			"name", "mode", "resources", "instances", "busy", "warm", "last_used", "processes",
		}},
		"RunningJob": {messages.RunningJob{ID: job.ID, Attempt: 2}, []string{"id", "attempt"}},
		"Heartbeat": {messages.Heartbeat{V: 1, Info: fullWorkerInfo(),
			Running: []messages.RunningJob{{ID: job.ID, Attempt: 1}}, Time: startedAt, Leaving: true},
			[]string{"v", "info", "running", "time", "leaving"}},
		"WorkerCommand": {messages.WorkerCommand{V: 1, Kind: messages.CommandRun, Job: ptr(fullJob()),
			JobID: job.ID, Attempt: 2, GPUs: []int{1, 3}, Term: 4, Evict: []int{4242}, Reason: "room for job x"},
			[]string{"v", "kind", "job", "job_id", "attempt", "gpus", "evict", "reason", "term"}},
		"CommandReply": {messages.CommandReply{Error: messages.Errorf(messages.CodeWorkerFull, "no free slot")},
			[]string{"error"}},
		"Report": {messages.Report{
			V: 1, Kind: messages.ReportFailed, Worker: "gpu-node-1", JobID: job.ID, Attempt: 2,
			Time: completedAt, Progress: -1, StatusMessage: "loading model",
			Result: messages.MustPayload("partial"), Error: "out of memory",
			CancelPhase: messages.CancelKill,
		}, []string{
			"v", "kind", "worker", "job_id", "attempt", "time", "progress", "status_message",
			"result", "error", "cancel_phase",
		}},
		"ReportReply": {messages.ReportReply{Error: messages.Errorf(messages.CodeStaleCommand, "attempt 1 is old")},
			[]string{"error"}},
		"Error": {messages.Error{Code: messages.CodeNotFound, Message: "no job with id x"},
			[]string{"code", "message"}},
	}
}

// newOf returns a pointer to a new zero value of v's type.
func newOf(v any) any { return reflect.New(reflect.TypeOf(v)).Interface() }

// toUTC sets every time.Time reachable from v to UTC, so values decoded in
// the local time zone compare equal to the fixtures.
func toUTC(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			toUTC(v.Elem())
		}
	case reflect.Struct:
		if t, ok := v.Addr().Interface().(*time.Time); ok {
			*t = t.UTC()
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				toUTC(v.Field(i))
			}
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return
		}
		for i := range v.Len() {
			toUTC(v.Index(i))
		}
	}
}

// zeroFields returns the paths of the exported fields reachable from v that
// hold their zero value, or empty slices and maps.
func zeroFields(path string, v reflect.Value) []string {
	if _, ok := v.Interface().(time.Time); ok {
		if v.IsZero() {
			return []string{path}
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return []string{path}
		}
		return zeroFields(path, v.Elem())
	case reflect.Struct:
		var zero []string
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if f.IsExported() {
				zero = append(zero, zeroFields(path+"."+f.Name, v.Field(i))...)
			}
		}
		return zero
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 {
			return []string{path}
		}
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() != reflect.Uint8 {
			return zeroFields(path+"[0]", v.Index(0))
		}
		return nil
	}
	if v.IsZero() {
		return []string{path}
	}
	return nil
}

func TestFixturesSetEveryField(t *testing.T) {
	for name, c := range wireCases() {
		if zero := zeroFields(name, reflect.ValueOf(c.value)); len(zero) > 0 {
			t.Errorf("fixture %s leaves fields unset, so the round trip does not cover them: %v", name, zero)
		}
	}
}

func TestRoundTripEveryMessage(t *testing.T) {
	for name, c := range wireCases() {
		t.Run(name, func(t *testing.T) {
			data, err := messages.Encode(c.value)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}

			out := newOf(c.value)
			if err := messages.Decode(data, out); err != nil {
				t.Fatalf("Decode: %v", err)
			}

			toUTC(reflect.ValueOf(out))
			got := reflect.ValueOf(out).Elem().Interface()
			if !reflect.DeepEqual(got, c.value) {
				t.Errorf("round trip changed the value:\n got  %+v\n want %+v", got, c.value)
			}
		})
	}
}

func TestWireFieldNames(t *testing.T) {
	for name, c := range wireCases() {
		t.Run(name, func(t *testing.T) {
			var fields map[string]any
			if err := msgpack.Unmarshal(messages.MustEncode(c.value), &fields); err != nil {
				t.Fatalf("decode %s as a generic map: %v", name, err)
			}

			got := slices.Sorted(func(yield func(string) bool) {
				for k := range fields {
					if !yield(k) {
						return
					}
				}
			})
			want := slices.Sorted(slices.Values(c.fields))
			if !slices.Equal(got, want) {
				t.Errorf("msgpack fields of %s:\n got  %v\n want %v", name, got, want)
			}
		})
	}
}

func TestJSONNamesMatchMsgpack(t *testing.T) {
	for name, c := range wireCases() {
		typ := reflect.TypeOf(c.value)
		for i := range typ.NumField() {
			f := typ.Field(i)
			jsonName, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if mp := f.Tag.Get("msgpack"); jsonName != mp {
				t.Errorf("%s.%s: json name %q differs from msgpack name %q", name, f.Name, jsonName, mp)
			}
		}
	}
}

func TestRoundTripZeroValues(t *testing.T) {
	for name, c := range wireCases() {
		zero := reflect.New(reflect.TypeOf(c.value)).Elem().Interface()

		out := newOf(c.value)
		if err := messages.Decode(messages.MustEncode(zero), out); err != nil {
			t.Errorf("%s: decode of the zero value: %v", name, err)
			continue
		}

		toUTC(reflect.ValueOf(out))
		if got := reflect.ValueOf(out).Elem().Interface(); !reflect.DeepEqual(got, zero) {
			t.Errorf("%s: zero value changed in a round trip:\n got  %+v\n want %+v", name, got, zero)
		}
	}
}

func TestTimeRoundTrip(t *testing.T) {
	times := map[string]time.Time{
		"nanoseconds":     createdAt,
		"whole second":    time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		"before 1970":     time.Date(1969, 7, 20, 20, 17, 40, 123, time.UTC),
		"after 2514":      time.Date(2600, 1, 1, 0, 0, 0, 999999999, time.UTC),
		"other time zone": time.Date(2025, 6, 1, 12, 0, 0, 5, time.FixedZone("UTC+9", 9*3600)),
		"monotonic clock": time.Now(),
	}
	for name, tm := range times {
		var out messages.LogLine
		if err := messages.Decode(messages.MustEncode(messages.LogLine{Time: tm}), &out); err != nil {
			t.Fatalf("%s: Decode: %v", name, err)
		}
		if !out.Time.Equal(tm) {
			t.Errorf("%s: time %v came back as %v", name, tm, out.Time)
		}
		if out.Time.Nanosecond() != tm.Nanosecond() {
			t.Errorf("%s: nanoseconds %d came back as %d", name, tm.Nanosecond(), out.Time.Nanosecond())
		}
	}
}

func TestZeroTimeRoundTrip(t *testing.T) {
	var out messages.Job
	if err := messages.Decode(messages.MustEncode(messages.Job{}), &out); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if !out.CreatedAt.IsZero() {
		t.Errorf("zero created_at came back as %v", out.CreatedAt)
	}
	if out.StartedAt != nil || out.CompletedAt != nil {
		t.Errorf("nil started_at/completed_at came back as %v/%v", out.StartedAt, out.CompletedAt)
	}
}

// Decoded times must be UTC. msgpack/v5 (v5.4.1) decodes timestamps in the
// local time zone, so Decode has to convert them.
func TestDecodeTimeIsUTC(t *testing.T) {
	var out messages.Event
	if err := messages.Decode(messages.MustEncode(messages.Event{Time: createdAt}), &out); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if loc := out.Time.Location(); loc != time.UTC {
		t.Errorf("decoded time is in location %q, want UTC", loc)
	}
}

func TestTimeIsTimestampExtension(t *testing.T) {
	tests := map[string]struct {
		time   time.Time
		header []byte
	}{
		"32-bit seconds": {time.Unix(1700000000, 0), []byte{0xd6, 0xff}},
		"64-bit form":    {time.Unix(1700000000, 1), []byte{0xd7, 0xff}},
		"96-bit form":    {time.Unix(-1, 0), []byte{0xc7, 12, 0xff}},
	}
	for name, tt := range tests {
		data := messages.MustEncode(messages.Requeue{Time: tt.time})
		if !strings.Contains(string(data), "\xa4time"+string(tt.header)) {
			t.Errorf("%s: field time is not the timestamp extension -1 with header % x: % x", name, tt.header, data)
		}
	}
}

func TestRequirementsNilAndPartial(t *testing.T) {
	tests := map[string]*messages.Requirements{
		"nil":       nil,
		"empty":     {},
		"gpus only": {GPUs: ptr(0)},
		"cpus only": {CPUs: ptr(0.25)},
		"all set":   fullRequirements(),
	}
	for name, req := range tests {
		var out messages.SubmitRequest
		if err := messages.Decode(messages.MustEncode(messages.SubmitRequest{Requirements: req}), &out); err != nil {
			t.Fatalf("%s: Decode: %v", name, err)
		}
		if !reflect.DeepEqual(out.Requirements, req) {
			t.Errorf("%s: requirements %+v came back as %+v", name, req, out.Requirements)
		}
	}
}

func TestRequirementsApply(t *testing.T) {
	base := messages.Resources{GPUs: 1, GPUMemoryMB: 1000, MemoryMB: 2000, CPUs: 1}

	if got := (*messages.Requirements)(nil).Apply(base); got != base {
		t.Errorf("nil requirements: got %+v, want %+v", got, base)
	}

	got := (&messages.Requirements{GPUs: ptr(0), CPUs: ptr(4.0)}).Apply(base)
	want := messages.Resources{GPUs: 0, GPUMemoryMB: 1000, MemoryMB: 2000, CPUs: 4}
	if got != want {
		t.Errorf("partial requirements: got %+v, want %+v", got, want)
	}

	if got := fullRequirements().Apply(base); got != (messages.Resources{GPUs: 2, GPUMemoryMB: 24576, MemoryMB: 8192, CPUs: 1.5}) {
		t.Errorf("full requirements: got %+v", got)
	}
}

func TestJobSummary(t *testing.T) {
	job := fullJob()
	s := job.Summary()

	if s.Args != nil || s.Kwargs != nil || s.Result != nil {
		t.Errorf("summary keeps payloads: args %v, kwargs %v, result %v", s.Args, s.Kwargs, s.Result)
	}
	if job.Args == nil || job.Kwargs == nil || job.Result == nil {
		t.Error("Summary cleared the payloads of the original job")
	}

	s.Args, s.Kwargs, s.Result = job.Args, job.Kwargs, job.Result
	if !reflect.DeepEqual(s, job) {
		t.Errorf("summary changed fields other than the payloads:\n got  %+v\n want %+v", s, job)
	}
}

func TestStatus(t *testing.T) {
	final := map[messages.Status]bool{
		messages.StatusPending: false, messages.StatusRunning: false,
		messages.StatusCompleted: true, messages.StatusFailed: true, messages.StatusCancelled: true,
	}
	for s, want := range final {
		if !s.Valid() {
			t.Errorf("%q is not Valid", s)
		}
		if s.Final() != want {
			t.Errorf("%q.Final() = %v, want %v", s, s.Final(), want)
		}
		if got, err := messages.ParseStatus(string(s)); err != nil || got != s {
			t.Errorf("ParseStatus(%q) = %q, %v", s, got, err)
		}
	}

	for _, bad := range []string{"", "Pending", "done", "queued"} {
		if messages.Status(bad).Valid() {
			t.Errorf("%q is Valid", bad)
		}
		_, err := messages.ParseStatus(bad)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("ParseStatus(%q) error %v does not name the value", bad, err)
		}
	}
}
