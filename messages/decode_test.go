package messages_test

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/jetqueue/jetqueue/messages"
)

// decodeTargets are the types that the coordinator, workers and clients decode.
func decodeTargets() map[string]func() any {
	return map[string]func() any{
		"SubmitRequest":      func() any { return new(messages.SubmitRequest) },
		"SubmitBatchRequest": func() any { return new(messages.SubmitBatchRequest) },
		"JobRequest":         func() any { return new(messages.JobRequest) },
		"ReorderRequest":     func() any { return new(messages.ReorderRequest) },
		"StateRequest":       func() any { return new(messages.StateRequest) },
		"LogsRequest":        func() any { return new(messages.LogsRequest) },
		"Report":             func() any { return new(messages.Report) },
		"Heartbeat":          func() any { return new(messages.Heartbeat) },
		"WorkerCommand":      func() any { return new(messages.WorkerCommand) },
		"Event":              func() any { return new(messages.Event) },
		"StateReply":         func() any { return new(messages.StateReply) },
		"LogLine":            func() any { return new(messages.LogLine) },
	}
}

func TestDecodeErrors(t *testing.T) {
	valid := messages.MustEncode(fullSubmitRequest())
	inputs := map[string][]byte{
		"empty body":       nil,
		"garbage":          []byte("this is not msgpack"),
		"reserved code":    {0xc1},
		"truncated":        valid[:len(valid)/2],
		"string":           messages.MustEncode("a string where a struct belongs"),
		"integer":          messages.MustEncode(42),
		"trailing bytes":   append(messages.MustEncode(messages.JobRequest{ID: "x"}), 0x01),
		"two messages":     append(messages.MustEncode(messages.JobRequest{}), messages.MustEncode(messages.JobRequest{})...),
		"map key not text": {0x81, 0x01, 0x02},
	}
	for target, newTarget := range decodeTargets() {
		for name, data := range inputs {
			err := messages.Decode(data, newTarget())

			var apiErr *messages.Error
			if !errors.As(err, &apiErr) {
				t.Errorf("%s, %s: error %v (%T) is not a *messages.Error", target, name, err, err)
				continue
			}
			if apiErr.Code != messages.CodeBadRequest {
				t.Errorf("%s, %s: code %q, want %q", target, name, apiErr.Code, messages.CodeBadRequest)
			}
			if !strings.Contains(apiErr.Message, target) {
				t.Errorf("%s, %s: message %q does not name the type", target, name, apiErr.Message)
			}
		}
	}
}

// Decode must not allocate room for array elements that the input does not
// contain. msgpack/v5 (v5.4.1) allocates a typed slice of the length an
// array header declares before it reads any element, so a body of a few
// bytes could make the coordinator allocate gigabytes and die of a fatal
// out-of-memory error.
func TestDecodeBoundsAllocation(t *testing.T) {
	// Each body declares 262,144 elements in an array and carries none.
	arrayHeader := []byte{0xdd, 0x00, 0x04, 0x00, 0x00}
	tests := map[string]struct {
		body   []byte
		target func() any
	}{
		"batch jobs":        {append([]byte("\x81\xa4jobs"), arrayHeader...), func() any { return new(messages.SubmitBatchRequest) }},
		"heartbeat running": {append([]byte("\x81\xa7running"), arrayHeader...), func() any { return new(messages.Heartbeat) }},
		"command gpus":      {append([]byte("\x81\xa4gpus"), arrayHeader...), func() any { return new(messages.WorkerCommand) }},
	}
	for name, tt := range tests {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := messages.Decode(tt.body, tt.target())
		runtime.ReadMemStats(&after)

		if messages.CodeOf(err) != messages.CodeBadRequest {
			t.Errorf("%s: error %v, want code %q", name, err, messages.CodeBadRequest)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
			t.Errorf("%s: decoding %d bytes allocated %d bytes", name, len(tt.body), n)
		}
	}
}

// Decode must bound the nesting depth. The decoder and Payload.Value
// recurse once per level, and a few million levels overflow the goroutine
// stack, which is a fatal error.
func TestDecodeRejectsDeepNesting(t *testing.T) {
	args := append(bytes.Repeat([]byte{0x91}, 100_000), 0xc0)
	data := messages.MustEncode(messages.SubmitRequest{PluginName: "p", Args: args})

	var req messages.SubmitRequest
	err := messages.Decode(data, &req)
	if code := messages.CodeOf(err); code != messages.CodeBadRequest {
		t.Errorf("args nested 100,000 deep: error %v, want code %q", err, messages.CodeBadRequest)
	}
}

// A msgpack nil in a time.Time field must give an error or a zero time.
// msgpack/v5 (v5.4.1) panics on it ("call of reflect.Value.IsNil on struct
// Value"), so one report or event with "time": nil would crash the process
// that decodes it.
func TestDecodeNilTime(t *testing.T) {
	tests := map[string]struct {
		body   []byte
		target any
	}{
		"report":   {[]byte("\x81\xa4time\xc0"), new(messages.Report)},
		"event":    {[]byte("\x81\xa4time\xc0"), new(messages.Event)},
		"log line": {[]byte("\x81\xa4time\xc0"), new(messages.LogLine)},
		"job":      {[]byte("\x81\xaacreated_at\xc0"), new(messages.Job)},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("Decode panicked: %v", r)
				}
			}()

			err := messages.Decode(tt.body, tt.target)
			if err != nil && messages.CodeOf(err) != messages.CodeBadRequest {
				t.Errorf("error %v, want none or code %q", err, messages.CodeBadRequest)
			}
		})
	}
}

func TestDecodeIgnoresUnknownFields(t *testing.T) {
	data, err := msgpack.Marshal(map[string]any{
		"v": 1, "id": "0190c1a2-7b3c-7d4e-8f90-123456789abc", "added_in_v2": []any{1, "x"},
	})
	if err != nil {
		t.Fatal(err)
	}

	var req messages.JobRequest
	if err := messages.Decode(data, &req); err != nil {
		t.Fatalf("Decode with an unknown field: %v", err)
	}
	if req.ID != "0190c1a2-7b3c-7d4e-8f90-123456789abc" || req.V != 1 {
		t.Errorf("known fields lost: %+v", req)
	}
}

func TestDecodeAcceptsCompactIntegers(t *testing.T) {
	// A receiver must accept any integer format that the sender picked.
	data, err := msgpack.Marshal(map[string]any{"v": int8(1), "id": "x", "priority": int16(-300)})
	if err != nil {
		t.Fatal(err)
	}

	var req messages.ReorderRequest
	if err := messages.Decode(data, &req); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if req.V != 1 || req.Priority != -300 {
		t.Errorf("got %+v, want v 1 and priority -300", req)
	}
}

func TestMustEncodePanicsOnError(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MustEncode of a channel did not panic")
		}
	}()
	messages.MustEncode(make(chan int))
}
