package perf

import (
	"errors"
	"fmt"
	"sync"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// A link is a client and a server, connected and ready, for one transport and pattern.
type link interface {
	// run makes n lock-step round trips, or streams n messages one way and returns once the
	// server has taken all of them.
	run(msg []byte, n int) error
	close() error
}

// credit is the streaming window: a DEALER keeps at most window messages unacknowledged, and
// the server acknowledges every chunk messages. Both shrink for large messages, so that about
// 8 MiB is in flight whatever the size.
func credit(size int) (window, chunk int) {
	window = min(max((8<<20)/max(size, 1), 8), 512)
	return window, window / 4
}

// stream sends n messages of size bytes one way within the credit window: send sends (or
// gathers) one, awaitCredit waits for the server's acknowledgement of the next chunk. It
// returns once every message has been acknowledged (n is a whole number of chunks).
func stream(size, n int, send, awaitCredit func() error) error {
	window, chunk := credit(size)
	for sent, acked := 0, 0; sent < n || acked < sent; {
		if sent < n && sent-acked < window {
			if err := send(); err != nil {
				return err
			}
			sent++
			continue
		}
		if err := awaitCredit(); err != nil {
			return err
		}
		acked += chunk
	}
	return nil
}

// zmqLink is plain ZeroMQ or CURVE: raw zmq4 sockets, an echo (round trips) or counting
// (streaming) ROUTER on its own goroutine.
type zmqLink struct {
	pattern  string
	client   *zmq.Socket
	server   *zmq.Socket
	stop     chan struct{}
	done     sync.WaitGroup
	serveErr error
}

func newZMQLink(pattern string, curve bool, size int) (*zmqLink, error) {
	l := &zmqLink{pattern: pattern, stop: make(chan struct{})}
	var err error
	if l.server, err = zmq.NewSocket(zmq.ROUTER); err != nil {
		return nil, err
	}
	ctype := zmq.REQ
	if pattern == Stream {
		ctype = zmq.DEALER
	}
	if l.client, err = zmq.NewSocket(ctype); err != nil {
		l.server.Close()
		return nil, err
	}
	fail := func(err error) (*zmqLink, error) {
		l.client.Close()
		l.server.Close()
		return nil, err
	}
	if curve {
		if !zmq.HasCurve() {
			return fail(errors.New("perf: this libzmq has no CURVE support"))
		}
		spub, ssec, err := zmq.NewCurveKeypair()
		if err != nil {
			return fail(err)
		}
		cpub, csec, err := zmq.NewCurveKeypair()
		if err != nil {
			return fail(err)
		}
		for _, e := range []error{l.server.SetCurveServer(1), l.server.SetCurveSecretkey(ssec),
			l.client.SetCurveServerkey(spub), l.client.SetCurvePublickey(cpub), l.client.SetCurveSecretkey(csec)} {
			if e != nil {
				return fail(e)
			}
		}
	}
	for _, s := range []*zmq.Socket{l.client, l.server} {
		if err := s.SetLinger(0); err != nil {
			return fail(err)
		}
	}
	if err := l.server.Bind("tcp://127.0.0.1:*"); err != nil {
		return fail(err)
	}
	ep, err := l.server.GetLastEndpoint()
	if err == nil {
		err = l.client.Connect(ep)
	}
	if err != nil {
		return fail(err)
	}
	_, chunk := credit(size)
	l.done.Add(1)
	go func() {
		defer l.done.Done()
		l.serveErr = l.serve(chunk)
	}()
	return l, nil
}

// serveRouter takes the messages of a ROUTER until stop is closed: it receives each one's
// first frame (the peer's id) and hands it to each, which takes the rest and answers.
func serveRouter(sock *zmq.Socket, stop <-chan struct{}, each func(id []byte) error) error {
	poller := zmq.NewPoller()
	poller.Add(sock, zmq.POLLIN)
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		polled, err := poller.Poll(50 * time.Millisecond)
		if err != nil {
			return err
		}
		if len(polled) == 0 {
			continue
		}
		for {
			id, err := sock.RecvBytes(zmq.DONTWAIT)
			if err != nil {
				break
			}
			if err := each(id); err != nil {
				return err
			}
		}
	}
}

// serve echoes each request (round trips) or acknowledges every chunk messages (streaming).
func (l *zmqLink) serve(chunk int) error {
	got := 0
	return serveRouter(l.server, l.stop, func(id []byte) error {
		if l.pattern == Roundtrip {
			// [id, "", request] back as [id, "", reply]
			if _, err := l.server.SendBytes(id, zmq.SNDMORE); err != nil {
				return err
			}
			for more := true; more; {
				part, err := l.server.RecvBytes(0)
				if err != nil {
					return err
				}
				more, _ = l.server.GetRcvmore()
				flag := zmq.Flag(0)
				if more {
					flag = zmq.SNDMORE
				}
				if _, err := l.server.SendBytes(part, flag); err != nil {
					return err
				}
			}
			return nil
		}
		if _, err := l.server.RecvBytes(0); err != nil { // [id, message]
			return err
		}
		if got++; got%chunk == 0 {
			return ack(l.server, id)
		}
		return nil
	})
}

// ack sends a streaming client its acknowledgement.
func ack(sock *zmq.Socket, id []byte) error {
	if _, err := sock.SendBytes(id, zmq.SNDMORE); err != nil {
		return err
	}
	_, err := sock.SendBytes([]byte{1}, 0)
	return err
}

func (l *zmqLink) run(msg []byte, n int) error {
	if l.pattern == Roundtrip {
		for range n {
			if _, err := l.client.SendBytes(msg, 0); err != nil {
				return err
			}
			reply, err := l.client.RecvBytes(0)
			if err != nil {
				return err
			}
			if len(reply) != len(msg) {
				return fmt.Errorf("perf: a reply of %d bytes to a request of %d", len(reply), len(msg))
			}
		}
		return nil
	}
	return stream(len(msg), n, func() error {
		_, err := l.client.SendBytes(msg, 0)
		return err
	}, func() error {
		_, err := l.client.RecvBytes(0)
		return err
	})
}

func (l *zmqLink) close() error {
	close(l.stop)
	l.done.Wait()
	l.client.Close()
	l.server.Close()
	return l.serveErr
}
