package messages_test

import (
	"fmt"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/jetqueue/jetqueue/messages"
)

// benchJobBytes encodes fullJob once, failing the benchmark on error.
func benchJobBytes(b *testing.B) []byte {
	b.Helper()
	job := fullJob()
	data, err := messages.Encode(&job)
	if err != nil {
		b.Fatalf("encode job: %v", err)
	}
	return data
}

func BenchmarkEncodeJob(b *testing.B) {
	job := fullJob()
	b.SetBytes(int64(len(benchJobBytes(b))))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := messages.Encode(&job); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeJob decodes with messages.Decode, which checks that the
// input is well formed before msgpack decodes it.
func BenchmarkDecodeJob(b *testing.B) {
	data := benchJobBytes(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var job messages.Job
		if err := messages.Decode(data, &job); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeJobUnchecked decodes with msgpack alone, so the
// difference to BenchmarkDecodeJob is the cost of the well-formedness check.
func BenchmarkDecodeJobUnchecked(b *testing.B) {
	data := benchJobBytes(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var job messages.Job
		if err := msgpack.Unmarshal(data, &job); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeEvent encodes what the coordinator journals on every
// state change: an event carrying the whole job record.
func BenchmarkEncodeEvent(b *testing.B) {
	ev := messages.Event{V: messages.ProtocolVersion, Kind: messages.EventCompleted, Time: completedAt, Job: fullJob()}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := messages.Encode(&ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeHeartbeat decodes the heartbeat of a worker that runs 64
// jobs, as the coordinator does for every heartbeat it receives.
func BenchmarkDecodeHeartbeat(b *testing.B) {
	hb := messages.Heartbeat{V: messages.ProtocolVersion, Info: fullWorkerInfo(), Time: createdAt}
	for i := range 64 {
		hb.Running = append(hb.Running, messages.RunningJob{ID: fmt.Sprintf("0190c1a2-7b3c-7d4e-8f90-%012d", i), Attempt: 1})
	}
	data, err := messages.Encode(&hb)
	if err != nil {
		b.Fatalf("encode heartbeat: %v", err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var got messages.Heartbeat
		if err := messages.Decode(data, &got); err != nil {
			b.Fatal(err)
		}
	}
}
