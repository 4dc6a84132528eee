package tlszmq

import (
	"context"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// BenchmarkRoundTrip is one client's request and reply through a Server over tcp on the
// loopback, beside the same round trip over plain ZeroMQ (REQ to ROUTER, echoed), so that the
// server's own cost per round trip shows as the difference.
func BenchmarkRoundTrip(b *testing.B) {
	for _, size := range []int{64, 1 << 10, 16 << 10} {
		msg := make([]byte, size)
		b.Run(sizeName(size)+"/tlszmq", func(b *testing.B) {
			srv := startServer(b, serverConfig("server-ec"), "tcp://127.0.0.1:*", echo, nil)
			c := newClient(b, &Config{InsecureSkipVerify: true, CipherSuites: benchSuite}, srv.Endpoint(), nil)
			ctx := context.Background()
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := c.Request(ctx, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(sizeName(size)+"/zmq", func(b *testing.B) {
			ep, stop := plainEcho(b)
			defer stop()
			req, _ := zmq.NewSocket(zmq.REQ)
			defer req.Close()
			req.SetLinger(0)
			req.Connect(ep)
			b.SetBytes(int64(size))
			for b.Loop() {
				req.SendBytes(msg, 0)
				if _, err := req.RecvBytes(0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// plainEcho runs a ROUTER that echoes every message, on a goroutine of its own.
func plainEcho(b *testing.B) (string, func()) {
	r, _ := zmq.NewSocket(zmq.ROUTER)
	r.SetLinger(0)
	r.Bind("tcp://127.0.0.1:*")
	ep, _ := r.GetLastEndpoint()
	r.SetRcvtimeo(50 * time.Millisecond) // so that stop is seen
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		defer r.Close()
		for {
			select {
			case <-done:
				return
			default:
			}
			msg, err := r.RecvMessageBytes(0)
			if err != nil {
				continue
			}
			r.SendMessage(msg)
		}
	}()
	return ep, func() { close(done); <-stopped }
}
