package cli

import (
	"time"

	zmq "github.com/pebbe/zmq4"
)

// flushZMQ waits, at most for wait, until the messages queued on closed sockets have left: it
// terminates ZeroMQ's default context, which honours each socket's linger, so that the
// close_notify a command's Close queued does not die with the process. ZeroMQ cannot be used
// afterwards: commands call it last.
func flushZMQ(wait time.Duration) {
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
