package tlszmq

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq/internal/zmqpoll"
)

// This file holds what lets goroutines share a Client: its lock, the waiters for replies and
// messages, and the goroutine that reads the socket for all of them.
//
// One lock (Client.lk) guards the socket, the engine and every field they feed. Whoever holds
// it is the only goroutine that touches them; a goroutine that needs a reply takes the role of
// the reader if nobody has it (Client.reader), and reads frames for everyone, handing each
// message to the Request that waits for it (the FIFO Client.pending) or to the inbox, for
// Recv. The others sleep on their waiter's channel until their message comes or the reader
// leaves, when one of them becomes the reader. So the socket has one user at a time, and a
// single goroutine pays nothing but an uncontended lock for all this.
//
// The reader polls with the lock held; a goroutine that wants the lock (to send, say) makes it
// give way: it counts itself in Client.want and, if the reader is polling, wakes it through an
// inproc pair of sockets made the first time it is needed (a zmq poll waits on sockets only).
// The reader looks at want after it has said it polls and before it polls, and the other
// goroutine at polling after it has counted itself, so one of them always sees the other.

// waitKind says what a waiter waits for.
type waitKind uint8

const (
	waitReply waitKind = iota // a Request's reply: the message pending hands it
	waitRecv                  // a message in the inbox, for Recv
	waitOwed                  // REQ: the frame owed, so that the socket may send again
)

// waiter is one goroutine waiting inside the client. Its fields are guarded by the client's
// lock; kick wakes it when it sleeps.
type waiter struct {
	kind     waitKind
	kick     chan struct{}
	sleeping bool     // in Client.sleepers, waiting on kick without the lock
	done     bool     // waitReply: reply is its message
	reply    [][]byte //
	err      error    // waitReply: what ended the wait for the reply (closed, restarted, ...)
	gone     bool     // waitReply: the caller gave up; its reply is dropped when it comes
}

var waiters = sync.Pool{New: func() any { return &waiter{kick: make(chan struct{}, 1)} }}

func getWaiter(kind waitKind) *waiter {
	w := waiters.Get().(*waiter)
	w.kind = kind
	select {
	case <-w.kick: // a kick that came after its last wait had ended
	default:
	}
	return w
}

// putWaiter recycles a waiter that no list holds any more.
func putWaiter(w *waiter) {
	*w = waiter{kick: w.kick}
	waiters.Put(w)
}

// wakeUp wakes w if it sleeps.
func (w *waiter) wakeUp() {
	if w.sleeping {
		kick(w.kick)
	}
}

// kick wakes the goroutine that sleeps on ch, or will: a kick already there is enough.
func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// fifo is the queue of Requests waiting for their replies, oldest first.
type fifo struct {
	q    []*waiter
	head int
}

func (f *fifo) len() int { return len(f.q) - f.head }

func (f *fifo) push(w *waiter) {
	if f.head > 0 && f.head == len(f.q) {
		f.q, f.head = f.q[:0], 0
	} else if f.head >= 64 && f.head*2 >= len(f.q) {
		n := copy(f.q, f.q[f.head:])
		clear(f.q[n:])
		f.q, f.head = f.q[:n], 0
	}
	f.q = append(f.q, w)
}

func (f *fifo) pop() *waiter {
	w := f.q[f.head]
	f.q[f.head] = nil
	if f.head++; f.head == len(f.q) {
		f.q, f.head = f.q[:0], 0
	}
	return w
}

// onlyGone reports whether the queue holds waiters, all of them gone.
func (f *fifo) onlyGone() bool {
	for _, w := range f.q[f.head:] {
		if !w.gone {
			return false
		}
	}
	return f.len() > 0
}

// wakeup is the inproc pair of sockets through which a goroutine that wants the client's lock
// wakes the reader from its poll. It is made the first time it is needed: a client used by
// one goroutine never has one. tx is used under mu; rx, once published (ready), by the holder
// of the client's lock only, which polls and drains it.
type wakeup struct {
	mu     sync.Mutex
	tx, rx *zmq.Socket
	off    bool        // the client is closed: no pair is made any more
	ready  atomic.Bool // rx exists
}

