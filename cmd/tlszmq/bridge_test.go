package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cmdtest"
	"github.com/tlszmq/tlszmq/internal/notice"
	"github.com/tlszmq/tlszmq/internal/syncbuf"
	"github.com/tlszmq/tlszmq/internal/waitfor"
	"github.com/tlszmq/tlszmq/internal/zmqpoll"
)

func certFile(name string) string { return filepath.Join(cmdtest.Root(), "testdata", "certs", name) }

var quiet = slog.New(slog.DiscardHandler)

// openssl s_client, through the bridge, completes a handshake with the tlszmq server and
// exchanges data.
func TestBridgeSClientToServer(t *testing.T) {
	for _, v := range []string{"1.2", "1.3"} {
		for _, mutual := range []bool{false, true} {
			t.Run(fmt.Sprintf("TLS%s/mutual=%v", v, mutual), func(t *testing.T) {
				scfg := serverConfig()
				if mutual {
					scfg.CAFile, scfg.ClientAuth = certFile("ca.crt"), tlszmq.RequireAndVerifyClientCert
				}
				srv := upperServer(t, scfg, tlszmq.ServerOptions{})
				addr := listenBridge(t, newBridge(bridgeOptions{Log: quiet}), srv.Endpoint())

				args := []string{"s_client", "-connect", addr, "-CAfile", certFile("ca.crt"),
					"-servername", "localhost", "-verify_return_error", "-quiet", "-tls" + strings.ReplaceAll(v, ".", "_")}
				if mutual {
					args = append(args, "-cert", certFile("client.crt"), "-key", certFile("client.key"))
				}
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, "openssl", args...)
				stdin, _ := cmd.StdinPipe()
				stdout, _ := cmd.StdoutPipe()
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				defer func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() }()
				stdin.Write([]byte("hello world!\n"))
				line, err := bufio.NewReader(stdout).ReadString('\n')
				if err != nil || line != "HELLO WORLD!\n" {
					t.Fatalf("s_client read %q, %v\n%s", line, err, stderr.String())
				}
			})
		}
	}
}

// The tlszmq client, through the bridge, talks to openssl s_server.
func TestBridgeClientToSServer(t *testing.T) {
	for _, v := range []string{"1.2", "1.3"} {
		for _, mutual := range []bool{false, true} {
			t.Run(fmt.Sprintf("TLS%s/mutual=%v", v, mutual), func(t *testing.T) {
				port := freePort(t)
				args := []string{"s_server", "-accept", port, "-cert", certFile("server-ec.crt"), "-key", certFile("server-ec.key"),
					"-rev", "-quiet", "-tls" + strings.ReplaceAll(v, ".", "_")}
				if mutual {
					args = append(args, "-Verify", "1", "-CAfile", certFile("ca.crt"))
				}
				srv := exec.Command("openssl", args...)
				var out bytes.Buffer
				srv.Stdout, srv.Stderr = &out, &out
				if err := srv.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
				waitListening(t, "127.0.0.1:"+port)
				endpoint := bindBridge(t, newBridge(bridgeOptions{Log: quiet}), "127.0.0.1:"+port)

				ccfg := &tlszmq.Config{CAFile: certFile("ca.crt"), ServerName: "localhost"}
				if mutual {
					ccfg.CertFile, ccfg.KeyFile = certFile("client.crt"), certFile("client.key")
				}
				c, err := tlszmq.NewClient(cmdtest.Context(t, tlszmq.RoleClient, ccfg), endpoint, &tlszmq.ClientOptions{Pattern: tlszmq.DEALER})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				if err := c.Send(ctx, []byte("hello world!\n")); err != nil {
					t.Fatalf("%v\ns_server: %s", err, out.String())
				}
				var got []byte
				for !bytes.HasSuffix(got, []byte("\n")) {
					parts, err := c.Recv(ctx)
					if err != nil {
						t.Fatalf("after %q: %v\ns_server: %s", got, err, out.String())
					}
					got = append(got, parts[0]...)
				}
				if string(got) != "!dlrow olleh\n" {
					t.Fatalf("got %q", got)
				}
				if st := c.ConnectionState(); !st.Verified || tlszmq.VersionName(st.Version) != "TLS "+v || st.NegotiatedProtocol != "" {
					t.Fatalf("state %+v", st)
				}
			})
		}
	}
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

func waitListening(t *testing.T, addr string) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("nothing listens on %s", addr)
}

