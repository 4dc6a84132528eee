package device

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cmdtest"
	"github.com/tlszmq/tlszmq/internal/waitfor"
)

func certs(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "certs", name)
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// serverTLS is a server Context with the RSA test certificate.
func serverTLS(t *testing.T) *tlszmq.Context {
	return cmdtest.Context(t, tlszmq.RoleServer, &tlszmq.Config{CertFile: certs("server.crt"), KeyFile: certs("server.key")})
}

// clientTLS is a client Context that trusts the test CA.
func clientTLS(t *testing.T) *tlszmq.Context {
	return cmdtest.Context(t, tlszmq.RoleClient, &tlszmq.Config{CAFile: certs("ca.crt"), ServerName: "localhost"})
}

// runPassThrough starts a pass-through device on loopback ports until the test ends.
func runPassThrough(t *testing.T, pin bool, maxClients int, log *slog.Logger) (d *PassThrough, front, back string) {
	t.Helper()
	d, err := NewPassThrough("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", pin, maxClients, log)
	if err != nil {
		t.Fatal(err)
	}
	front, back = d.Endpoints()
	cmdtest.Serve(t, d.Run)
	return d, front, back
}

// runConnected starts a server that connects to a device's backend (as tlsserver -connect
// does) until the test ends.
func runConnected(t *testing.T, sctx *tlszmq.Context, back string, h tlszmq.Handler) *tlszmq.Server {
	t.Helper()
	srv, err := tlszmq.NewServer(sctx, back, h, &tlszmq.ServerOptions{Connect: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	cmdtest.Serve(t, srv.Serve)
	return srv
}

// send sends one message on s, and fails the test if it cannot.
func send(t *testing.T, s *zmq.Socket, parts ...any) {
	t.Helper()
	if _, err := s.SendMessage(parts...); err != nil {
		t.Fatal(err)
	}
}

// named answers with its name, the client's identity and the request.
func named(name string) tlszmq.Handler {
	return func(_ context.Context, p *tlszmq.Peer, req [][]byte) ([][]byte, error) {
		return [][]byte{[]byte(name), p.Identity, req[0]}, nil
	}
}

// clientsStayPinned sends requests from several clients and checks that each client's
// replies all come from one backend, and that every backend served some client.
func clientsStayPinned(t *testing.T, endpoint string, ccfg *tlszmq.Config, backends int) {
	cctx := cmdtest.Context(t, tlszmq.RoleClient, ccfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	used := map[string]bool{}
	for i := range 8 {
		id := fmt.Sprintf("client-%d", i)
		c, err := tlszmq.NewClient(cctx, endpoint, &tlszmq.ClientOptions{Identity: id})
		if err != nil {
			t.Fatal(err)
		}
		var first string
		for j := range 10 {
			msg := fmt.Sprintf("%s/%d", id, j)
			got, err := c.Request(ctx, []byte(msg))
			if err != nil {
				t.Fatalf("%s: %v", msg, err)
			}
			if len(got) < 3 || string(got[1]) != id || string(got[2]) != msg {
				t.Fatalf("%s: got %q", msg, got)
			}
			if first == "" {
				first = string(got[0])
			} else if string(got[0]) != first {
				t.Fatalf("%s moved from %s to %s", id, first, got[0])
			}
		}
		used[first] = true
		c.Close()
	}
	if len(used) != backends {
		t.Fatalf("backends used: %v, want all %d", used, backends)
	}
}

// Two servers behind a pinning device: every TLS session stays on its server.
func TestPassThroughPinned(t *testing.T) {
	d, front, back := runPassThrough(t, true, 1000, quiet())
	sctx := cmdtest.Context(t, tlszmq.RoleServer, &tlszmq.Config{CertFile: certs("server-ec.crt"), KeyFile: certs("server-ec.key")})
	for _, name := range []string{"A", "B"} {
		runConnected(t, sctx, back, named(name))
	}
	waitfor.Cond(t, func() bool { return d.Backends() == 2 }, "both servers to announce themselves")
	clientsStayPinned(t, front, &tlszmq.Config{CAFile: certs("ca.crt"), ServerName: "localhost"}, 2)
}

// The C++ device's layout (DEALER backend) with one server, end to end.
func TestPassThroughLikeCpp(t *testing.T) {
	_, front, back := runPassThrough(t, false, 0, quiet())
	runConnected(t, serverTLS(t), back, named("only"))
	clientsStayPinned(t, front, &tlszmq.Config{CAFile: certs("ca.crt"), ServerName: "localhost"}, 1)
}

// The device terminates TLS and hands plaintext to two workers, with the client's identity and
// verified certificate subject; each client stays with one worker.
func TestTerminate(t *testing.T) {
	sctx := cmdtest.Context(t, tlszmq.RoleServer, &tlszmq.Config{CertFile: certs("server.crt"), KeyFile: certs("server.key"),
		CAFile: certs("ca.crt"), ClientAuth: tlszmq.RequireAndVerifyClientCert})
	d, err := NewTerminate(sctx, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", tlszmq.ServerOptions{Logger: quiet()}, Limits{MaxClients: 1000})
	if err != nil {
		t.Fatal(err)
	}
	front, back := d.Endpoints()
	cmdtest.Serve(t, d.Run)
	subjects := make(chan string, 100)
	for _, name := range []string{"W1", "W2"} {
		cmdtest.Serve(t, func(ctx context.Context) error {
			return RunWorker(ctx, back, func(id []byte, subject string, req [][]byte) [][]byte {
				subjects <- subject
				return [][]byte{[]byte(name), id, req[0]}
			})
		})
	}
	waitfor.Cond(t, func() bool { return d.Workers() == 2 }, "both workers to announce themselves")
	clientsStayPinned(t, front, &tlszmq.Config{CAFile: certs("ca.crt"), ServerName: "localhost",
		CertFile: certs("client.crt"), KeyFile: certs("client.key")}, 2)
	if s := <-subjects; s != "CN=tlszmq client,O=tlszmq,C=ZZ" {
		t.Fatalf("the worker saw subject %q", s)
	}
}

// Plaintext clients reach the device, which carries their messages over TLS to a server.
func TestOriginate(t *testing.T) {
	var tlsPeers sync.Map
	srv, err := tlszmq.NewServer(serverTLS(t), "tcp://127.0.0.1:*", func(_ context.Context, p *tlszmq.Peer, req [][]byte) ([][]byte, error) {
		tlsPeers.Store(p.Key(), true)
		return append([][]byte{[]byte("over TLS")}, req...), nil
	}, &tlszmq.ServerOptions{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	cmdtest.Serve(t, srv.Serve)
	d, err := NewOriginate(clientTLS(t), "tcp://127.0.0.1:*", srv.Endpoint(), Limits{MaxSessions: 100, Timeout: 5 * time.Second}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	cmdtest.Serve(t, d.Run)
	for i := range 3 {
		req, _ := zmq.NewSocket(zmq.REQ)
		req.SetLinger(0)
		req.Connect(d.Endpoint())
		req.SetRcvtimeo(10 * time.Second)
		for j := range 3 {
			msg := fmt.Sprintf("plain %d/%d", i, j)
			send(t, req, msg, "second part")
			got, err := req.RecvMessage(0)
			if err != nil || len(got) != 3 || got[0] != "over TLS" || got[1] != msg || got[2] != "second part" {
				t.Fatalf("%s: got %q, %v", msg, got, err)
			}
		}
		req.Close()
	}
	n := 0
	tlsPeers.Range(func(any, any) bool { n++; return true })
	if n != 3 || srv.Stats().HandshakesDone != 3 {
		t.Fatalf("%d TLS peers, %d handshakes: want one session per plaintext client", n, srv.Stats().HandshakesDone)
	}
}
