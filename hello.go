package tlszmq

import (
	"container/list"
	"time"
)

// helloHold is the most a server keeps of a ClientHello whose first record has not all come
// yet, before it gives the peer a TLS engine: a half-open peer that has sent a few bytes costs
// a few bytes, not an engine with its buffers.
const helloHold = 4 << 10

// partialHello is the start of a ClientHello from a peer without a session yet.
type partialHello struct {
	key   string
	route [][]byte
	buf   []byte
	since time.Time
	elem  *list.Element // in helloTable.order
}

// helloTable holds the partial ClientHellos, oldest first. They count towards MaxHalfOpen
// beside the half-open sessions.
type helloTable struct {
	byKey map[string]*partialHello
	order *list.List // *partialHello, oldest first
}

func newHelloTable() *helloTable {
	return &helloTable{byKey: make(map[string]*partialHello), order: list.New()}
}

func (t *helloTable) len() int { return len(t.byKey) }

func (t *helloTable) add(h *partialHello) {
	t.byKey[h.key] = h
	h.elem = t.order.PushBack(h)
}

func (t *helloTable) remove(h *partialHello) {
	delete(t.byKey, h.key)
	t.order.Remove(h.elem)
}

// oldest returns the partial ClientHello that started first, or nil.
func (t *helloTable) oldest() *partialHello {
	if e := t.order.Front(); e != nil {
		return e.Value.(*partialHello)
	}
	return nil
}

// helloIncomplete reports whether p, the start of a ClientHello, stops before the end of its
// first record, and the record is one a server would wait for (a larger length is left for
// OpenSSL to refuse).
func helloIncomplete(p []byte) bool {
	if p[0] != 22 {
		return false // an SSLv2-format ClientHello: OpenSSL's to judge
	}
	if len(p) < 5 {
		return true
	}
	n := int(p[3])<<8 | int(p[4])
	return n <= 1<<14 && len(p) < 5+n
}