// serverConfig is the tlszmq server's configuration with the RSA test certificate.
func serverConfig() *tlszmq.Config {
	return &tlszmq.Config{CertFile: certFile("server.crt"), KeyFile: certFile("server.key")}
}

// upperServer starts a tlszmq server that echoes in upper case (and answers "unverified\n" to
// a client that scfg requires a verified certificate from, without one).
func upperServer(t *testing.T, scfg *tlszmq.Config, opts tlszmq.ServerOptions) *tlszmq.Server {
	t.Helper()
	opts.Logger = quiet
	srv, err := tlszmq.NewServer(cmdtest.Context(t, tlszmq.RoleServer, scfg), "tcp://127.0.0.1:*",
		tlszmq.SinglePart(func(_ context.Context, p *tlszmq.Peer, req []byte) ([]byte, error) {
			if scfg.ClientAuth == tlszmq.RequireAndVerifyClientCert && !p.Verified {
				return []byte("unverified\n"), nil
			}
			return bytes.ToUpper(req), nil
		}), &opts)
	if err != nil {
		t.Fatal(err)
	}
	cmdtest.Serve(t, srv.Serve)
	return srv
}

// loopback listens on a free TCP port of 127.0.0.1.
func loopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// listenBridge runs b's -listen side, on a loopback port, towards endpoint until the test
// ends; it returns the TCP address.
func listenBridge(t *testing.T, b *bridge, endpoint string) string {
	t.Helper()
	ln := loopback(t)
	cmdtest.Serve(t, func(ctx context.Context) error { return b.tcpToZMQ(ctx, ln, endpoint) })
	return ln.Addr().String()
}

// bindBridge runs b's -bind side, on an ipc endpoint of the test's own, towards the TCP server
// at addr until the test ends; it returns the endpoint.
func bindBridge(t *testing.T, b *bridge, addr string) string {
	endpoint := "ipc://" + filepath.Join(t.TempDir(), "bridge.ipc")
	cmdtest.Serve(t, func(ctx context.Context) error { return b.zmqToTCP(ctx, endpoint, addr) })
	return endpoint
}

// bridgeToServer starts an upperServer with opts and a bridge to it on a TCP port of its own;
// it returns the server, the bridge's address and its log.
func bridgeToServer(t *testing.T, opts tlszmq.ServerOptions) (srv *tlszmq.Server, addr string, log *syncbuf.Buffer) {
	srv = upperServer(t, serverConfig(), opts)
	log = &syncbuf.Buffer{}
	addr = listenBridge(t, newBridge(bridgeOptions{Log: slog.New(slog.NewTextHandler(log, nil))}), srv.Endpoint())
	return srv, addr, log
}

func caPool(t *testing.T) *x509.CertPool {
	pem, err := os.ReadFile(certFile("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return pool
}

// closedWithin reads raw until the bridge closes it, and fails the test unless that happens
// within d (a read that times out means the connection is still open).
func closedWithin(t *testing.T, raw net.Conn, d time.Duration) {
	t.Helper()
	start := time.Now()
	raw.SetReadDeadline(start.Add(d))
	buf := make([]byte, 4096)
	for {
		_, err := raw.Read(buf)
		if err == nil {
			continue // the rest of the server's last flight
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the TCP connection is still open %v after the session ended", d)
		}
		t.Logf("TCP connection closed %v after the session ended (%v)", time.Since(start).Round(time.Millisecond), err)
		return
	}
}

// A TLS client over TCP, through the bridge, sends close_notify after a handshake and an
// exchange: the server answers with its own close_notify and ends the session, and the bridge
// closes the TCP connection, as a TLS server over TCP would.
func TestBridgeClosesAfterCloseNotify(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			_, addr, log := bridgeToServer(t, tlszmq.ServerOptions{})
			raw, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			tc := tls.Client(raw, &tls.Config{RootCAs: caPool(t), ServerName: "localhost", MinVersion: v, MaxVersion: v})
			raw.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := tc.Write([]byte("hello\n")); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 6)
			if _, err := io.ReadFull(tc, got); err != nil || string(got) != "HELLO\n" {
				t.Fatalf("read %q, %v", got, err)
			}
			if err := tc.CloseWrite(); err != nil { // close_notify; the TCP connection stays open
				t.Fatal(err)
			}
			raw.SetDeadline(time.Time{})
			start := time.Now()
			tc.SetReadDeadline(start.Add(time.Second))
			if _, err := tc.Read(got); err != io.EOF {
				t.Fatalf("after close_notify: %v, want the server's close_notify (io.EOF)", err)
			}
			closedWithin(t, raw, time.Second-time.Since(start))
			if !strings.Contains(log.String(), "close_notify") {
				t.Errorf("the bridge's log does not give the server's reason:\n%s", log.String())
			}
		})
	}
}

