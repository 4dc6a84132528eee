package tlszmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq/internal/syncbuf"
	"github.com/tlszmq/tlszmq/internal/waitfor"
	"github.com/tlszmq/tlszmq/internal/zapauth"
)

// These tests run servers with ServerOptions.Allow and Deny and clients on two loopback
// addresses: 127.0.0.1, and 127.0.0.2 as the source address of the client's connection
// (ZeroMQ's "tcp://source:0;host:port"). Linux routes all of 127.0.0.0/8 to lo.

// zapServer runs a server on a random loopback port with the lists, logging to the returned
// buffer.
func zapServer(t *testing.T, sctx *Context, allow, deny []string) (*Server, *syncbuf.Buffer) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	srv := serveOn(t, sctx, "tcp://127.0.0.1:*", echo, &ServerOptions{Allow: allow, Deny: deny,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	return srv, logs
}

// port returns the port of a tcp:// endpoint.
func port(endpoint string) string { return endpoint[strings.LastIndexByte(endpoint, ':')+1:] }

// askFrom makes a client whose connection comes from the source address, sends it one request
// and returns the error (nil: answered). A refused client's request times out after wait.
func askFrom(t *testing.T, source string, srv *Server, wait time.Duration) error {
	t.Helper()
	endpoint := fmt.Sprintf("tcp://%s:0;127.0.0.1:%s", source, port(srv.Endpoint()))
	cctx := mustContext(t, RoleClient, clientConfig())
	c, err := NewClient(cctx, endpoint, &ClientOptions{Timeout: wait})
	if err != nil {
		t.Fatalf("NewClient(%s): %v", endpoint, err)
	}
	defer c.Close()
	got, err := c.Request(context.Background(), []byte("ping"))
	if err == nil && (len(got) != 1 || string(got[0]) != "ping") {
		t.Fatalf("from %s: got %q", source, got)
	}
	return err
}

// wantAnswered and wantRefused check one client's fate.
func wantAnswered(t *testing.T, source string, srv *Server) {
	t.Helper()
	if err := askFrom(t, source, srv, 10*time.Second); err != nil {
		t.Fatalf("a client from %s was not answered: %v", source, err)
	}
}

func wantRefused(t *testing.T, source string, srv *Server, logs *syncbuf.Buffer, list string) {
	t.Helper()
	before := srv.Counters().RefusedByList[list]
	err := askFrom(t, source, srv, 500*time.Millisecond)
	if err == nil {
		t.Fatalf("a client from %s was answered, past the %s list", source, list)
	}
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("a client from %s: %v, want a timeout", source, err)
	}
	waitfor.Cond(t, func() bool { return srv.Counters().RefusedByList[list] > before }, "the refusal to be counted under "+list)
	line := fmt.Sprintf("address=%s list=%s", source, list)
	if !strings.Contains(logs.String(), "level=WARN msg=\"tlszmq: connection refused\"") || !strings.Contains(logs.String(), line) {
		t.Fatalf("no WARN line with %q in the log:\n%s", line, logs.String())
	}
	if st := srv.Stats(); st.Refused < 1 {
		t.Fatalf("stats %+v: no refusal", st)
	}
}

func TestZAPAllow(t *testing.T) {
	srv, logs := zapServer(t, mustContext(t, RoleServer, serverConfig("server")), []string{"127.0.0.1"}, nil)
	if !zapauth.Running() {
		t.Fatal("no ZAP handler with a server with lists open")
	}
	wantAnswered(t, "127.0.0.1", srv)
	wantRefused(t, "127.0.0.2", srv, logs, "allow")
	if n := srv.Counters().RefusedByList["deny"]; n != 0 {
		t.Errorf("refused by deny: %d", n)
	}
	if strings.Contains(logs.String(), "refused\" server="+srv.Endpoint()+" address=127.0.0.1 ") {
		t.Errorf("127.0.0.1 logged as refused:\n%s", logs.String())
	}
	if st := srv.Stats(); st.HandshakesDone != 1 {
		t.Errorf("handshakes done %d, want 1 (the refused client never reaches TLS)", st.HandshakesDone)
	}
}

