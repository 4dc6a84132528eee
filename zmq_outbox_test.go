package tlszmq

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq/internal/syncbuf"
)

// MaxPendingOutput bounds a connection, not a session: routes made up behind one ZeroMQ
// connection that never reads share one budget. Eight sessions on one DEALER each send 1 MiB
// of requests and read nothing back: the 8 MiB of echoes pass the budget of their connection
// (4 MiB), though each session's own share (1 MiB) would not, and every session behind it
// ends; a client on another connection goes on.
func TestPendingOutputIsPerConnection(t *testing.T) {
	var log syncbuf.Buffer
	srv := startServer(t, serverConfig("server-ec"), "tcp://127.0.0.1:*", echo,
		&ServerOptions{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	sock, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	sock.SetLinger(0)
	sock.SetRcvhwm(1)       // the attacker's own queues stay small: the server's fill
	sock.SetRcvbuf(4 << 10) // and the kernel's
	if err := sock.Connect(srv.Endpoint()); err != nil {
		t.Fatal(err)
	}
	cctx := mustContext(t, RoleClient, clientConfig())
	const n = 8
	engines := map[string]*Engine{}
	for i := range n {
		e, err := NewClientEngine(cctx)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		engines[fmt.Sprintf("route-%d", i)] = e
	}
	// The handshakes, all on one connection, replies routed back by the made-up identity.
	sock.SetRcvtimeo(5 * time.Second)
	for id, e := range engines {
		e.Update()
		for !e.HandshakeComplete() {
			if out := e.GetData(); len(out) > 0 {
				if _, err := sock.SendMessage(id, "", out); err != nil {
					t.Fatal(err)
				}
			}
			msg, err := sock.RecvMessageBytes(0)
			if err != nil {
				t.Fatalf("%s: handshake: %v", id, err)
			}
			if err := engines[string(msg[0])].PutData(msg[len(msg)-1]); err != nil {
				t.Fatal(err)
			}
		}
		if out := e.GetData(); len(out) > 0 { // the client's Finished, under TLS 1.3
			sock.SendMessage(id, "", out)
		}
	}
	good := newClient(t, clientConfig(), srv.Endpoint(), nil)
	if _, err := good.Request(ctxTimeout(t, 10*time.Second), []byte("before")); err != nil {
		t.Fatal(err)
	}
	// 1 MiB of requests from each session, read by nobody.
	req := make([]byte, 16<<10)
	sock.SetSndtimeo(2 * time.Second)
	for round := range 64 {
		for id, e := range engines {
			if _, err := e.Write(req); err != nil {
				break // the server has ended it
			}
			if _, err := sock.SendMessage(id, "", e.GetData()); err != nil {
				t.Logf("round %d: %v", round, err)
				break
			}
		}
	}
	// The counter moves before the log line is written: wait for both.
	ended := func() bool {
		return srv.Stats().BudgetExceeded >= n && strings.Count(log.String(), "MaxPendingOutput") >= n
	}
	deadline := time.Now().Add(10 * time.Second)
	for !ended() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !ended() {
		t.Errorf("%d lines name MaxPendingOutput, want %d (stats %+v):\n%s",
			strings.Count(log.String(), "MaxPendingOutput"), n, srv.Stats(), log.String())
	}
	if _, err := good.Request(ctxTimeout(t, 10*time.Second), []byte("after")); err != nil {
		t.Fatalf("the client on another connection: %v", err)
	}
	t.Logf("stats: %+v", srv.Stats())
}