// A TLS client over TCP that makes the server send a fatal alert, during or after the
// handshake: the bridge writes the alert and closes the TCP connection.
func TestBridgeClosesAfterFatalAlert(t *testing.T) {
	t.Run("garbage record after the handshake", func(t *testing.T) {
		_, addr, log := bridgeToServer(t, tlszmq.ServerOptions{})
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		tc := tls.Client(raw, &tls.Config{RootCAs: caPool(t), ServerName: "localhost", MaxVersion: tls.VersionTLS12})
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		raw.SetDeadline(time.Time{})
		// An application data record whose MAC cannot be right.
		garbage := append([]byte{23, 3, 3, 0, 40}, bytes.Repeat([]byte{0xa5}, 40)...)
		start := time.Now()
		if _, err := raw.Write(garbage); err != nil {
			t.Fatal(err)
		}
		tc.SetReadDeadline(start.Add(time.Second))
		if _, err := tc.Read(make([]byte, 16)); err == nil || !strings.Contains(err.Error(), "remote error") {
			t.Fatalf("after a garbage record: %v, want the server's alert", err)
		}
		closedWithin(t, raw, time.Second-time.Since(start))
		if !strings.Contains(log.String(), "ended the session") {
			t.Errorf("the bridge logged no end of session:\n%s", log.String())
		}
	})
	t.Run("no common cipher", func(t *testing.T) {
		_, addr, _ := bridgeToServer(t, tlszmq.ServerOptions{})
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		// The server's certificate is RSA: an ECDSA-only TLS 1.2 offer has nothing in common.
		tc := tls.Client(raw, &tls.Config{RootCAs: caPool(t), ServerName: "localhost", MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}})
		start := time.Now()
		raw.SetDeadline(start.Add(time.Second))
		if err := tc.Handshake(); err == nil || !strings.Contains(err.Error(), "remote error") {
			t.Fatalf("handshake: %v, want the server's alert", err)
		}
		raw.SetWriteDeadline(time.Time{})
		closedWithin(t, raw, time.Second-time.Since(start))
	})
}

// goroutinesBack waits until the process runs no more goroutines than it did at base (plus a
// couple of runtime helpers that come and go).
func goroutinesBack(t *testing.T, base int) {
	t.Helper()
	waitfor.Cond(t, func() bool { return runtime.NumGoroutine() <= base+2 }, fmt.Sprintf("the goroutines to go back to %d", base))
}

// -listen: at most MaxConns TCP connections are carried (a goroutine pair and a socket each);
// the others are closed at once; idle ones are closed; when they go, their goroutines go.
func TestBridgeTCPSideBounded(t *testing.T) {
	sink, err := zmq.NewSocket(zmq.ROUTER) // a TLSZMQ "server" that reads and never answers
	if err != nil {
		t.Fatal(err)
	}
	sink.SetLinger(0)
	if err := sink.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	endpoint, _ := sink.GetLastEndpoint()
	var received atomic.Int64
	cmdtest.Serve(t, func(ctx context.Context) error {
		defer sink.Close()
		poller := zmq.NewPoller()
		poller.Add(sink, zmq.POLLIN)
		for ctx.Err() == nil {
			if msg, _ := zmqpoll.Recv(poller, sink, 20*time.Millisecond); msg != nil {
				received.Add(1)
			}
		}
		return nil
	})
	const maxConns = 5
	b := newBridge(bridgeOptions{MaxConns: maxConns, Idle: time.Second, Log: quiet})
	base := runtime.NumGoroutine()
	addr := listenBridge(t, b, endpoint)

	for round := range 3 {
		var conns []net.Conn
		for range 4 * maxConns {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.Write([]byte("x"))
			conns = append(conns, c)
		}
		// The refused ones are closed at once; the others stay open.
		waitfor.Cond(t, func() bool { return b.conns.Load() == maxConns }, "the bridge to take the connections")
		open := 0
		for _, c := range conns {
			c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
				open++
			}
		}
		if open != maxConns || b.conns.Load() != maxConns {
			t.Fatalf("round %d: %d connections open, %d carried; want %d", round, open, b.conns.Load(), maxConns)
		}
		if n := b.goroutines.Load(); n > maxConns {
			t.Fatalf("round %d: %d connection goroutines for %d connections", round, n, maxConns)
		}
		if g := runtime.NumGoroutine() - base; g > 3*maxConns+4 {
			t.Fatalf("round %d: %d more goroutines than before the bridge, for %d connections", round, g, maxConns)
		}
		if round == 2 {
			// Left alone: the bridge closes them when they have been idle for -idle.
			for _, c := range conns {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatal("an idle connection was not closed")
				}
				c.Close()
			}
		} else {
			for _, c := range conns {
				c.Close()
			}
		}
		waitfor.Cond(t, func() bool { return b.conns.Load() == 0 && b.goroutines.Load() == 0 }, "the bridge to let the connections go")
	}
	goroutinesBack(t, base+1) // the bridge's accept loop is still running
	if received.Load() < 3*maxConns {
		t.Fatalf("the server received %d messages, want the first byte of every carried connection", received.Load())
	}
}

