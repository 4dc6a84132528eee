package perf

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq"
)

// BulkStreams measures bulk throughput into one server of transport t: clients sessions in
// another process (see RunChildIfAsked) each stream messages of size bytes one way, within a
// credit window of their own, all at once, for d. A client marks the last message of every
// chunk of its window (its first byte is 1, the others' 0) and the server answers each marked
// message with an acknowledgement, so that the server keeps no count per session. It returns
// the messages the server took in d, and the CPU time this process, the server's, used
// meanwhile. A tlszmq server (t.Name TLS) runs with keys and the given workers; a plain
// ZeroMQ or CURVE one is a ROUTER on one goroutine.
func BulkStreams(t Transport, keys *Keys, size, clients, workers int, d time.Duration) (n int, elapsed, serverCPU time.Duration, err error) {
	job := clientJob{Kind: Streams, Clients: clients, Transport: t.Name, Suite: t.Suite, Size: size}
	var count func() int64
	switch t.Name {
	case TLS:
		var srv *tlszmq.Server
		if srv, err = tlszmq.NewServer(keys.Server, "tcp://127.0.0.1:*", acknowledgeMarked,
			&tlszmq.ServerOptions{Logger: quietLog, Workers: workers}); err != nil {
			return 0, 0, 0, err
		}
		stop := serve(srv)
		defer func() {
			if serr := stop(); err == nil && serr != nil {
				err = serr
			}
		}()
		job.Endpoint, job.CAPEM = srv.Endpoint(), keys.CAPEM
		count = func() int64 { return srv.Stats().MessagesIn }
	case Plain, Curve:
		var s *zmqSink
		if s, err = newZMQSink(t.Name == Curve); err != nil {
			return 0, 0, 0, err
		}
		defer func() {
			if serr := s.close(); err == nil && serr != nil {
				err = serr
			}
		}()
		job.Endpoint, job.CurveServerKey = s.endpoint, s.publicKey
		count = s.received.Load
	default:
		return 0, 0, 0, fmt.Errorf("unknown transport %q", t.Name)
	}
	return countWithClients(job, count, d)
}

// streamsCredit is the credit window of each bulk streams client: at most window messages
// unacknowledged, about 1 MiB, and an acknowledgement for every chunk of them.
func streamsCredit(size int) (window, chunk int) {
	window = min(max((1<<20)/max(size, 1), 4), 256)
	return window, max(window/4, 1)
}

// streamsMessages are a bulk stream's messages of size bytes: unmarked, and marked for an
// acknowledgement.
func streamsMessages(size int) (unmarked, marked []byte) {
	unmarked, marked = make([]byte, size), make([]byte, size)
	marked[0] = 1
	return unmarked, marked
}

// acknowledgeMarked is the tlszmq server's Handler of bulk streams: an acknowledgement for a
// marked message, nothing for the others.
func acknowledgeMarked(_ context.Context, _ *tlszmq.Peer, msg [][]byte) ([][]byte, error) {
	if len(msg) == 1 && len(msg[0]) > 0 && msg[0][0] == 1 {
		return [][]byte{{1}}, nil
	}
	return nil, nil
}

// streamUntil streams messages of size bytes one way until stop, within streamsCredit's
// window: send sends (or gathers) one message, marked for acknowledgement or not, and
// awaitCredit waits for the next acknowledgement. It calls did after each message sent.
func streamUntil(size int, stop *atomic.Bool, did func(), send func(marked bool) error, awaitCredit func() error) error {
	window, chunk := streamsCredit(size)
	for sent, acked := 0, 0; !stop.Load(); {
		if sent-acked < window {
			if err := send((sent+1)%chunk == 0); err != nil {
				return err
			}
			sent++
			did()
			continue
		}
		if err := awaitCredit(); err != nil {
			return err
		}
		acked += chunk
	}
	return nil
}

