package interop

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cmdtest"
)

// The other stack: Go's crypto/tls (no OpenSSL anywhere) carried in the TLSZMQ framing, as a
// client over DEALER with the REQ envelope and as a server over ROUTER.

// frameConn is a net.Conn over ZeroMQ messages: each Write leaves as one ["", bytes] message,
// and Read returns the payloads that arrive, in order.
type frameConn struct {
	in      chan []byte
	out     func([]byte) error
	pending []byte
	closed  chan struct{}
	once    sync.Once
	dl      time.Time
	mu      sync.Mutex
}

func newFrameConn(out func([]byte) error) *frameConn {
	return &frameConn{in: make(chan []byte, 64), out: out, closed: make(chan struct{})}
}

func (c *frameConn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		c.mu.Lock()
		dl := c.dl
		c.mu.Unlock()
		var timeout <-chan time.Time
		if !dl.IsZero() {
			timer := time.NewTimer(time.Until(dl))
			defer timer.Stop()
			timeout = timer.C
		}
		select {
		case f := <-c.in:
			c.pending = f
		case <-c.closed:
			return 0, io.EOF
		case <-timeout:
			return 0, os.ErrDeadlineExceeded
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *frameConn) Write(p []byte) (int, error) {
	if err := c.out(append([]byte(nil), p...)); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *frameConn) Close() error                     { c.once.Do(func() { close(c.closed) }); return nil }
func (c *frameConn) LocalAddr() net.Addr              { return zmqAddr{} }
func (c *frameConn) RemoteAddr() net.Addr             { return zmqAddr{} }
func (c *frameConn) SetWriteDeadline(time.Time) error { return nil }
func (c *frameConn) SetDeadline(t time.Time) error    { return c.SetReadDeadline(t) }
func (c *frameConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.dl = t
	c.mu.Unlock()
	return nil
}

type zmqAddr struct{}

func (zmqAddr) Network() string { return "zmq" }
func (zmqAddr) String() string  { return "zmq" }

// pump owns a socket: it hands incoming messages to route and sends what arrives on out.
type pump struct {
	out  chan [][]byte
	done chan struct{}
}

func runPump(t *testing.T, sock *zmq.Socket, route func(frames [][]byte)) *pump {
	p := &pump{out: make(chan [][]byte, 256), done: make(chan struct{})}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		defer sock.Close()
		poller := zmq.NewPoller()
		poller.Add(sock, zmq.POLLIN)
		for {
			for sent := false; !sent; {
				select {
				case m := <-p.out:
					frames := make([]any, len(m))
					for i, f := range m {
						frames[i] = f
					}
					sock.SendMessage(frames...)
				default:
					sent = true
				}
			}
			select {
			case <-p.done:
				return
			default:
			}
			if polled, _ := poller.Poll(2 * time.Millisecond); len(polled) > 0 {
				if frames, err := sock.RecvMessageBytes(zmq.DONTWAIT); err == nil {
					route(frames)
				}
			}
		}
	}()
	t.Cleanup(func() { close(p.done); <-stopped })
	return p
}

func (p *pump) send(frames ...[]byte) error {
	select {
	case p.out <- frames:
		return nil
	case <-p.done:
		return net.ErrClosed
	}
}

// goTLSClient connects crypto/tls over a DEALER socket to endpoint, with the REQ envelope.
func goTLSClient(t *testing.T, endpoint string, cfg *tls.Config) *tls.Conn {
	sock, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	sock.SetLinger(0)
	if err := sock.Connect(endpoint); err != nil {
		t.Fatal(err)
	}
	var conn *frameConn
	p := runPump(t, sock, func(frames [][]byte) {
		if len(frames) == 2 && len(frames[0]) == 0 && len(frames[1]) > 0 {
			conn.in <- frames[1]
		}
	})
	conn = newFrameConn(func(b []byte) error { return p.send(nil, b) })
	tc := tls.Client(conn, cfg)
	tc.SetDeadline(time.Now().Add(20 * time.Second))
	return tc
}

