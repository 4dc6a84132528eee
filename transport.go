package tlszmq

import (
	"context"
	"errors"
	"fmt"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq/internal/zmqpoll"
)

// ErrTimeout is wrapped by the error of a wait that ran out of time; the error names the
// endpoint that did not answer.
var ErrTimeout = errors.New("tlszmq: timed out")

// DefaultTimeout bounds a handshake or a request whose context has no deadline.
const DefaultTimeout = 10 * time.Second

// DefaultMaxMessageSize is the largest ZeroMQ message (ZMQ_MAXMSGSIZE) and message part that
// clients and servers accept unless told otherwise.
const DefaultMaxMessageSize = 64 << 20

// pollSlice is how long one poll waits before the loop looks at its context and timers again.
const pollSlice = 50 * time.Millisecond

// waitReadable waits until sock has a message, ctx ends, or until (if not zero) passes. It
// returns ErrTimeout when the time runs out, wrapped with what was awaited from whom ("reply
// from", the endpoint: joined only then, so that waiting allocates nothing).
func waitReadable(ctx context.Context, poller *zmq.Poller, until time.Time, what, from string) error {
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("tlszmq: %s %s: %w", what, from, err)
		}
		wait := pollSlice
		if !until.IsZero() {
			left := time.Until(until)
			if left <= 0 {
				return fmt.Errorf("%w: %s %s", ErrTimeout, what, from)
			}
			wait = min(wait, left)
		}
		polled, err := zmqpoll.Poll(poller, wait)
		if err != nil {
			return fmt.Errorf("tlszmq: %s %s: polling: %w", what, from, err)
		}
		if len(polled) > 0 {
			return nil
		}
	}
}

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
