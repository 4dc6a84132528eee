package tlszmq

import (
	"context"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// BenchmarkRoundTrip is one client's request and reply through a Server over tcp on the
// loopback, beside the same round trip over plain ZeroMQ (REQ to ROUTER, echoed), so that the
// server's own cost per round trip shows as the difference. Two more cases say what that
// difference is made of: "engine" is the least any design over the engine does (a REQ and a
// ROUTER echo, each on one goroutine blocked in its receive, each with its engine: no
// Client, no Server, no workers), and "zmq+work" is plain ZeroMQ with the CPU time of the
// engine's pumps for one round trip (measured first, in memory) spent in three busy waits:
// the client before its send, the server before its reply, the client after its receive.
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
		b.Run(sizeName(size)+"/engine", func(b *testing.B) {
			ep, stop := engineEcho(b)
			defer stop()
			req := plainREQ(b, ep)
			e, err := NewEngine(mustContext(b, RoleClient, &Config{InsecureSkipVerify: true, CipherSuites: benchSuite}), EngineOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			var out []byte
			roundTrip := func() {
				e.Write(msg)
				for {
					out = e.AppendData(out[:0])
					if _, err := req.SendBytes(out, 0); err != nil {
						b.Fatal(err)
					}
					reply, err := req.RecvBytes(0)
					if err != nil {
						b.Fatal(err)
					}
					if err := e.PutData(reply); err != nil {
						b.Fatal(err)
					}
					if e.CanRecv() {
						break
					}
				}
				if got, err := e.Read(); err != nil || len(got) != size {
					b.Fatalf("%d bytes, %v", len(got), err)
				}
			}
			roundTrip() // the handshake
			b.SetBytes(int64(size))
			for b.Loop() {
				roundTrip()
			}
		})
		b.Run(sizeName(size)+"/zmq", func(b *testing.B) {
			ep, stop := plainEcho(b, 0)
			defer stop()
			req := plainREQ(b, ep)
			b.SetBytes(int64(size))
			for b.Loop() {
				req.SendBytes(msg, 0)
				if _, err := req.RecvBytes(0); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(sizeName(size)+"/zmq+work", func(b *testing.B) {
			work := pumpTime(b, msg) / 3
			ep, stop := plainEcho(b, work)
			defer stop()
			req := plainREQ(b, ep)
			b.SetBytes(int64(size))
			for b.Loop() {
				busy(work)
				req.SendBytes(msg, 0)
				if _, err := req.RecvBytes(0); err != nil {
					b.Fatal(err)
				}
				busy(work)
			}
			b.ReportMetric(float64(3*work.Nanoseconds()), "work-ns/op")
		})
	}
}

// busy spins for d, as CPU work would take it.
func busy(d time.Duration) {
	for start := time.Now(); time.Since(start) < d; {
	}
}

// pumpTime measures what the engines' pumps of one round trip of msg cost, both sides, in
// memory: the CPU time a round trip over ZeroMQ adds to plain ZeroMQ's.
func pumpTime(b *testing.B, msg []byte) time.Duration {
	c, s := enginePair(b)
	var wire, plain []byte
	const n = 2000
	start := time.Now()
	for range n {
		c.Write(msg)
		wire = c.AppendData(wire[:0])
		s.PutData(wire)
		plain, _ = s.AppendRead(plain[:0])
		s.Write(plain)
		wire = s.AppendData(wire[:0])
		c.PutData(wire)
		plain, _ = c.AppendRead(plain[:0])
	}
	return time.Since(start) / n
}

// enginePair returns a client and a server engine with their handshake done.
func enginePair(b *testing.B) (c, s *Engine) {
	c, err := NewEngine(mustContext(b, RoleClient, &Config{InsecureSkipVerify: true, CipherSuites: benchSuite}), EngineOptions{})
	if err != nil {
		b.Fatal(err)
	}
	s, err = NewEngine(mustContext(b, RoleServer, serverConfig("server-ec")), EngineOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(); s.Close() })
	c.Write([]byte("x"))
	for !s.CanRecv() {
		s.PutData(c.TakeData())
		c.PutData(s.TakeData())
	}
	s.Read()
	return c, s
}

// plainREQ returns a REQ socket connected to ep, closed when the benchmark ends.
func plainREQ(b *testing.B, ep string) *zmq.Socket {
	req, err := zmq.NewSocket(zmq.REQ)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { req.Close() })
	req.SetLinger(0)
	if err := req.Connect(ep); err != nil {
		b.Fatal(err)
	}
	return req
}

// engineEcho runs a ROUTER that answers every TLS session with the session's own messages,
// one engine per routing id, on a goroutine of its own blocked in its receive.
func engineEcho(b *testing.B) (string, func()) {
	sctx := mustContext(b, RoleServer, serverConfig("server-ec"))
	engines := map[string]*Engine{}
	var out, plain []byte
	return routerLoop(b, func(r *zmq.Socket, msg [][]byte) {
		id := string(msg[0])
		e := engines[id]
		if e == nil {
			var err error
			if e, err = NewEngine(sctx, EngineOptions{}); err != nil {
				return
			}
			engines[id] = e
		}
		if err := e.PutData(msg[len(msg)-1]); err != nil {
			return
		}
		for e.CanRecv() {
			plain, _ = e.AppendRead(plain[:0])
			e.Write(plain)
		}
		out = e.AppendData(out[:0])
		r.SendMessage(msg[0], "", out)
	}, func() {
		for _, e := range engines {
			e.Close()
		}
	})
}

// plainEcho runs a ROUTER that echoes every message after work of busy CPU time, on a
// goroutine of its own.
func plainEcho(b *testing.B, work time.Duration) (string, func()) {
	return routerLoop(b, func(r *zmq.Socket, msg [][]byte) {
		busy(work)
		r.SendMessage(msg)
	}, func() {})
}

// routerLoop binds a ROUTER on the loopback and gives every message to answer, on a goroutine
// of its own, until the returned stop is called; then done runs there.
func routerLoop(b *testing.B, answer func(*zmq.Socket, [][]byte), done func()) (string, func()) {
	r, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		b.Fatal(err)
	}
	r.SetLinger(0)
	r.Bind("tcp://127.0.0.1:*")
	ep, _ := r.GetLastEndpoint()
	r.SetRcvtimeo(50 * time.Millisecond) // so that stop is seen
	quit, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		defer r.Close()
		defer done()
		for {
			select {
			case <-quit:
				return
			default:
			}
			msg, err := r.RecvMessageBytes(0)
			if err != nil {
				continue
			}
			answer(r, msg)
		}
	}()
	return ep, func() { close(quit); <-stopped }
}