func TestZAPDeny(t *testing.T) {
	srv, logs := zapServer(t, mustContext(t, RoleServer, serverConfig("server")), nil, []string{"127.0.0.2"})
	wantAnswered(t, "127.0.0.1", srv)
	wantRefused(t, "127.0.0.2", srv, logs, "deny")
	if n := srv.Counters().RefusedByList["allow"]; n != 0 {
		t.Errorf("refused by allow: %d", n)
	}
}

func TestZAPCIDR(t *testing.T) {
	// 127.0.0.0/31 holds 127.0.0.0 and 127.0.0.1, not 127.0.0.2; the IPv6 entry is in no
	// peer's way.
	srv, logs := zapServer(t, mustContext(t, RoleServer, serverConfig("server")), []string{"2001:db8::/32", "127.0.0.0/31"}, nil)
	wantAnswered(t, "127.0.0.1", srv)
	wantRefused(t, "127.0.0.2", srv, logs, "allow")
}

// Deny wins over Allow.
func TestZAPDenyWinsOverAllow(t *testing.T) {
	srv, logs := zapServer(t, mustContext(t, RoleServer, serverConfig("server")), []string{"127.0.0.0/8"}, []string{"127.0.0.2/32"})
	wantAnswered(t, "127.0.0.1", srv)
	wantRefused(t, "127.0.0.2", srv, logs, "deny")
}

func TestZAPInvalidEntry(t *testing.T) {
	sctx := mustContext(t, RoleServer, serverConfig("server"))
	for _, c := range []struct {
		allow, deny []string
		bad         string
	}{
		{[]string{"127.0.0.1", "not-an-ip"}, nil, `ServerOptions.Allow: "not-an-ip" is not an IP address or CIDR prefix`},
		{nil, []string{"10.0.0.0/33"}, `ServerOptions.Deny: "10.0.0.0/33" is not`},
		{[]string{""}, nil, `ServerOptions.Allow: "" is not`},
		{nil, []string{"fe80::1%eth0"}, `ServerOptions.Deny: "fe80::1%eth0" is not`},
		{[]string{"localhost"}, []string{"10.0.0.1"}, `ServerOptions.Allow: "localhost" is not`},
	} {
		srv, err := NewServer(sctx, "tcp://127.0.0.1:*", echo, &ServerOptions{Allow: c.allow, Deny: c.deny})
		if err == nil {
			srv.Close()
			t.Fatalf("Allow %q Deny %q: NewServer accepted it", c.allow, c.deny)
		}
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.bad) {
			t.Errorf("Allow %q Deny %q: %v: want ErrInvalidConfig naming %s", c.allow, c.deny, err, c.bad)
		}
	}
	if zapauth.Running() {
		t.Error("a ZAP handler runs after NewServer refused every list")
	}
}

// Two servers with different lists at once; one closes (the other's still enforced); the
// handler stops with the last, and its endpoint is free again.
func TestZAPTwoServers(t *testing.T) {
	sctxA := mustContext(t, RoleServer, serverConfig("server"))
	sctxB := mustContext(t, RoleServer, serverConfig("server"))
	mustContext(t, RoleClient, clientConfig()) // the clients' contexts' start-up out of the count
	base := runtime.NumGoroutine()
	a, logsA := zapServer(t, sctxA, []string{"127.0.0.1"}, nil)
	b, logsB := zapServer(t, sctxB, nil, []string{"127.0.0.1"})
	wantAnswered(t, "127.0.0.1", a)
	wantRefused(t, "127.0.0.2", a, logsA, "allow")
	wantAnswered(t, "127.0.0.2", b)
	wantRefused(t, "127.0.0.1", b, logsB, "deny")
	if strings.Contains(logsA.String(), "list=deny") || strings.Contains(logsB.String(), "list=allow") {
		t.Errorf("one server logged the other's refusals:\nA:\n%s\nB:\n%s", logsA.String(), logsB.String())
	}

	a.Close()
	if !zapauth.Running() {
		t.Fatal("the handler stopped while a server with lists is open")
	}
	wantAnswered(t, "127.0.0.2", b)
	wantRefused(t, "127.0.0.1", b, logsB, "deny")

	b.Close()
	if zapauth.Running() {
		t.Fatal("the handler runs after the last server with lists closed")
	}
	// The endpoint is free: an application's own handler could bind it now.
	rep, err := zmq.NewSocket(zmq.REP)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Bind(zapauth.Endpoint); err != nil {
		t.Errorf("binding %s after the servers closed: %v", zapauth.Endpoint, err)
	} else {
		rep.Unbind(zapauth.Endpoint)
	}
	rep.Close()
	waitfor.Cond(t, func() bool { return runtime.NumGoroutine() <= base },
		fmt.Sprintf("the goroutines to go back to %d (now %d)", base, runtime.NumGoroutine()))
}

