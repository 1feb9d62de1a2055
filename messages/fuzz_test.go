package messages_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/jetqueue/jetqueue/messages"
)

// fuzzDecode fuzzes Decode into a T, seeded with the encodings of seeds.
// Decode must never panic, must fail only with CodeBadRequest, and whatever
// it accepts must encode to bytes that decode to the same encoding again.
func fuzzDecode[T any](f *testing.F, seeds ...T) {
	for _, s := range seeds {
		f.Add(messages.MustEncode(s))
	}
	var zero T
	f.Add(messages.MustEncode(zero))
	f.Add([]byte{0xc0})
	f.Add([]byte{0x80})
	f.Add([]byte{0x90})

	f.Fuzz(func(t *testing.T, data []byte) {
		var v T
		if err := messages.Decode(data, &v); err != nil {
			if code := messages.CodeOf(err); code != messages.CodeBadRequest {
				t.Fatalf("Decode error has code %q, want %q: %v", code, messages.CodeBadRequest, err)
			}
			return
		}

		first := encodeSorted(t, &v)
		var again T
		if err := messages.Decode(first, &again); err != nil {
			t.Fatalf("re-encoded %T does not decode: %v\nencoding % x", v, err, first)
		}
		if second := encodeSorted(t, &again); !bytes.Equal(first, second) {
			t.Fatalf("%T is not stable under encode and decode:\nfirst  % x\nsecond % x", v, first, second)
		}
	})
}

// encodeSorted encodes v with map keys sorted, so equal values give equal bytes.
func encodeSorted(t *testing.T, v any) []byte {
	t.Helper()

	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(v); err != nil {
		t.Fatalf("encode %T: %v", v, err)
	}
	return buf.Bytes()
}

func FuzzDecodeSubmitRequest(f *testing.F) {
	fuzzDecode(f, fullSubmitRequest(), messages.SubmitRequest{PluginName: "p", Args: rawPayloads["array16"]})
}

func FuzzDecodeSubmitBatchRequest(f *testing.F) {
	fuzzDecode(f, messages.SubmitBatchRequest{V: 1, Jobs: []messages.SubmitRequest{
		fullSubmitRequest(), {PluginName: "p"},
	}})
}

func FuzzDecodeJobRequest(f *testing.F) {
	fuzzDecode(f, messages.JobRequest{V: 1, ID: jobID})
}

func FuzzDecodeReorderRequest(f *testing.F) {
	fuzzDecode(f, messages.ReorderRequest{V: 1, ID: jobID, Priority: -5})
}

func FuzzDecodeStateRequest(f *testing.F) {
	fuzzDecode(f, messages.StateRequest{V: 1, HistoryLimit: -1, PendingLimit: 10})
}

func FuzzDecodeLogsRequest(f *testing.F) {
	fuzzDecode(f, messages.LogsRequest{V: 1, ID: jobID, Lines: 100})
}

func FuzzDecodeReport(f *testing.F) {
	fuzzDecode(f,
		wireCases()["Report"].value.(messages.Report),
		messages.Report{V: 1, Kind: messages.ReportProgress, Worker: "w", JobID: jobID, Attempt: 1,
			Time: createdAt, Progress: 0.5, StatusMessage: "half"},
	)
}

func FuzzDecodeHeartbeat(f *testing.F) {
	fuzzDecode(f, wireCases()["Heartbeat"].value.(messages.Heartbeat))
}

func FuzzDecodeWorkerCommand(f *testing.F) {
	fuzzDecode(f,
		wireCases()["WorkerCommand"].value.(messages.WorkerCommand),
		messages.WorkerCommand{V: 1, Kind: messages.CommandCancel, JobID: jobID, Attempt: 1},
	)
}

func FuzzDecodeEvent(f *testing.F) {
	job := fullJob()
	fuzzDecode(f,
		messages.Event{V: 1, Kind: messages.EventCompleted, Time: completedAt, Job: job},
		messages.Event{V: 1, Kind: messages.EventProgress, Time: startedAt, Job: job.Summary()},
	)
}

// FuzzPayloadJSON reads its input both as JSON and as msgpack. Whatever
// converts one way must convert back and forth again without changing.
func FuzzPayloadJSON(f *testing.F) {
	for _, s := range []string{
		`null`, `0`, `-7`, `1.5`, `1e300`, `"s"`, `[1,"a",null,true]`, `{"a":{"b":[1,2.5]}}`,
		`{"path":"/data/in.wav","beam":5,"temperature":0.2}`,
	} {
		f.Add([]byte(s))
	}
	for _, raw := range rawPayloads {
		f.Add(raw)
	}
	f.Add([]byte(messages.MustPayload(map[string]any{"nested": []any{map[int]string{1: "x"}}})))

	f.Fuzz(func(t *testing.T, data []byte) {
		checkJSONToPayload(t, data)
		checkPayloadToJSON(t, data)
	})
}

// checkJSONToPayload stores a JSON text as a payload, writes it as JSON
// and stores that again: the two payloads must hold the same value.
func checkJSONToPayload(t *testing.T, data []byte) {
	t.Helper()

	var first messages.Payload
	if err := json.Unmarshal(data, &first); err != nil {
		return
	}

	text, err := json.Marshal(first)
	if err != nil {
		t.Fatalf("JSON %q was accepted, but its payload % x does not convert back: %v", data, []byte(first), err)
	}
	var second messages.Payload
	if err := json.Unmarshal(text, &second); err != nil {
		t.Fatalf("JSON %q converted back to %q, which does not convert again: %v", data, text, err)
	}

	v1, err1 := first.Value()
	v2, err2 := second.Value()
	if err1 != nil || err2 != nil {
		t.Fatalf("payloads from JSON do not decode: %v, %v", err1, err2)
	}
	if !reflect.DeepEqual(v1, v2) {
		t.Fatalf("JSON %q gave %#v (%T), and after a JSON round trip %q it gave %#v (%T)", data, v1, v1, text, v2, v2)
	}
}

// checkPayloadToJSON writes a msgpack value as JSON, stores that JSON as a
// payload and writes it again: the two JSON texts must hold the same value,
// with numbers compared by their text.
func checkPayloadToJSON(t *testing.T, data []byte) {
	t.Helper()

	// Payloads reach MarshalJSON only after DecodeMsgpack checked that they
	// are one complete msgpack value, so take data the same way.
	var raw messages.Payload
	if err := msgpack.Unmarshal(data, &raw); err != nil {
		return
	}
	first, err := raw.MarshalJSON()
	if err != nil {
		return
	}

	var p messages.Payload
	if err := json.Unmarshal(first, &p); err != nil {
		if strings.Contains(err.Error(), "exceeded max depth") {
			// encoding/json reads at most 10,000 levels of nesting.
			return
		}
		t.Fatalf("payload % x gave JSON %q, which does not convert back: %v", data, first, err)
	}
	second, err := json.Marshal(p)
	if err != nil {
		t.Fatalf("JSON %q converted to payload % x, which does not convert again: %v", first, []byte(p), err)
	}
	if !jsonEqual(t, string(first), string(second)) {
		t.Fatalf("payload % x gave JSON %s, and after a round trip %s", data, first, second)
	}
}
