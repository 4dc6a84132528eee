package tlszmq

import (
	"context"
	"errors"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// ErrTimeout is wrapped by the error of a wait that ran out of time; the error names the
// endpoint that did not answer. A Client's wait that runs out of time, whether by its
// ClientOptions.Timeout or by a context's deadline, wraps context.DeadlineExceeded too.
var ErrTimeout = errors.New("tlszmq: timed out")

// DefaultTimeout bounds a handshake or a request whose context has no deadline.
const DefaultTimeout = 10 * time.Second

// DefaultMaxMessageSize is the largest ZeroMQ message (ZMQ_MAXMSGSIZE) and message part that
// clients and servers accept unless told otherwise.
const DefaultMaxMessageSize = 64 << 20

// pollSlice is how long one poll waits before the loop looks at its context and timers again.
const pollSlice = 50 * time.Millisecond

// deadline is ctx's deadline, or now plus fallback when it has none.
func deadline(ctx context.Context, fallback time.Duration) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(fallback)
}

// FlushZMQ waits, at most for wait, until the messages queued on closed sockets have left
// (it terminates ZeroMQ's default context, which honours each socket's linger). Programs call
// it after closing their clients and servers and before exiting: without it the close_notify
// that Close queued may die with the process. ZeroMQ cannot be used afterwards.
func FlushZMQ(wait time.Duration) {
	done := make(chan struct{})
	go func() {
		zmq.Term()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(wait):
	}
}