var wakeSeq atomic.Uint64

// signal wakes the reader, making the pair first if there is none. A pair that cannot be made
// costs the goroutine that wanted the lock the rest of the reader's poll slice.
func (k *wakeup) signal() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.off {
		return
	}
	if k.tx == nil {
		tx, rx, err := newWakePair()
		if err != nil {
			return
		}
		k.tx, k.rx = tx, rx
		k.ready.Store(true)
	}
	k.tx.SendBytes(nil, zmq.DONTWAIT) // a full pipe holds enough wake-ups already
}

func newWakePair() (tx, rx *zmq.Socket, err error) {
	endpoint := fmt.Sprintf("inproc://tlszmq-client-wake-%d", wakeSeq.Add(1))
	if rx, err = zmq.NewSocket(zmq.PAIR); err != nil {
		return nil, nil, err
	}
	if tx, err = zmq.NewSocket(zmq.PAIR); err != nil {
		rx.Close()
		return nil, nil, err
	}
	rx.SetLinger(0)
	tx.SetLinger(0)
	if err = rx.Bind(endpoint); err == nil {
		err = tx.Connect(endpoint)
	}
	if err != nil {
		tx.Close()
		rx.Close()
		return nil, nil, err
	}
	return tx, rx, nil
}

// receiver returns rx once it exists.
func (k *wakeup) receiver() *zmq.Socket {
	if !k.ready.Load() {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.rx
}

// close closes the pair for good; the caller holds the client's lock, so nobody polls rx.
func (k *wakeup) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.off = true
	if k.tx != nil {
		k.tx.Close()
		k.rx.Close()
		k.tx, k.rx = nil, nil
	}
}

// lock takes the client's lock. It waits at most until ctx ends or the client's Timeout (when
// ctx has no deadline) passes, and then fails as a timeout in what ("sending to", ...). The
// lock is a channel of one slot: a goroutine that gives it back hands it to the one that has
// waited longest, and a wait for it can end.
//
// The lock is also the memory barrier that libzmq asks for when a socket moves from one
// thread to another: the goroutines that take turns with the socket may run on any OS thread,
// and each one's use of the socket happens after the last one's, through the lock.
func (c *Client) lock(ctx context.Context, what string) error {
	select {
	case c.lk <- struct{}{}:
		return nil
	default:
	}
	c.contend()
	defer c.want.Add(-1)
	return c.acquire(ctx, c.lk, what)
}

// lockWait takes the client's lock, however long it takes (Close, Flush, the accessors).
func (c *Client) lockWait() {
	select {
	case c.lk <- struct{}{}:
		return
	default:
	}
	c.contend()
	c.lk <- struct{}{}
	c.want.Add(-1)
}

// contend counts the caller among the goroutines that want the lock (it takes itself off
// want once it has the lock or gives up) and wakes the reader if it polls.
func (c *Client) contend() {
	c.want.Add(1)
	if c.polling.Load() {
		c.wake.signal()
	}
}

// acquire fills slot (the lock, or the REQ turn), waiting at most until ctx ends or the
// client's Timeout (when ctx has no deadline) passes; then it fails as a timeout in what.
func (c *Client) acquire(ctx context.Context, slot chan struct{}, what string) error {
	t := time.NewTimer(time.Until(deadline(ctx, c.opts.Timeout)))
	defer t.Stop()
	select {
	case slot <- struct{}{}:
		return nil
	case <-ctx.Done():
		return c.ctxErr(ctx, what)
	case <-t.C:
		return c.timeoutErr(what)
	}
}

func (c *Client) unlock() { <-c.lk }

// yield lets the goroutines that want the lock have it, and takes it back after them.
func (c *Client) yield() {
	<-c.lk
	runtime.Gosched() // one that counted itself in want but has not reached the lock yet
	c.lockWait()
}

// takeTurn waits for a REQ client's turn (see Request) within ctx or the client's Timeout.
func (c *Client) takeTurn(ctx context.Context) error {
	select {
	case c.turn <- struct{}{}:
		return nil
	default:
	}
	return c.acquire(ctx, c.turn, "waiting behind another request to")
}