// goTLSServer serves crypto/tls over a ROUTER socket: one tls.Conn per envelope, each
// answering every read with handle's reply.
func goTLSServer(t *testing.T, cfg *tls.Config, handle func(state tls.ConnectionState, req []byte) []byte) string {
	sock, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		t.Fatal(err)
	}
	sock.SetLinger(0)
	sock.Bind("tcp://127.0.0.1:*")
	endpoint, _ := sock.GetLastEndpoint()
	conns := map[string]*frameConn{}
	var p *pump
	p = runPump(t, sock, func(frames [][]byte) {
		if len(frames) != 3 || len(frames[1]) != 0 {
			return
		}
		id := append([]byte(nil), frames[0]...)
		conn, ok := conns[string(id)]
		if !ok {
			conn = newFrameConn(func(b []byte) error { return p.send(id, nil, b) })
			conns[string(id)] = conn
			go func() {
				tc := tls.Server(conn, cfg)
				defer tc.Close()
				buf := make([]byte, 1<<21)
				for {
					n, err := tc.Read(buf)
					if err != nil {
						return
					}
					if _, err := tc.Write(handle(tc.ConnectionState(), buf[:n])); err != nil {
						return
					}
				}
			}()
		}
		if len(frames[2]) > 0 {
			conn.in <- frames[2]
		}
	})
	return endpoint
}

func certPool(t *testing.T) *x509.CertPool {
	pool := x509.NewCertPool()
	b, err := os.ReadFile(cert("ca.crt"))
	if err != nil || !pool.AppendCertsFromPEM(b) {
		t.Fatalf("ca.crt: %v", err)
	}
	return pool
}

