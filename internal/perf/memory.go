package perf

// #include <malloc.h>
// static size_t perf_c_heap(void) { return mallinfo2().uordblks; }
import "C"

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq"
)

// Footprint is the memory of the process at one moment, and its OS threads: glibc's
// per-thread caches and OpenSSL's per-thread error queue belong to threads, and Go keeps the
// threads that blocking cgo calls made it start.
type Footprint struct {
	RSS, GoHeap, CHeap int64
	Threads            int64
}

// MemoryNow collects garbage, returns freed memory to the system and reads the process's
// resident set (/proc/self/status), the Go heap in use and malloc's bytes in use.
func MemoryNow() Footprint {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	f := Footprint{GoHeap: int64(ms.HeapAlloc), CHeap: int64(C.perf_c_heap())}
	if status, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range bytes.Split(status, []byte("\n")) {
			if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
				kb, _ := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))), 10, 64)
				f.RSS = kb << 10
			}
			if v, ok := bytes.CutPrefix(line, []byte("Threads:")); ok {
				f.Threads, _ = strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			}
		}
	}
	return f
}

// Sessions establishes n TLS sessions with one tlszmq Server with the given workers and
// measures, while they are idle, how much the process has grown per session. The clients are
// engines over one DEALER socket, each behind its own envelope frame (as behind a device), and
// are freed once their handshake is done, so that the growth is the server's: n live sessions
// in its table.
func Sessions(keys *Keys, n, workers int) (per Footprint, err error) {
	srv, err := tlszmq.NewServer(keys.Server, "tcp://127.0.0.1:*",
		func(context.Context, *tlszmq.Peer, [][]byte) ([][]byte, error) { return nil, nil },
		&tlszmq.ServerOptions{Logger: quietLog, MaxSessions: n + 16, IdleTimeout: time.Hour, Workers: workers})
	if err != nil {
		return per, err
	}
	defer serve(srv)()

	sock, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		return per, err
	}
	defer sock.Close()
	sock.SetLinger(0)
	sock.SetRcvtimeo(10 * time.Second)
	if err := sock.Connect(srv.Endpoint()); err != nil {
		return per, err
	}
	// One session first, so that what is made once (pools, the socket's buffers) is not
	// counted per session.
	if err := openSession(keys.Client, sock, "warm-up", false); err != nil {
		return per, err
	}
	before := MemoryNow()
	for i := range n {
		if err := openSession(keys.Client, sock, fmt.Sprintf("s%07d", i), false); err != nil {
			return per, fmt.Errorf("session %d: %w", i, err)
		}
	}
	if live := srv.Stats().Sessions; live != int64(n)+1 {
		return per, fmt.Errorf("perf: the server holds %d sessions, want %d", live, n+1)
	}
	// Idle means quiet for longer than the server waits before it lets a session's buffers
	// go (a second).
	time.Sleep(1500 * time.Millisecond)
	after := MemoryNow()
	return Footprint{
		RSS:    (after.RSS - before.RSS) / int64(n),
		GoHeap: (after.GoHeap - before.GoHeap) / int64(n),
		CHeap:  (after.CHeap - before.CHeap) / int64(n),
	}, nil
}

// openSession runs one client engine's handshake through sock behind the envelope frame hop,
// including the server's answer to the client's last flight (the session tickets); with
// closeAfter it then ends the session with close_notify and takes the server's.
func openSession(ctx *tlszmq.Context, sock *zmq.Socket, hop string, closeAfter bool) error {
	e, err := tlszmq.NewClientEngine(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	if err := e.Update(); err != nil {
		return err
	}
	for !e.HandshakeComplete() {
		if err := exchange(e, sock, hop); err != nil {
			return err
		}
	}
	if e.NeedsWrite() { // TLS 1.3: the last flight, and the tickets back
		if err := exchange(e, sock, hop); err != nil {
			return err
		}
	}
	if !closeAfter {
		return nil
	}
	if err := e.Shutdown(); err != nil {
		return err
	}
	return exchange(e, sock, hop)
}

// exchange sends what the engine has for the network behind hop and feeds it the answer.
func exchange(e *tlszmq.Engine, sock *zmq.Socket, hop string) error {
	out := e.GetData()
	if out == nil {
		return errors.New("perf: the handshake stalled: nothing to send")
	}
	if _, err := sock.SendMessage(hop, "", out); err != nil {
		return err
	}
	reply, err := sock.RecvMessageBytes(0)
	if err != nil {
		return fmt.Errorf("no answer from the server: %w", err)
	}
	if len(reply) != 3 || string(reply[0]) != hop {
		return fmt.Errorf("a reply of %d frames for another envelope", len(reply))
	}
	return e.PutData(reply[2])
}