func (c *Client) giveTurn() { <-c.turn }

// ready reports whether w's wait is over: its reply came or failed (waitReply), the inbox has
// a message or none can come (waitRecv), the frame owed came (waitOwed).
func (c *Client) ready(w *waiter) bool {
	switch w.kind {
	case waitReply:
		return w.done || w.err != nil
	case waitRecv:
		return len(c.inbox) > 0 || c.e.PeerClosed() || c.e.Err() != nil ||
			(c.opts.Pattern == REQ && !c.owed)
	default:
		return !c.owed || c.e.Err() != nil
	}
}

// await waits, with the lock held, until w is ready (see ready), ctx ends or until passes.
// While no other goroutine reads the socket, it does, for everyone; otherwise it sleeps
// without the lock until it is woken: by the reader, with its message, or to take the
// reader's place. It returns with the lock held. A waitReply waiter's error is its own
// (w.err), for the caller to look at.
func (c *Client) await(ctx context.Context, until time.Time, w *waiter, what string) (err error) {
	defer c.leave(w)
	for {
		if c.ready(w) {
			return nil
		}
		if err := c.waitErr(ctx, until, what); err != nil {
			return err
		}
		if c.closed {
			return c.usable()
		}
		if c.reader == nil || c.reader == w {
			c.reader = w
			if err := c.readStep(ctx, until, what); err != nil {
				return err
			}
			continue
		}
		w.sleeping = true
		c.sleepers = append(c.sleepers, w)
		c.unlock()
		c.sleep(ctx, until, w)
		c.lockWait()
		w.sleeping = false
		c.dropSleeper(w)
	}
}

// sleep waits for w's kick, ctx or until, without the lock.
func (c *Client) sleep(ctx context.Context, until time.Time, w *waiter) {
	t := time.NewTimer(time.Until(until))
	defer t.Stop()
	select {
	case <-w.kick:
	case <-ctx.Done():
	case <-t.C:
	}
}

func (c *Client) dropSleeper(w *waiter) {
	for i, s := range c.sleepers {
		if s == w {
			copy(c.sleepers[i:], c.sleepers[i+1:])
			c.sleepers[len(c.sleepers)-1] = nil
			c.sleepers = c.sleepers[:len(c.sleepers)-1]
			return
		}
	}
}

// leave ends w's wait: a Request that did not get its reply leaves its place in pending,
// marked gone, for its reply to be dropped when it comes; a reader gives its role to a
// sleeper.
func (c *Client) leave(w *waiter) {
	if w.kind == waitReply && !w.done && w.err == nil {
		w.gone = true
	}
	if c.reader == w {
		c.reader = nil
	}
	if c.reader == nil && len(c.sleepers) > 0 {
		kick(c.sleepers[0].kick)
	}
}

// kickAll wakes every sleeper, to look again at the client (it closed, the session failed).
func (c *Client) kickAll() {
	for _, s := range c.sleepers {
		kick(s.kick)
	}
}

// kickKind wakes the sleepers of one kind.
func (c *Client) kickKind(kind waitKind) {
	for _, s := range c.sleepers {
		if s.kind == kind {
			kick(s.kick)
		}
	}
}

// failPending ends the wait of every Request in pending with err: their replies will not
// come (the session failed, restarted or closed). Gone ones just go.
func (c *Client) failPending(err error) {
	for c.pending.len() > 0 {
		if w := c.pending.pop(); !w.gone {
			w.err = err
			w.wakeUp()
		}
	}
	c.kickAll()
}

// deliver hands the messages of a frame to the Requests waiting, oldest first, and the rest
// to the inbox. A gone Request's message is dropped.
func (c *Client) deliver(msgs [][][]byte) {
	toInbox := false
	for _, m := range msgs {
		if c.pending.len() > 0 {
			if w := c.pending.pop(); !w.gone {
				w.reply, w.done = m, true
				w.wakeUp()
			}
			continue
		}
		c.inbox = append(c.inbox, m)
		toInbox = true
	}
	if toInbox {
		c.kickKind(waitRecv)
	}
}

