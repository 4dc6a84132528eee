package perf

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cbench"
)

// Handshakes measures full TLS 1.3 handshakes per second on one tlszmq Server for d, with
// clients goroutines that handshake over and over. With kept, each client keeps one ZeroMQ
// connection (a DEALER) and runs session after session over it, each behind an envelope frame
// of its own and ended with close_notify: the TLS server's capacity. Without, each handshake
// is a new REQ client with a new ZeroMQ connection, closed after it: what a client that
// connects anew every time costs, TCP and ZMTP set-up included.
//
// It also returns the CPU time the server's thread used meanwhile: Serve runs locked to one OS
// thread, whose user and system time the kernel counts (/proc/self/task/TID/stat). Handshakes
// divided by it is what one core gives the server, comparable with OpenSSL's server side in C
// however busy the clients keep the machine's other cores.
func Handshakes(keys *Keys, clients int, d time.Duration, kept bool) (n int, elapsed, serverCPU time.Duration, err error) {
	srv, err := tlszmq.NewServer(keys.Server, "tcp://127.0.0.1:*",
		func(context.Context, *tlszmq.Peer, [][]byte) ([][]byte, error) { return nil, nil },
		&tlszmq.ServerOptions{Logger: quietLog})
	if err != nil {
		return 0, 0, 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	tid := make(chan int, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		tid <- syscall.Gettid()
		served <- srv.Serve(ctx)
	}()
	defer func() { cancel(); <-served }()
	serverThread := <-tid

	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if kept {
				err = keptConnection(keys.Client, srv.Endpoint(), i, &stop)
			} else {
				err = newConnections(keys.Client, srv.Endpoint(), &stop)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	// Count the server's completed handshakes over d, once the clients are under way.
	time.Sleep(d / 10)
	start, cpu0, t0 := srv.Stats().HandshakesDone, threadCPU(serverThread), time.Now()
	time.Sleep(d)
	done, cpu1, elapsed := srv.Stats().HandshakesDone-start, threadCPU(serverThread), time.Since(t0)
	stop.Store(true)
	wg.Wait()
	select {
	case err := <-errs:
		return 0, 0, 0, err
	default:
	}
	return int(done), elapsed, cpu1 - cpu0, nil
}

// threadCPU is the user and system time a thread of this process has used, in the kernel's
// clock ticks (1/100 s), or 0 if it cannot be read.
func threadCPU(tid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", tid))
	if err != nil {
		return 0
	}
	// The fields after the command name (which may hold spaces) close with ")".
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// newConnections handshakes with a new REQ client each time until stop.
func newConnections(ctx *tlszmq.Context, endpoint string, stop *atomic.Bool) error {
	for !stop.Load() {
		c, err := tlszmq.NewClient(ctx, endpoint, nil)
		if err == nil {
			err = c.Handshake(context.Background())
			c.Close()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// keptConnection runs session after session over one DEALER until stop.
func keptConnection(ctx *tlszmq.Context, endpoint string, client int, stop *atomic.Bool) error {
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