// tcpEcho is a TCP server that echoes, and can close every connection it holds.
type tcpEcho struct {
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]bool
	total atomic.Int64
	peak  atomic.Int64
}

func newTCPEcho(t *testing.T) *tcpEcho {
	ln := loopback(t)
	e := &tcpEcho{ln: ln, conns: map[net.Conn]bool{}}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); e.closeAll(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns[c] = true
			if n := int64(len(e.conns)); n > e.peak.Load() {
				e.peak.Store(n)
			}
			e.mu.Unlock()
			e.total.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(c, c)
				c.Close()
				e.mu.Lock()
				delete(e.conns, c)
				e.mu.Unlock()
			}()
		}
	}()
	return e
}

func (e *tcpEcho) open() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.conns)
}

func (e *tcpEcho) closeAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for c := range e.conns {
		c.Close()
	}
}

// hello returns text behind the first bytes of a TLS ClientHello record, which is what opens
// a TCP connection at the bridge.
func hello(text string) string { return string([]byte{22, 3, 1, 0, 0, 1}) + text }

// dealer connects a DEALER with the given routing id.
func dealer(t *testing.T, endpoint, id string) *zmq.Socket {
	s, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	s.SetLinger(0)
	s.SetIdentity(id)
	s.SetRcvtimeo(5 * time.Second)
	if err := s.Connect(endpoint); err != nil {
		t.Fatal(err)
	}
	return s
}

// send sends one message on s, and fails the test if it cannot.
func send(t *testing.T, s *zmq.Socket, parts ...any) {
	t.Helper()
	if _, err := s.SendMessage(parts...); err != nil {
		t.Fatal(err)
	}
}

