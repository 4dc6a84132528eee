package perf

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cbench"
)

// Handshakes measures full TLS 1.3 handshakes per second on one tlszmq Server with the given
// workers (tlszmq.ServerOptions.Workers) for d, with clients that handshake over and over in
// another process (see RunChildIfAsked). With kept, each client keeps one ZeroMQ connection
// (a DEALER) and runs session after session over it, each behind an envelope frame of its own
// and ended with close_notify: the TLS server's capacity. Without, each handshake is a new REQ
// client with a new ZeroMQ connection, closed after it: what a client that connects anew every
// time costs, TCP and ZMTP set-up included. The server counts the handshakes
// (Stats.HandshakesDone).
//
// It also returns the CPU time, user and system, this process used meanwhile: the server's
// alone, whichever goroutines and threads its workers ran on, since the clients run elsewhere.
// Handshakes divided by it is what one core gives the server, comparable with OpenSSL's server
// side in C however busy the clients keep the machine's other cores.
func Handshakes(keys *Keys, clients, workers int, d time.Duration, kept bool) (n int, elapsed, serverCPU time.Duration, err error) {
	srv, err := tlszmq.NewServer(keys.Server, "tcp://127.0.0.1:*",
		func(context.Context, *tlszmq.Peer, [][]byte) ([][]byte, error) { return nil, nil },
		&tlszmq.ServerOptions{Logger: quietLog, Workers: workers})
	if err != nil {
		return 0, 0, 0, err
	}
	stop := serve(srv)
	defer func() {
		if serr := stop(); err == nil && serr != nil {
			err = serr
		}
	}()
	job := clientJob{Kind: newConnections, Endpoint: srv.Endpoint(), Clients: clients,
		Transport: TLS, Suite: keys.Suite, CAPEM: keys.CAPEM}
	if kept {
		job.Kind = keptConnections
	}
	return countWithClients(job, func() int64 { return srv.Stats().HandshakesDone }, d)
}

// serve runs srv on a goroutine of its own until the function it returns is called, which
// returns what Serve returned.
func serve(srv *tlszmq.Server) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	return func() error {
		cancel()
		return <-served
	}
}

// newConnection handshakes with a new REQ client each time until stop.
func newConnection(ctx *tlszmq.Context, endpoint string, stop *atomic.Bool, did func()) error {
	for !stop.Load() {
		c, err := tlszmq.NewClient(ctx, endpoint, nil)
		if err == nil {
			err = c.Handshake(context.Background())
			c.Close()
		}
		if err != nil {
			return err
		}
		did()
	}
	return nil
}

// keptConnection runs session after session over one DEALER until stop.
func keptConnection(ctx *tlszmq.Context, endpoint string, client int, stop *atomic.Bool, did func()) error {
	sock, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		return err
	}
	defer sock.Close()
	sock.SetLinger(0)
	sock.SetRcvtimeo(10 * time.Second)
	if err := sock.Connect(endpoint); err != nil {
		return err
	}
	for n := 0; !stop.Load(); n++ {
		if err := openSession(ctx, sock, fmt.Sprintf("c%d-%d", client, n), true); err != nil {
			return err
		}
		did()
	}
	return nil
}

// CLimit measures OpenSSL's own limit: n TLS 1.3 handshakes between two SSL objects over
// memory BIOs in one C thread, with the certificate and key of the given type. It returns
// the handshakes per second of the pair, and of the server's side alone (n divided by the
// time spent in the server's SSL calls).
func CLimit(f *Fixture, ecdsa bool, n int) (pair, server float64, err error) {
	dir, err := os.MkdirTemp("", "tlszmq-bench")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	crt, key, err := f.writeFiles(dir, ecdsa)
	if err != nil {
		return 0, 0, err
	}
	p, err := cbench.NewPair(crt, key, AES128GCM, false)
	if err != nil {
		return 0, 0, err
	}
	defer p.Close()
	if err := p.Handshakes(max(n/20, 1)); err != nil { // warm-up
		return 0, 0, err
	}
	t0 := time.Now()
	if err := p.Handshakes(n); err != nil {
		return 0, 0, err
	}
	return float64(n) / time.Since(t0).Seconds(), float64(n) / p.ServerTime().Seconds(), nil
}