// afterFrame settles what a frame ends: over REQ it is the whole reply, so a Request it
// brought no message for gets an error, and every sleeper looks again (the socket may send,
// a Recv has its answer); a peer's close_notify ends every wait.
func (c *Client) afterFrame() {
	if c.e.PeerClosed() {
		c.failPending(c.peerClosedErr()) // the reason a Request got no message, if it did not
	}
	if c.opts.Pattern == REQ {
		var noMessage error // made only for a Request that waits in vain
		if c.pending.len() > 0 {
			noMessage = c.noMessageErr()
		}
		c.failPending(noMessage)
	}
}

// readStep, for the reader, with the lock held: it polls the socket for at most a slice and
// takes the frame that came, if any, handing out its messages; or it yields the lock to the
// goroutines that want it. Errors other than the wait's end (ctx, until: see waitErr) end
// the session: every Request waiting gets the error.
func (c *Client) readStep(ctx context.Context, until time.Time, what string) error {
	if !c.wakePolled {
		if rx := c.wake.receiver(); rx != nil {
			c.poller.Add(rx, zmq.POLLIN)
			c.wakePolled = true
		}
	}
	c.polling.Store(true)
	if c.want.Load() > 0 {
		c.polling.Store(false)
		c.yield()
		return nil
	}
	frame, err := c.poll(until, what)
	c.polling.Store(false)
	if err == nil && frame {
		var payload []byte
		if payload, err = c.recvPayload(what); err == nil {
			err = opError(what, c.endpoint, c.absorb(payload))
		}
	}
	if err != nil {
		c.failPending(err)
		return c.fail(err)
	}
	return nil
}

// poll waits up to a poll slice, or until until, for a frame on the socket. It drains the
// wake-ups that came instead.
func (c *Client) poll(until time.Time, what string) (frame bool, err error) {
	wait := min(pollSlice, time.Until(until))
	polled, err := zmqpoll.Poll(c.poller, max(wait, 0))
	if err != nil {
		return false, &OpError{Op: what, Endpoint: c.endpoint, Err: fmt.Errorf("polling: %w", err)}
	}
	for _, p := range polled {
		if p.Socket == c.sock {
			frame = true
		} else {
			for {
				if _, err := p.Socket.RecvBytes(zmq.DONTWAIT); err != nil {
					break
				}
			}
		}
	}
	return frame, nil
}

// recvPayload takes the frame that poll said is there.
func (c *Client) recvPayload(what string) ([]byte, error) {
	frames, err := c.sock.RecvMessageBytes(0)
	if err != nil {
		return nil, opError(what, c.endpoint, err)
	}
	c.owed = false
	return payloadOf(frames), nil
}

// waitErr returns why a wait must end: the client is closing, ctx ended, until passed.
func (c *Client) waitErr(ctx context.Context, until time.Time, what string) error {
	if c.closing.Load() {
		return &OpError{Op: what, Endpoint: c.endpoint, Err: errClientClosed}
	}
	if ctx.Err() != nil {
		return c.ctxErr(ctx, what)
	}
	if !until.IsZero() && !time.Now().Before(until) {
		return c.timeoutErr(what)
	}
	return nil
}

// timeoutErr is the error of a wait that ran out of time, by the client's Timeout or by a
// context's deadline: both ErrTimeout and context.DeadlineExceeded, naming the endpoint.
func (c *Client) timeoutErr(what string) error {
	return &OpError{Op: what, Endpoint: c.endpoint, Err: timedOut{}}
}

// ctxErr is the error of a wait whose context ended: a deadline is a timeout (timeoutErr), a
// cancellation wraps context.Canceled (or the context's cause).
func (c *Client) ctxErr(ctx context.Context, what string) error {
	err := ctx.Err()
	if err == context.DeadlineExceeded {
		return c.timeoutErr(what)
	}
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return &OpError{Op: what, Endpoint: c.endpoint, Err: fmt.Errorf("%w (%w)", err, cause)}
	}
	return &OpError{Op: what, Endpoint: c.endpoint, Err: err}
}