// collect receives from socks until want messages have come (within 5 s), and 200 ms more for
// any beyond; check sees each (the index of its socket, the message) and says whether it
// counts. It returns the count.
func collect(t *testing.T, socks []*zmq.Socket, want int, check func(i int, msg [][]byte) bool) int {
	t.Helper()
	poller := zmq.NewPoller()
	for _, s := range socks {
		poller.Add(s, zmq.POLLIN)
	}
	n := 0
	for until := time.Now().Add(5 * time.Second); time.Now().Before(until); {
		polled, err := zmqpoll.Poll(poller, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range polled {
			msg, err := p.Socket.RecvMessageBytes(0)
			if err != nil {
				t.Fatal(err)
			}
			if !check(slices.Index(socks, p.Socket), msg) {
				continue
			}
			if n++; n == want {
				until = time.Now().Add(200 * time.Millisecond)
			}
		}
	}
	return n
}

// -bind: many TLSZMQ clients come and go; at most MaxConns TCP connections exist at once, a
// connection the TCP server closes takes its entry and goroutines with it (and a client that
// asked for notices hears of it), and at the end nothing is left.
func TestBridgeZMQSideBounded(t *testing.T) {
	echo := newTCPEcho(t)
	const maxConns = 4
	b := newBridge(bridgeOptions{MaxConns: maxConns, Idle: time.Second, Log: quiet})
	base := runtime.NumGoroutine()
	endpoint := bindBridge(t, b, echo.ln.Addr().String())

	const rounds = 6
	for round := range rounds {
		var socks []*zmq.Socket
		for i := range 3 * maxConns {
			s := dealer(t, endpoint, fmt.Sprintf("%sr%dc%d", notice.IdentityPrefix, round, i))
			send(t, s, "", hello(fmt.Sprintf("hello %d", i)))
			socks = append(socks, s)
		}
		refused := 0
		answered := collect(t, socks, maxConns, func(i int, msg [][]byte) bool {
			if reason, ok := notice.Parse(msg[len(msg)-1]); ok && strings.Contains(reason, "(-max-conns)") {
				refused++ // a client past the cap, told so
				return false
			}
			if len(msg) != 2 || string(msg[1]) != hello(fmt.Sprintf("hello %d", i)) {
				t.Fatalf("client %d got %q", i, msg)
			}
			return true
		})
		if refused != 2*maxConns {
			t.Fatalf("round %d: %d clients told they were refused, want %d", round, refused, 2*maxConns)
		}
		if answered != maxConns || b.conns.Load() != maxConns || echo.open() != maxConns {
			t.Fatalf("round %d: %d clients answered, %d links, %d TCP connections; want %d", round, answered, b.conns.Load(), echo.open(), maxConns)
		}
		if n := b.goroutines.Load(); n > 2*maxConns {
			t.Fatalf("round %d: %d link goroutines for %d links", round, n, maxConns)
		}
		if round%2 == 0 {
			// The TCP server closes: the links go, and their clients are told.
			echo.closeAll()
			notified := collect(t, socks, maxConns, func(i int, msg [][]byte) bool {
				if reason, ok := notice.Parse(msg[len(msg)-1]); !ok || !strings.Contains(reason, "closed") {
					t.Fatalf("client %d got %q, want a notice", i, msg)
				}
				return true
			})
			if notified != maxConns {
				t.Fatalf("round %d: %d clients notified, want %d", round, notified, maxConns)
			}
		}
		// Else the links go after -idle.
		waitfor.Cond(t, func() bool { return b.conns.Load() == 0 && b.goroutines.Load() == 0 && echo.open() == 0 }, "the links to go")
		for _, s := range socks {
			s.Close()
		}
	}
	if echo.peak.Load() > maxConns || echo.total.Load() != rounds*maxConns {
		t.Fatalf("the TCP server saw %d connections at most, %d in all; want %d and %d", echo.peak.Load(), echo.total.Load(), maxConns, rounds*maxConns)
	}
	goroutinesBack(t, base+1) // the bridge's loop is still running
}

// -bind: a TCP dial that takes long runs beside the loop: other clients are served meanwhile,
// and the slow one is dropped (and told) when its dial gives up.
func TestBridgeDialDoesNotBlock(t *testing.T) {
	echo := newTCPEcho(t)
	var dials atomic.Int64
	d := &net.Dialer{}
	b := newBridge(bridgeOptions{DialTimeout: 2 * time.Second, Log: quiet,
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			if dials.Add(1) == 1 {
				<-ctx.Done() // the first dial hangs until it times out
				return nil, ctx.Err()
			}
			return d.DialContext(ctx, "tcp", addr)
		}})
	endpoint := bindBridge(t, b, echo.ln.Addr().String())

	slow := dealer(t, endpoint, notice.IdentityPrefix+"slow")
	defer slow.Close()
	send(t, slow, "", hello("first"))
	waitfor.Cond(t, func() bool { return dials.Load() == 1 }, "the first dial")
	fast := dealer(t, endpoint, "fast")
	defer fast.Close()
	start := time.Now()
	send(t, fast, "", hello("second"))
	msg, err := fast.RecvMessage(0)
	if err != nil || len(msg) != 2 || msg[1] != hello("second") || time.Since(start) > time.Second {
		t.Fatalf("the second client got %q, %v after %v, while the first dial hung", msg, err, time.Since(start))
	}
	got, err := slow.RecvMessageBytes(0)
	if err != nil {
		t.Fatal(err)
	}
	if reason, ok := notice.Parse(got[len(got)-1]); !ok || !strings.Contains(reason, "no TCP connection") {
		t.Fatalf("the slow client got %q, want a notice that its dial failed", got)
	}
	waitfor.Cond(t, func() bool { return b.conns.Load() == 1 }, "the failed link to go")
}

