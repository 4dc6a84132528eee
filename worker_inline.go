package tlszmq

import (
	"sync"
	"time"
)

// A handler runs on the worker's own goroutine, which saves two goroutine hand-overs per
// request (most handlers answer in microseconds), but never holds the worker up for long: a
// call that outlasts handlerInline hands the worker over to a new goroutine, which carries on
// with the worker's jobs, while the old one stays with the handler and, once it returns,
// passes the result on as a job, like a handler goroutine. That session's handler runs on a
// goroutine of its own from then on (session.slow). A Reply made while the worker is lent
// hands it over at once: the handler may be waiting for it.

// handlerInline is how long a handler may hold the worker's goroutine before the worker
// carries on without it.
const handlerInline = time.Millisecond

// lending is the state of a worker's goroutine lent to a handler.
type lending struct {
	mu      sync.Mutex
	lent    uint64 // the call the worker's goroutine is in (0: none)
	calls   uint64 // calls made, numbering them
	hurried uint64 // the last call handed over by a Reply, not by its own slowness
	handed  int    // calls handed over, for the tests
}

// handleInline runs the handler on a session's messages on the worker's goroutine. It
// reports false if a call outlasted handlerInline: the goroutine is then no longer the
// worker, and has passed that result and the rest on as jobs.
func (w *worker) handleInline(sess *session, msgs [][][]byte) bool {
	for i, msg := range msgs {
		msgs[i] = nil
		w.lending.mu.Lock()
		w.lending.calls++
		id := w.lending.calls
		w.lending.lent = id
		w.lending.mu.Unlock()
		watch := time.AfterFunc(handlerInline, func() { w.takeOver(id, false) })
		reply, err := w.s.callHandler(sess, msg)
		watch.Stop()
		w.lending.mu.Lock()
		still, slow := w.lending.lent == id, w.lending.hurried != id
		if still {
			w.lending.lent = 0
		}
		w.lending.mu.Unlock()
		if !still {
			// Another goroutine is the worker now: this one is the session's handler
			// goroutine for the rest of these messages.
			sess.w.give(job{kind: jobResult, sess: sess, reply: reply, err: err, slow: slow})
			w.s.handle(sess, msgs[i+1:])
			return false
		}
		sess.inflight--
		w.result(sess, reply, err)
		if sess.ended { // the reply failed the session: the rest are not answered
			sess.inflight = 0
			return true
		}
	}
	return true
}

// takeOver starts a new goroutine as the worker if the worker's goroutine is still in call
// id; hurried says a Reply asked, not the handler's slowness.
func (w *worker) takeOver(id uint64, hurried bool) {
	w.lending.mu.Lock()
	if w.lending.lent != id || id == 0 {
		w.lending.mu.Unlock()
		return
	}
	w.lending.lent = 0
	if hurried {
		w.lending.hurried = id
	}
	w.lending.handed++
	w.lending.mu.Unlock()
	go w.loop()
}

// hurry hands the worker over at once if its goroutine is lent to a handler.
func (w *worker) hurry() {
	w.lending.mu.Lock()
	id := w.lending.lent
	w.lending.mu.Unlock()
	w.takeOver(id, true)
}
