// Package zmqpoll holds the ways the project waits for ZeroMQ sockets: Poll and Recv in
// zmq_poll, for loops that watch several sockets; a Waiter in Go's netpoller, for the server's
// one socket, which other goroutines wake.
package zmqpoll

import (
	"errors"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// eintr is the error of a poll that a signal interrupted.
var eintr = zmq.Errno(4)

// Poll waits up to timeout for the poller's sockets. A poll interrupted by a signal (EINTR,
// as when SIGTERM arrives) reads as nothing ready: the caller's loop looks at its context and
// polls again.
func Poll(p *zmq.Poller, timeout time.Duration) ([]zmq.Polled, error) {
	polled, err := p.Poll(timeout)
	if errors.Is(err, eintr) {
		return nil, nil
	}
	return polled, err
}

// Recv waits up to timeout for a message on sock, the poller's only socket, and returns it;
// nil with a nil error when none came (or a signal interrupted the wait).
func Recv(p *zmq.Poller, sock *zmq.Socket, timeout time.Duration) ([][]byte, error) {
	polled, err := Poll(p, timeout)
	if err != nil || len(polled) == 0 {
		return nil, err
	}
	return sock.RecvMessageBytes(0)
}