func TestBridgeHelpListsLimits(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"bridge", "-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"-max-conns int", "(default 500)", "-idle duration", "(default 5m0s)", "-dial-timeout duration",
		"(default 5s)", "-max-queue int", "(default 4194304)", "-max-envelope int", "(default 16)"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("-h does not say %q:\n%s", want, stderr.String())
		}
	}
	for _, args := range [][]string{{"bridge", "-listen", ":0", "-max-conns", "0"}, {"bridge", "-listen", ":0", "-idle", "0s"}} {
		stderr.Reset()
		if code := run(args, &stdout, &stderr); code != 2 || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, %q; want 2 and one line", args, code, stderr.String())
		}
	}
}

// -bind: a TCP server that does not read costs its own link only: past -max-queue bytes
// waiting, the link is closed (its client told), and another client is served meanwhile.
func TestBridgeQueueBounded(t *testing.T) {
	ln := loopback(t)
	held := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(held)
				return
			}
			held <- c // never read
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for c := range held {
			c.Close()
		}
	})
	const maxQueue = 256 << 10
	var dials atomic.Int64
	d := &net.Dialer{}
	b := newBridge(bridgeOptions{MaxQueue: maxQueue, Log: quiet, Dial: func(ctx context.Context, addr string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, "tcp", addr)
	}})
	endpoint := bindBridge(t, b, ln.Addr().String())
	s := dealer(t, endpoint, notice.IdentityPrefix+"writer")
	defer s.Close()
	chunk := bytes.Repeat([]byte{7}, 64<<10)
	for i := range 1024 { // 64 MiB, far more than the socket buffers and the queue hold
		p := chunk
		if i == 0 {
			p = []byte(hello(string(chunk)))
		}
		if _, err := s.SendMessage("", p); err != nil {
			t.Fatal(err)
		}
	}
	s.SetRcvtimeo(10 * time.Second)
	msg, err := s.RecvMessageBytes(0)
	if err != nil {
		t.Fatal(err)
	}
	if reason, ok := notice.Parse(msg[len(msg)-1]); !ok || !strings.Contains(reason, "-max-queue") {
		t.Fatalf("got %q, want a notice naming -max-queue", msg)
	}
	// The rest of the stream opens no new connection.
	waitfor.Cond(t, func() bool { return b.conns.Load() == 0 && b.goroutines.Load() == 0 }, "the link to go")
	time.Sleep(100 * time.Millisecond)
	if n := dials.Load(); n != 1 {
		t.Fatalf("the TCP server was dialled %d times, want once", n)
	}
}

// -bind: links the TCP server never answers (ClientHellos that never end) do not hold every
// place: after a second, the oldest of them makes room for a new client, and its client is
// told; within the second, the new client is refused.
func TestBridgeUnansweredLinksMakeRoom(t *testing.T) {
	ln := loopback(t)
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		var held []net.Conn // accepted, read from, never answered
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			held = append(held, c)
			go io.Copy(io.Discard, c)
		}
	}()
	b := newBridge(bridgeOptions{MaxConns: 2, Log: quiet})
	endpoint := bindBridge(t, b, ln.Addr().String())

	first := dealer(t, endpoint, notice.IdentityPrefix+"first")
	defer first.Close()
	second := dealer(t, endpoint, notice.IdentityPrefix+"second")
	defer second.Close()
	send(t, first, "", hello("1"))
	waitfor.Cond(t, func() bool { return b.conns.Load() == 1 }, "the first link")
	send(t, second, "", hello("2"))
	waitfor.Cond(t, func() bool { return b.conns.Load() == 2 && accepted.Load() == 2 }, "two links")

	// Within the grace, a third client is refused: both places are taken.
	third := dealer(t, endpoint, notice.IdentityPrefix+"third")
	defer third.Close()
	send(t, third, "", hello("3"))
	time.Sleep(200 * time.Millisecond)
	if accepted.Load() != 2 {
		t.Fatalf("%d TCP connections within the grace, want 2", accepted.Load())
	}
	// After it, the oldest unanswered link gives its place to the next ClientHello.
	time.Sleep(unheardGrace)
	send(t, third, "", hello("3 again"))
	waitfor.Cond(t, func() bool { return accepted.Load() == 3 }, "the third client's link")
	first.SetRcvtimeo(2 * time.Second)
	msg, err := first.RecvMessageBytes(0)
	if err != nil {
		t.Fatalf("the first client heard nothing: %v", err)
	}
	if reason, ok := notice.Parse(msg[len(msg)-1]); !ok || !strings.Contains(reason, "-max-conns") {
		t.Fatalf("the first client got %q, want a notice naming -max-conns", msg)
	}
	if n := b.conns.Load(); n != 2 {
		t.Fatalf("%d links, want 2", n)
	}
}

