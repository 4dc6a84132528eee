package zmqpoll

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// A Waiter waits for one ZeroMQ socket in Go's network poller rather than in zmq_poll: it
// watches the socket's ZMQ_FD (libzmq's signal that the socket's state may have changed), so
// a waiting goroutine holds no thread blocked in C, and another goroutine wakes it with Wake
// instead of a message through a second socket. Wait, Close and everything done with the
// socket belong to one goroutine; Wake may be called from any.
//
// ZMQ_FD is edge-triggered: it signals a change, not a state. Wait therefore asks the caller
// whether it has something to do only after the poller's readiness has been reset, and the
// caller's check reads ZMQ_EVENTS (Readable), which also takes libzmq's pending commands: a
// change after that check signals the descriptor again and ends the wait.
type Waiter struct {
	f     *os.File // a duplicate of ZMQ_FD, registered with Go's poller
	rc    syscall.RawConn
	woken atomic.Bool // Wake was called since the last Wait looked
	armed atomic.Bool // a Wait may be blocked: Wake must interrupt it

	// The Wait in progress, for check (made once, so that a Wait allocates nothing).
	ready func() bool
	said  bool
	check func(uintptr) bool
}

// longAgo is the deadline with which Wake ends a blocked Wait.
var longAgo = time.Unix(1, 0)

// NewWaiter returns a Waiter for sock. It fails if the descriptor cannot be waited for in
// Go's poller (libzmq gives a non-blocking eventfd or socket on the platforms Go polls).
func NewWaiter(sock *zmq.Socket) (*Waiter, error) {
	fd, err := sock.GetFd()
	if err != nil {
		return nil, fmt.Errorf("ZMQ_FD: %w", err)
	}
	// Duplicated with its close-on-exec flag in one call: no fork, Go's or C's, sees it without.
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return nil, fmt.Errorf("duplicating ZMQ_FD: %w", errno)
	}
	dup := int(r)
	// The duplicate shares libzmq's open file description, so it is non-blocking as libzmq
	// made it, and os.NewFile registers it with the poller; it is never read or written.
	f := os.NewFile(uintptr(dup), "zmq-fd")
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("ZMQ_FD cannot be polled by Go: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	w := &Waiter{f: f, rc: rc}
	w.check = func(uintptr) bool {
		woken := w.woken.Swap(false)
		w.said = w.ready() || woken // ready is always asked: it records what it found
		return w.said
	}
	return w, nil
}

// Wait returns once ready reports true, Wake is called or d has passed (d ≤ 0: ready is
// asked once). ready runs on the caller's goroutine, first and after every signal of the
// descriptor; it reports whether the caller has work, and must read ZMQ_EVENTS if the
// socket is among what it looks at. Wait reports whether ready said true or Wake was called.
// It may also return false before d has passed, when a Wake meant for an earlier Wait comes
// late: a caller that waits for time to pass looks at the clock.
func (w *Waiter) Wait(d time.Duration, ready func() bool) (bool, error) {
	woken := w.woken.Swap(false)
	if ready() || woken {
		return true, nil
	}
	if d <= 0 {
		return false, nil
	}
	if err := w.f.SetReadDeadline(time.Now().Add(d)); err != nil {
		return false, err
	}
	w.ready, w.said = ready, false
	w.armed.Store(true)
	err := w.rc.Read(w.check)
	w.armed.Store(false)
	w.ready = nil
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return w.woken.Swap(false), nil
	}
	return w.said, err
}

// Wake ends a Wait in progress, or makes the next one return at once. Any goroutine may call
// it, and any number of times: wake-ups that come together count as one.
func (w *Waiter) Wake() {
	if w.woken.Swap(true) {
		return // a wake-up is pending: the waiter has not looked since
	}
	if w.armed.Load() {
		w.f.SetReadDeadline(longAgo)
	}
}

// Close releases the duplicate descriptor; call it before the socket is closed, from the
// goroutine that waits.
func (w *Waiter) Close() error { return w.f.Close() }

// Readable reports whether sock has a message to receive (ZMQ_EVENTS), taking libzmq's
// pending commands as it asks: the check a Wait's ready must make before it says false. An
// interrupted check (EINTR) reads as readable: the receive that follows finds out. Any other
// error, such as ETERM once ZeroMQ's context is terminated, is returned: the socket is done.
func Readable(sock *zmq.Socket) (bool, error) {
	ev, err := sock.GetEvents()
	if errors.Is(err, eintr) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return ev&zmq.POLLIN != 0, nil
}
