package tlszmq

import (
	"context"
	"errors"
	"time"
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