// An application that runs its own ZAP handler cannot use the lists: NewServer says so instead
// of letting everyone in. A server without lists is not concerned.
func TestZAPHandlerTaken(t *testing.T) {
	rep, err := zmq.NewSocket(zmq.REP)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Bind(zapauth.Endpoint); err != nil {
		t.Fatal(err)
	}
	defer func() { rep.Unbind(zapauth.Endpoint); rep.Close() }()
	sctx := mustContext(t, RoleServer, serverConfig("server"))
	srv, err := NewServer(sctx, "tcp://127.0.0.1:*", echo, &ServerOptions{Deny: []string{"192.0.2.1"}})
	if err == nil {
		srv.Close()
		t.Fatal("NewServer with lists succeeded while another ZAP handler is bound")
	}
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "ServerOptions.Allow and Deny need the library's ZAP handler") ||
		!strings.Contains(err.Error(), zapauth.Endpoint+" is taken") {
		t.Errorf("error %q does not say the ZAP handler is taken", err)
	}
	if zapauth.Running() {
		t.Error("the handler counts as running")
	}
	plain := serveOn(t, sctx, "tcp://127.0.0.1:*", echo, nil)
	wantAnswered(t, "127.0.0.2", plain)
}

// A refused client never hangs: it waits for its refusal before its first Request, and each
// Request fails with ErrTimeout within about the client's Timeout, REQ and DEALER, again and
// again. (A device test once found a refused client's first send blocked for ever, its
// connection's pipe gone; TestSendWithoutConnectionTimesOut shows a send bounded by Timeout.)
func TestZAPRefusedClientNeverHangs(t *testing.T) {
	srv, _ := zapServer(t, mustContext(t, RoleServer, serverConfig("server")), nil, []string{"127.0.0.2"})
	endpoint := fmt.Sprintf("tcp://127.0.0.2:0;127.0.0.1:%s", port(srv.Endpoint()))
	cctx := mustContext(t, RoleClient, clientConfig())
	for _, pattern := range []Pattern{REQ, DEALER} {
		t.Run(pattern.String(), func(t *testing.T) {
			const wait = 200 * time.Millisecond
			before := srv.Counters().RefusedByList["deny"]
			c, err := NewClient(cctx, endpoint, &ClientOptions{Pattern: pattern, Timeout: wait})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			waitfor.Cond(t, func() bool { return srv.Counters().RefusedByList["deny"] > before }, "the refusal")
			time.Sleep(100 * time.Millisecond) // for the refusal to reach the client
			for i := range 6 {
				done := make(chan error, 1)
				start := time.Now()
				go func() {
					_, err := c.Request(context.Background(), []byte("ping"))
					done <- err
				}()
				select {
				case err := <-done:
					if !errors.Is(err, ErrTimeout) {
						t.Fatalf("request %d: %v, want a timeout", i, err)
					}
					t.Logf("request %d: %v after %v", i, err, time.Since(start).Round(time.Millisecond))
				case <-time.After(20 * wait):
					t.Fatalf("request %d still waiting after %v (the client's Timeout is %v)", i, 20*wait, wait)
				}
			}
		})
	}
}