func keyPair(t *testing.T, name string) tls.Certificate {
	kp, err := tls.LoadX509KeyPair(cert(name+".crt"), cert(name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func versionOf(v string) uint16 {
	if v == "1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// readAll reads from a crypto/tls conn until n bytes have come.
func readAll(t *testing.T, tc *tls.Conn, n int) []byte {
	got := make([]byte, 0, n)
	buf := make([]byte, 1<<20)
	for len(got) < n {
		k, err := tc.Read(buf)
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", len(got), n, err)
		}
		got = append(got, buf[:k]...)
	}
	return got
}

// crypto/tls client → the tlszmq server: TLS 1.2 and 1.3, mutual TLS, resumption, 1 MiB.
func TestGoTLSClientToServer(t *testing.T) {
	for _, v := range []string{"1.2", "1.3"} {
		for _, mutual := range []bool{false, true} {
			t.Run(fmt.Sprintf("TLS%s/mutual=%v", v, mutual), func(t *testing.T) {
				scfg := &tlszmq.Config{CertFile: cert("server.crt"), KeyFile: cert("server.key")}
				if mutual {
					scfg.CAFile, scfg.ClientAuth = cert("ca.crt"), tlszmq.RequireAndVerifyClientCert
				}
				var mu sync.Mutex
				var seen []*tlszmq.Peer
				srv, err := tlszmq.NewServer(cmdtest.Context(t, tlszmq.RoleServer, scfg), "tcp://127.0.0.1:*",
					tlszmq.SinglePart(func(_ context.Context, p *tlszmq.Peer, req []byte) ([]byte, error) {
						mu.Lock()
						seen = append(seen, p)
						mu.Unlock()
						return bytes.ToUpper(req), nil
					}), &tlszmq.ServerOptions{Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Fatal(err)
				}
				cmdtest.Serve(t, srv.Serve)
				cache := tls.NewLRUClientSessionCache(4)
				for round := range 2 {
					ccfg := &tls.Config{RootCAs: certPool(t), ServerName: "localhost", MinVersion: versionOf(v), MaxVersion: versionOf(v),
						ClientSessionCache: cache}
					if mutual {
						ccfg.Certificates = []tls.Certificate{keyPair(t, "client")}
					}
					tc := goTLSClient(t, srv.Endpoint(), ccfg)
					if err := tc.Handshake(); err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
					for _, n := range []int{12, 1 << 20} {
						msg := bytes.Repeat([]byte("abcdefghij"), n/10+1)[:n]
						if _, err := tc.Write(msg); err != nil {
							t.Fatal(err)
						}
						if got := readAll(t, tc, n); !bytes.Equal(got, bytes.ToUpper(msg)) {
							t.Fatalf("round %d, %d bytes: the reply differs", round, n)
						}
					}
					st := tc.ConnectionState()
					if round == 1 && !st.DidResume {
						t.Fatalf("the second connection did not resume")
					}
					tc.Close()
				}
				mu.Lock()
				defer mu.Unlock()
				if mutual && (len(seen) == 0 || !seen[0].Verified || seen[0].Certificates[0].Subject.CommonName != "tlszmq client") {
					t.Fatalf("the server's view of the client: %+v", seen)
				}
			})
		}
	}
}

// The tlszmq client → a crypto/tls server: TLS 1.2 and 1.3, mutual TLS, resumption, 1 MiB.
func TestClientToGoTLSServer(t *testing.T) {
	for _, v := range []string{"1.2", "1.3"} {
		for _, mutual := range []bool{false, true} {
			t.Run(fmt.Sprintf("TLS%s/mutual=%v", v, mutual), func(t *testing.T) {
				scfg := &tls.Config{Certificates: []tls.Certificate{keyPair(t, "server-ec")}, MinVersion: versionOf(v), MaxVersion: versionOf(v)}
				if mutual {
					scfg.ClientAuth, scfg.ClientCAs = tls.RequireAndVerifyClientCert, certPool(t)
				}
				var mu sync.Mutex
				var subjects []string
				endpoint := goTLSServer(t, scfg, func(st tls.ConnectionState, req []byte) []byte {
					if len(st.PeerCertificates) > 0 {
						mu.Lock()
						subjects = append(subjects, st.PeerCertificates[0].Subject.CommonName)
						mu.Unlock()
					}
					return bytes.ToUpper(req)
				})
				ccfg := &tlszmq.Config{CAFile: cert("ca.crt"), ServerName: "localhost"}
				if mutual {
					ccfg.CertFile, ccfg.KeyFile = cert("client-ec.crt"), cert("client-ec.key")
				}
				cctx := cmdtest.Context(t, tlszmq.RoleClient, ccfg)
				var session []byte
				for round := range 2 {
					c, err := tlszmq.NewClient(cctx, endpoint, &tlszmq.ClientOptions{Pattern: tlszmq.DEALER, Session: session})
					if err != nil {
						t.Fatal(err)
					}
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					for _, n := range []int{12, 1 << 20} {
						msg := bytes.Repeat([]byte("abcdefghij"), n/10+1)[:n]
						if err := c.Send(ctx, msg); err != nil {
							t.Fatal(err)
						}
						// crypto/tls answers record by record: gather the parts.
						var got []byte
						for len(got) < n {
							parts, err := c.Recv(ctx)
							if err != nil {
								t.Fatalf("round %d, %d bytes, after %d: %v", round, n, len(got), err)
							}
							got = append(got, parts[0]...)
						}
						if !bytes.Equal(got, bytes.ToUpper(msg)) {
							t.Fatalf("round %d, %d bytes: the reply differs", round, n)
						}
					}
					cancel()
					st := c.ConnectionState()
					if st.Version != versionOf(v) || !st.Verified {
						t.Fatalf("state %+v", st)
					}
					if round == 1 && !st.DidResume {
						t.Fatal("the second session did not resume")
					}
					if session, err = c.Session(); err != nil {
						t.Fatal(err)
					}
					c.Close()
				}
				mu.Lock()
				defer mu.Unlock()
				if mutual && (len(subjects) == 0 || subjects[0] != "tlszmq client-ec") {
					t.Fatalf("crypto/tls saw client certificates %v", subjects)
				}
			})
		}
	}
}
