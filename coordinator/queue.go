package coordinator

import "container/heap"

// jobQueue is the pending queue: a binary heap ordered by priority, highest
// first, then by submission sequence, lowest first. Push, Pop, Remove and
// Fix are O(log n); each entry stores its own heap index.
type jobQueue struct {
	items []*jobEntry
}

// before reports whether a is dispatched ahead of b.
func before(a, b *jobEntry) bool {
	if a.job.Priority != b.job.Priority {
		return a.job.Priority > b.job.Priority
	}
	return a.job.Seq < b.job.Seq
}

func (q *jobQueue) Len() int           { return len(q.items) }
func (q *jobQueue) Less(i, j int) bool { return before(q.items[i], q.items[j]) }

func (q *jobQueue) Swap(i, j int) {
	q.items[i], q.items[j] = q.items[j], q.items[i]
	q.items[i].index = i
	q.items[j].index = j
}

// Push and Pop implement heap.Interface; use push, pop and remove instead.
func (q *jobQueue) Push(x any) {
	e := x.(*jobEntry)
	e.index = len(q.items)
	q.items = append(q.items, e)
}

func (q *jobQueue) Pop() any {
	n := len(q.items)
	e := q.items[n-1]
	q.items[n-1] = nil
	q.items = q.items[:n-1]
	e.index = -1
	return e
}

func (q *jobQueue) push(e *jobEntry) { heap.Push(q, e) }

// peek returns the next job to dispatch, or nil when the queue is empty.
func (q *jobQueue) peek() *jobEntry {
	if len(q.items) == 0 {
		return nil
	}
	return q.items[0]
}

func (q *jobQueue) pop() *jobEntry {
	if len(q.items) == 0 {
		return nil
	}
	return heap.Pop(q).(*jobEntry)
}

// remove takes e out of the queue if it is in it.
func (q *jobQueue) remove(e *jobEntry) {
	if e.index < 0 || e.index >= len(q.items) || q.items[e.index] != e {
		return
	}
	heap.Remove(q, e.index)
}

// fix restores the order after e's priority changed.
func (q *jobQueue) fix(e *jobEntry) {
	if e.index >= 0 && e.index < len(q.items) && q.items[e.index] == e {
		heap.Fix(q, e.index)
	}
}

func (q *jobQueue) contains(e *jobEntry) bool {
	return e.index >= 0 && e.index < len(q.items) && q.items[e.index] == e
}