// openssl s_client through the bridge when the server ends the session: after the server's
// fatal alert and after its close_notify, s_client ends by itself, within a second (the
// crypto/tls tests above check that the bridge closes the TCP connection itself); when the server forgets an idle session there are no TLS bytes at all, and only the
// bridge's closing the TCP connection ends s_client, which would otherwise wait on its open
// stdin for ever: it must exit within a second.
func TestBridgeSClientSeesTheEnd(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		opts  tlszmq.ServerOptions
		after func(srv *tlszmq.Server) // what ends the session, once the handshake is done
	}{
		{name: "fatal alert", args: []string{"-tls1_2", "-cipher", "AES128-SHA"}}, // CBC: not offered by the server
		{name: "close_notify", args: []string{"-tls1_3"}, after: func(srv *tlszmq.Server) { srv.Close() }},
		{name: "idle", args: []string{"-tls1_3"}, opts: tlszmq.ServerOptions{IdleTimeout: 300 * time.Millisecond}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, addr, log := bridgeToServer(t, tc.opts)

			args := append([]string{"s_client", "-connect", addr, "-CAfile", certFile("ca.crt"),
				"-servername", "localhost", "-ign_eof"}, tc.args...)
			cmd := exec.Command("openssl", args...)
			stdin, _ := cmd.StdinPipe() // held open: s_client ends only when the connection does
			defer stdin.Close()
			out := &syncbuf.Buffer{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer cmd.Process.Kill()
			if tc.after != nil {
				waitfor.Cond(t, func() bool { return strings.Contains(out.String(), "Verify return code: 0") }, "the handshake")
			}
			start := time.Now()
			if tc.after != nil {
				tc.after(srv)
			}
			limit := time.Second + tc.opts.IdleTimeout + 100*time.Millisecond
			select {
			case <-exited:
				t.Logf("s_client exited %v after the end began", time.Since(start).Round(time.Millisecond))
			case <-time.After(limit):
				t.Fatalf("s_client still runs %v after the end began: the TCP connection is open\n%s", limit, out.String())
			}
			// After an alert or close_notify, s_client may close its side first; the bridge's
			// own closing is what the idle case shows.
			if tc.after == nil && tc.opts.IdleTimeout > 0 && !strings.Contains(log.String(), "ended the session") {
				t.Errorf("the bridge logged no end of session:\n%s", log.String())
			}
		})
	}
}

// -bind: one ZeroMQ connection that makes up routes cannot hold every place, even with links
// its TCP server has answered: a client on another connection takes the place of that
// connection's oldest link, whose route is told.
func TestBridgeOneConnectionCannotHoldEveryPlace(t *testing.T) {
	echo := newTCPEcho(t)
	b := newBridge(bridgeOptions{MaxConns: 4, Log: quiet})
	endpoint := bindBridge(t, b, echo.ln.Addr().String())

	forger := dealer(t, endpoint, "forger")
	defer forger.Close()
	forger.SetRcvtimeo(5 * time.Second)
	for i := range 4 { // four made-up routes, each answered by the TCP server
		route := fmt.Sprintf("%sforged-%d", notice.IdentityPrefix, i)
		send(t, forger, route, "", hello(route))
		if msg, err := forger.RecvMessage(0); err != nil || msg[len(msg)-1] != hello(route) {
			t.Fatalf("forged route %d: %q, %v", i, msg, err)
		}
	}
	other := dealer(t, endpoint, "other")
	defer other.Close()
	other.SetRcvtimeo(5 * time.Second)
	send(t, other, "", hello("other"))
	if msg, err := other.RecvMessage(0); err != nil || msg[len(msg)-1] != hello("other") {
		t.Fatalf("the client on another connection: %q, %v", msg, err)
	}
	msg, err := forger.RecvMessageBytes(0)
	if err != nil {
		t.Fatal(err)
	}
	if reason, ok := notice.Parse(msg[len(msg)-1]); !ok || string(msg[0]) != notice.IdentityPrefix+"forged-0" || !strings.Contains(reason, "-max-conns") {
		t.Fatalf("the forger got %q, want a notice for its oldest route", msg)
	}
	if n := b.conns.Load(); n != 4 {
		t.Fatalf("%d links, want 4", n)
	}
}