// streamTLS is a bulk streams client of a tlszmq server: a DEALER Client that gathers
// messages with Queue and sends them with Flush when it runs out of credit.
func streamTLS(ctx *tlszmq.Context, endpoint string, size int, stop *atomic.Bool, did func()) error {
	c, err := tlszmq.NewClient(ctx, endpoint, &tlszmq.ClientOptions{Pattern: tlszmq.DEALER})
	if err != nil {
		return err
	}
	defer c.Close()
	bg := context.Background()
	if err := c.Handshake(bg); err != nil {
		return err
	}
	unmarked, marked := streamsMessages(size)
	return streamUntil(size, stop, did, func(mark bool) error {
		if mark {
			return c.Queue(bg, marked)
		}
		return c.Queue(bg, unmarked)
	}, func() error {
		if err := c.Flush(); err != nil { // what is gathered goes before waiting for credit
			return err
		}
		_, err := c.Recv(bg)
		return err
	})
}

// streamZMQ is a bulk streams client of a plain ZeroMQ server, or with curveServerKey of a
// CURVE one: a DEALER socket.
func streamZMQ(endpoint, curveServerKey string, size int, stop *atomic.Bool, did func()) error {
	sock, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		return err
	}
	defer sock.Close()
	opts := []error{sock.SetLinger(0), sock.SetRcvtimeo(10 * time.Second)}
	if curveServerKey != "" {
		pub, sec, err := zmq.NewCurveKeypair()
		if err != nil {
			return err
		}
		opts = append(opts, sock.SetCurveServerkey(curveServerKey), sock.SetCurvePublickey(pub), sock.SetCurveSecretkey(sec))
	}
	for _, err := range append(opts, sock.Connect(endpoint)) {
		if err != nil {
			return err
		}
	}
	unmarked, marked := streamsMessages(size)
	return streamUntil(size, stop, did, func(mark bool) error {
		msg := unmarked
		if mark {
			msg = marked
		}
		_, err := sock.SendBytes(msg, 0)
		return err
	}, func() error {
		_, err := sock.RecvBytes(0)
		return err
	})
}

// zmqSink is the server of plain ZeroMQ or CURVE bulk streams: a ROUTER on a goroutine of its
// own that counts the messages it takes and acknowledges the marked ones.
type zmqSink struct {
	sock      *zmq.Socket
	endpoint  string
	publicKey string // CURVE: the server's public key (Z85)
	received  atomic.Int64
	stop      chan struct{}
	served    chan error
}

// newZMQSink binds a ROUTER to a port of 127.0.0.1, with CURVE if curve, and serves it.
func newZMQSink(curve bool) (*zmqSink, error) {
	sock, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		return nil, err
	}
	s := &zmqSink{sock: sock, stop: make(chan struct{}), served: make(chan error, 1)}
	fail := func(err error) (*zmqSink, error) {
		sock.Close()
		return nil, err
	}
	if curve {
		if !zmq.HasCurve() {
			return fail(fmt.Errorf("perf: this libzmq has no CURVE support"))
		}
		pub, sec, err := zmq.NewCurveKeypair()
		if err != nil {
			return fail(err)
		}
		if err := sock.SetCurveServer(1); err != nil {
			return fail(err)
		}
		if err := sock.SetCurveSecretkey(sec); err != nil {
			return fail(err)
		}
		s.publicKey = pub
	}
	if err := sock.SetLinger(0); err != nil {
		return fail(err)
	}
	if err := sock.Bind("tcp://127.0.0.1:*"); err != nil {
		return fail(err)
	}
	if s.endpoint, err = sock.GetLastEndpoint(); err != nil {
		return fail(err)
	}
	go func() { s.served <- s.serve() }()
	return s, nil
}

// serve takes [id, message] and answers a marked message with [id, acknowledgement], until
// stop is closed.
func (s *zmqSink) serve() error {
	return serveRouter(s.sock, s.stop, func(id []byte) error {
		msg, err := s.sock.RecvBytes(0)
		if err != nil {
			return err
		}
		s.received.Add(1)
		if len(msg) > 0 && msg[0] == 1 {
			return ack(s.sock, id)
		}
		return nil
	})
}

// close stops the sink and returns what its goroutine ended with.
func (s *zmqSink) close() error {
	close(s.stop)
	err := <-s.served
	s.sock.Close()
	return err
}
