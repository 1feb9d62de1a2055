package coordinator

import "sync"

// mailbox is an unbounded FIFO of functions for the coordinator's loop.
// post never blocks, so NATS callbacks and the journal's acknowledgement
// goroutine can always hand work to the loop, even while the loop itself
// waits on them.
type mailbox struct {
	mu     sync.Mutex
	items  []func()
	notify chan struct{}
}

func newMailbox() *mailbox {
	return &mailbox{notify: make(chan struct{}, 1)}
}

func (m *mailbox) post(fn func()) {
	m.mu.Lock()
	m.items = append(m.items, fn)
	m.mu.Unlock()

	select {
	case m.notify <- struct{}{}:
	default:
	}
}

// take removes and returns every queued function, oldest first.
func (m *mailbox) take(buf []func()) []func() {
	m.mu.Lock()
	defer m.mu.Unlock()

	buf = append(buf[:0], m.items...)
	clear(m.items)
	m.items = m.items[:0]
	return buf
}
