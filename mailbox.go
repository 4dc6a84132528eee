package tlszmq

import "sync"

// mailbox is a queue from any number of goroutines to one, which takes everything waiting at
// once. It never blocks a sender: what a sender may put there is bounded by the budgets of
// whoever sends it (frames by MaxMessageSize per session, replies by the frames they answer).
type mailbox[T any] struct {
	mu     sync.Mutex
	items  []T
	closed bool
	signal chan struct{} // one token while items waits to be taken, for a receiver that selects
}

func newMailbox[T any]() *mailbox[T] { return &mailbox[T]{signal: make(chan struct{}, 1)} }

// put adds v. It reports whether the mailbox was empty (the receiver may be asleep: whoever
// wakes it by other means than signal does so then), and false for ok once the mailbox is
// closed, v dropped.
func (m *mailbox[T]) put(v T) (first, ok bool) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return false, false
	}
	first = len(m.items) == 0
	m.items = append(m.items, v)
	m.mu.Unlock()
	if first {
		select {
		case m.signal <- struct{}{}:
		default:
		}
	}
	return first, true
}

// take returns what waits, oldest first, and leaves spare (emptied by the caller, from its
// previous take) as the mailbox's storage, so that a steady flow allocates nothing.
func (m *mailbox[T]) take(spare []T) []T {
	m.mu.Lock()
	items := m.items
	m.items = spare[:0]
	m.mu.Unlock()
	return items
}

// waiting reports whether anything waits to be taken.
func (m *mailbox[T]) waiting() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items) > 0
}

// close makes later puts fail, and returns what was still waiting.
func (m *mailbox[T]) close() []T {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	items := m.items
	m.items = nil
	return items
}
