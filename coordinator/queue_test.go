package coordinator

import (
	"math/rand/v2"
	"testing"

	"github.com/jetqueue/jetqueue/messages"
)

func entry(priority int, seq uint64) *jobEntry {
	return &jobEntry{index: -1, job: messages.Job{Priority: priority, Seq: seq}}
}

func TestQueuePopsByPriorityThenSeq(t *testing.T) {
	var q jobQueue
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 2000
	for seq := uint64(1); seq <= n; seq++ {
		q.push(entry(rng.IntN(7)-3, seq))
	}
	prev := q.pop()
	for i := 1; i < n; i++ {
		e := q.pop()
		if before(e, prev) {
			t.Fatalf("pop %d: priority %d seq %d came after priority %d seq %d", i, e.job.Priority, e.job.Seq, prev.job.Priority, prev.job.Seq)
		}
		prev = e
	}
	if q.pop() != nil || q.Len() != 0 {
		t.Fatalf("queue not empty after %d pops", n)
	}
}

func TestQueueRemoveAndFix(t *testing.T) {
	var q jobQueue
	a, b, c := entry(0, 1), entry(0, 2), entry(0, 3)
	for _, e := range []*jobEntry{a, b, c} {
		q.push(e)
	}
	q.remove(b)
	if q.contains(b) || b.index != -1 {
		t.Fatalf("removed entry still in the queue (index %d)", b.index)
	}
	q.remove(b) // a second remove is a no-op

	c.job.Priority = 9
	q.fix(c)
	if got := q.pop(); got != c {
		t.Fatalf("after raising its priority, seq %d should pop first, got seq %d", c.job.Seq, got.job.Seq)
	}
	if got := q.pop(); got != a {
		t.Fatalf("second pop = seq %d, want seq 1", got.job.Seq)
	}
}

func BenchmarkQueuePushPop(b *testing.B) {
	const size = 1_000_000
	var q jobQueue
	rng := rand.New(rand.NewPCG(3, 4))
	seq := uint64(0)
	for range size {
		seq++
		q.push(entry(rng.IntN(100), seq))
	}
	b.ResetTimer()
	for range b.N {
		e := q.pop()
		seq++
		e.job.Seq = seq
		q.push(e)
	}
}

func BenchmarkQueueReorder(b *testing.B) {
	const size = 1_000_000
	var q jobQueue
	entries := make([]*jobEntry, size)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range entries {
		entries[i] = entry(rng.IntN(100), uint64(i+1))
		q.push(entries[i])
	}
	b.ResetTimer()
	for i := range b.N {
		e := entries[i%size]
		e.job.Priority = rng.IntN(100)
		q.fix(e)
	}
}
