package tlszmq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/tlszmq/tlszmq/internal/waitfor"
)

// quietLog keeps the servers' session lines out of the test output unless -v.
func quietLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.Default()
	}
	return slog.New(slog.DiscardHandler)
}

func echo(_ context.Context, _ *Peer, req [][]byte) ([][]byte, error) { return req, nil }

// startServer runs a server until the test ends.
func startServer(t testing.TB, cfg *Config, endpoint string, h Handler, opts *ServerOptions) *Server {
	t.Helper()
	return serveOn(t, mustContext(t, RoleServer, cfg), endpoint, h, opts)
}

// serveOn runs a server on a Context of the test's until the test ends.
func serveOn(t testing.TB, sctx *Context, endpoint string, h Handler, opts *ServerOptions) *Server {
	t.Helper()
	if opts == nil {
		opts = &ServerOptions{}
	}
	if opts.Logger == nil {
		opts.Logger = quietLog(t)
	}
	srv, err := NewServer(sctx, endpoint, h, opts)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(context.Background()) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv
}

func newClient(t testing.TB, cfg *Config, endpoint string, opts *ClientOptions) *Client {
	t.Helper()
	c, err := NewClient(mustContext(t, RoleClient, cfg), endpoint, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func equalParts(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

var transports = []struct{ name, bind string }{
	{"tcp", "tcp://127.0.0.1:*"},
	{"ipc", "ipc://"},
	{"inproc", "inproc://"},
}

// endpointFor makes a fresh endpoint of a transport for one test.
func endpointFor(t testing.TB, bind string) string {
	switch bind {
	case "ipc://":
		return "ipc://" + filepath.Join(t.TempDir(), "s.ipc")
	case "inproc://":
		return fmt.Sprintf("inproc://%s-%d", t.Name(), time.Now().UnixNano())
	}
	return bind
}

func TestClientServerMatrix(t *testing.T) {
	msgs := [][][]byte{
		{[]byte("hello world!")},
		{nil},                                  // an empty message
		{[]byte("multi"), nil, []byte("part")}, // parts, one of them empty
		{pattern(16 << 10)},
		{pattern(1 << 20), pattern(3)},
	}
	for _, tr := range transports {
		for _, pat := range []Pattern{REQ, DEALER} {
			for _, ver := range versions {
				for _, mutual := range []bool{false, true} {
					name := fmt.Sprintf("%s/%v/%s/mutual=%v", tr.name, pat, ver.name, mutual)
					t.Run(name, func(t *testing.T) {
						scfg := serverConfig("server")
						ccfg := clientConfig()
						ccfg.MaxVersion = ver.v
						if mutual {
							scfg.CAFile, scfg.ClientAuth = cert("ca.crt"), RequireAndVerifyClientCert
							ccfg.CertFile, ccfg.KeyFile = cert("client-ec.crt"), cert("client-ec.key")
						}
						var peerSeen *Peer
						srv := startServer(t, scfg, endpointFor(t, tr.bind), func(ctx context.Context, p *Peer, req [][]byte) ([][]byte, error) {
							peerSeen = p
							return req, nil
						}, nil)
						c := newClient(t, ccfg, srv.Endpoint(), &ClientOptions{Pattern: pat})
						ctx := ctxTimeout(t, 20*time.Second)
						for i, m := range msgs {
							got, err := c.Request(ctx, m...)
							if err != nil {
								t.Fatalf("message %d: %v", i, err)
							}
							if !equalParts(got, m) {
								t.Fatalf("message %d: got %d parts, want %d", i, len(got), len(m))
							}
						}
						st := c.ConnectionState()
						if st.Version != ver.v || st.NegotiatedProtocol != ProtocolFramed {
							t.Fatalf("state %+v", st)
						}
						if mutual && (peerSeen == nil || !peerSeen.Verified || peerSeen.Certificates[0].Subject.CommonName != "tlszmq client-ec") {
							t.Fatalf("the handler's peer: %+v", peerSeen)
						}
					})
				}
			}
		}
	}
}

func TestLargeMessageOverZMQ(t *testing.T) {
	srv := startServer(t, serverConfig("server-ec"), "tcp://127.0.0.1:*", echo, nil)
	c := newClient(t, clientConfig(), srv.Endpoint(), &ClientOptions{Pattern: DEALER})
	msg := pattern(16 << 20)
	got, err := c.Request(ctxTimeout(t, 30*time.Second), msg)
	if err != nil || len(got) != 1 || !bytes.Equal(got[0], msg) {
		t.Fatalf("16 MiB: %d parts, %v", len(got), err)
	}
}

// Pipelined messages on DEALER keep their boundaries and their order.
func TestDealerPipelining(t *testing.T) {
	srv := startServer(t, serverConfig("server"), "tcp://127.0.0.1:*", echo, nil)
	c := newClient(t, clientConfig(), srv.Endpoint(), &ClientOptions{Pattern: DEALER})
	ctx := ctxTimeout(t, 20*time.Second)
	const n = 50
	for i := range n {
		if err := c.Send(ctx, []byte(fmt.Sprintf("message %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		got, err := c.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("message %d", i); len(got) != 1 || string(got[0]) != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}

// Queued messages, small and large, multi-part and empty, leave in few ZeroMQ messages and
// arrive as the separate messages they were, in order, each answered.
func TestQueueBatchesMessages(t *testing.T) {
	srv := startServer(t, serverConfig("server-ec"), "tcp://127.0.0.1:*", echo, nil)
	c := newClient(t, clientConfig(), srv.Endpoint(), &ClientOptions{Pattern: DEALER})
	ctx := ctxTimeout(t, 20*time.Second)
	if err := c.Handshake(ctx); err != nil {
		t.Fatal(err)
	}
	var sent [][][]byte
	for i := range 2000 {
		msg := [][]byte{[]byte(fmt.Sprintf("message %d", i))}
		switch i % 500 {
		case 7:
			msg = [][]byte{pattern(100 << 10), nil, []byte("after a large part")}
		case 8:
			msg = [][]byte{nil}
		}
		if err := c.Queue(ctx, msg...); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, msg)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for i, want := range sent {
		got, err := c.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !equalParts(got, want) {
			t.Fatalf("reply %d: %d parts, want %d", i, len(got), len(want))
		}
	}
	st := srv.Stats()
	if st.MessagesIn != int64(len(sent)) {
		t.Fatalf("the server took %d messages, want %d", st.MessagesIn, len(sent))
	}
}

// A session that has gone quiet lets its buffers go: after 4 MiB messages its memory BIOs
// hold about a chunk each, a second later next to nothing.
func TestQuietSessionLetsBuffersGo(t *testing.T) {
	// "?" asks the session for its BIOs' storage in KiB, looked at on Serve's goroutine.
	srv := startServer(t, serverConfig("server-ec"), "tcp://127.0.0.1:*", func(_ context.Context, p *Peer, req [][]byte) ([][]byte, error) {
		if string(req[0]) == "?" {
			return [][]byte{{byte(min(p.sess.e.bioStorage()>>10, 255))}}, nil
		}
		return req, nil
	}, nil)
	c := newClient(t, clientConfig(), srv.Endpoint(), &ClientOptions{Identity: "quiet"})
	if _, err := c.Request(ctxTimeout(t, 10*time.Second), pattern(4<<20)); err != nil {
		t.Fatal(err)
	}
	storage := func() int {
		got, err := c.Request(ctxTimeout(t, 10*time.Second), []byte("?"))
		if err != nil {
			t.Fatal(err)
		}
		return int(got[0][0])
	}
	if kib := storage(); kib < 32 {
		t.Fatalf("right after 4 MiB the BIOs hold %d KiB: nothing to release", kib)
	}
	time.Sleep(releaseAfter + 200*time.Millisecond)
	// The request that asks goes through the BIOs too: a few hundred bytes at most.
	if kib := storage(); kib > 4 {
		t.Fatalf("a quiet session's BIOs hold %d KiB", kib)
	}
}

// A REQ client may not send again before the reply: an error says so, nothing is lost.
func TestREQSendsInLockStep(t *testing.T) {
	srv := startServer(t, serverConfig("server-ec"), "tcp://127.0.0.1:*", echo, nil)
	c := newClient(t, clientConfig(), srv.Endpoint(), nil)
	ctx := ctxTimeout(t, 10*time.Second)
	if err := c.Send(ctx, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctx, []byte("two")); !errors.Is(err, ErrReplyOwed) {
		t.Fatalf("a second Send before the reply: %v", err)
	}
	if got, err := c.Recv(ctx); err != nil || string(got[0]) != "one" {
		t.Fatalf("%q %v", got, err)
	}
	if got, err := c.Request(ctx, []byte("three")); err != nil || string(got[0]) != "three" {
		t.Fatalf("%q %v", got, err)
	}
}

// A REQ client with small messages gathered and then a large one (which goes in a batch of
// its own) sends the gathered ones and refuses the large one until their reply is in: it never
// sends twice in a row, which would lose a reply and break the session.
func TestREQQueueThenLargeMessage(t *testing.T) {
	srv := startServer(t, serverConfig("server-ec"), "tcp://127.0.0.1:*", echo, nil)
	c := newClient(t, clientConfig(), srv.Endpoint(), nil)
	ctx := ctxTimeout(t, 10*time.Second)
	if err := c.Queue(ctx, []byte("small")); err != nil {
		t.Fatal(err)
	}
	large := pattern(2 * queueLimit)
	if err := c.Queue(ctx, large); !errors.Is(err, ErrReplyOwed) {
		t.Fatalf("a large message while the small one's reply is owed: %v", err)
	}
	if got, err := c.Recv(ctx); err != nil || string(got[0]) != "small" {
		t.Fatalf("%q %v", got, err)
	}
	if got, err := c.Request(ctx, large); err != nil || !bytes.Equal(got[0], large) {
		t.Fatalf("the large message after the reply: %v", err)
	}
}

// A client that offers no ALPN speaks the C++ peers' format with a tlszmq server.
func TestRawClient(t *testing.T) {
	srv := startServer(t, serverConfig("server"), "tcp://127.0.0.1:*", echo, nil)
	c := newClient(t, clientConfig(), srv.Endpoint(), &ClientOptions{Raw: true})
	ctx := ctxTimeout(t, 10*time.Second)
	got, err := c.Request(ctx, []byte("hello world!"))
	if err != nil || len(got) != 1 || string(got[0]) != "hello world!" {
		t.Fatalf("%q %v", got, err)
	}
	if c.ConnectionState().NegotiatedProtocol != "" {
		t.Fatal("a raw client negotiated ALPN")
	}
	if err := c.Send(ctx, []byte("a"), []byte("b")); err == nil {
		t.Fatal("a multi-part message went to a peer without the framed protocol")
	}
}

func TestManyClients(t *testing.T) {
	clients, perClient := 200, 100
	if testing.Short() {
		clients, perClient = 50, 20
	}
	srv := startServer(t, serverConfig("server-ec"), "tcp://127.0.0.1:*",
		func(_ context.Context, p *Peer, req [][]byte) ([][]byte, error) {
			return [][]byte{p.Identity, req[0]}, nil
		}, nil)
	cctx := mustContext(t, RoleClient, clientConfig())
	ctx := ctxTimeout(t, 120*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("client-%03d", i)
			c, err := NewClient(cctx, srv.Endpoint(), &ClientOptions{Identity: id})
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for j := range perClient {
				msg := fmt.Sprintf("%s message %d", id, j)
				got, err := c.Request(ctx, []byte(msg))
				if err != nil {
					errs <- fmt.Errorf("%s: %w", id, err)
					return
				}
				if len(got) != 2 || string(got[0]) != id || string(got[1]) != msg {
					errs <- fmt.Errorf("%s got %q for %q: a crossed session", id, got, msg)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := srv.Stats(); st.HandshakesDone != int64(clients) || st.MessagesIn != int64(clients*perClient) {
		t.Errorf("stats %+v", st)
	}
}

// A server that never answers: a clear timeout naming the endpoint, no hang.
func TestServerNeverAnswers(t *testing.T) {
	sock, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	sock.Bind("tcp://127.0.0.1:*")
	endpoint, _ := sock.GetLastEndpoint()
	for _, pat := range []Pattern{REQ, DEALER} {
		c := newClient(t, clientConfig(), endpoint, &ClientOptions{Pattern: pat, Timeout: 300 * time.Millisecond})
		start := time.Now()
		err := c.Handshake(context.Background())
		if !errors.Is(err, ErrTimeout) || !bytes.Contains([]byte(err.Error()), []byte(endpoint)) {
			t.Fatalf("%v: %v, want a timeout naming %s", pat, err, endpoint)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("%v: the timeout took %v", pat, d)
		}
	}
}

func TestCloseNotifyRemovesSession(t *testing.T) {
	srv := startServer(t, serverConfig("server"), "tcp://127.0.0.1:*", echo, nil)
	c := newClient(t, clientConfig(), srv.Endpoint(), nil)
	if _, err := c.Request(ctxTimeout(t, 10*time.Second), []byte("x")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitfor.Cond(t, func() bool { return srv.Stats().Sessions == 0 }, "the session to go after close_notify")
}

func TestRestartedClientGetsFreshSession(t *testing.T) {
	srv := startServer(t, serverConfig("server"), "tcp://127.0.0.1:*", echo, nil)
	ctx := ctxTimeout(t, 10*time.Second)
	for round := range 3 {
		c := newClient(t, clientConfig(), srv.Endpoint(), &ClientOptions{Identity: "client2"})
		if got, err := c.Request(ctx, []byte("hi")); err != nil || string(got[0]) != "hi" {
			t.Fatalf("round %d: %q %v", round, got, err)
		}
		// Dropped without close_notify, as a crashed client would be. libzmq's ROUTER refuses
		// a second connection with an identity in use (ZMQ_ROUTER_HANDOVER stays off, so that
		// nobody can take a live client's identity over), so the restarted client connects once
		// the old connection is gone, as a restarted process does.
		c.sock.Close()
		c.closed = true
		c.e.Close()
		time.Sleep(300 * time.Millisecond)
	}
	if st := srv.Stats(); st.HandshakesDone != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// clientHello returns a real ClientHello.
func clientHello(t testing.TB) []byte {
	c, _ := NewClientEngine(mustContext(t, RoleClient, clientConfig()))
	defer c.Close()
	c.Update()
	return c.GetData()
}

// Half-open handshakes are evicted after the timeout, the table never exceeds its maximum, and
// a legitimate client still gets through.
func TestSessionHygiene(t *testing.T) {
	const max = 500
	srv := startServer(t, serverConfig("server-ec"), "tcp://127.0.0.1:*", echo,
		&ServerOptions{MaxSessions: max, MaxHalfOpen: max, HandshakeTimeout: 300 * time.Millisecond})
	raw, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetLinger(0)
	if err := raw.Connect(srv.Endpoint()); err != nil {
		t.Fatal(err)
	}
	hello := clientHello(t)
	half := 50000
	if testing.Short() || raceBuild {
		half = 2000 // the full 50,000 run in the plain run of the suite
	}
	heapBefore := cHeapInUse()
	for i := range half {
		// A DEALER may put any envelope in front: each fake identity is a new session.
		if _, err := raw.SendMessage(fmt.Sprintf("fake-%05d", i), "", hello); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 {
			drain(raw)
			if n := srv.Stats().Sessions; n > max {
				t.Fatalf("%d sessions, the maximum is %d", n, max)
			}
			// OpenSSL's memory is bounded by the table too: a half-open session holds a few
			// tens of KiB at most.
			if grown := cHeapInUse() - heapBefore; grown > max*128<<10 {
				t.Fatalf("the C heap grew by %d MiB with %d half-open handshakes", grown>>20, i+1)
			}
		}
	}
	c := newClient(t, clientConfig(), srv.Endpoint(), nil)
	if got, err := c.Request(ctxTimeout(t, 20*time.Second), []byte("still here")); err != nil || string(got[0]) != "still here" {
		t.Fatalf("legitimate client: %q %v", got, err)
	}
	c.Close()
	waitfor.Within(t, 60*time.Second, func() bool { drain(raw); return srv.Stats().Sessions == 0 }, "half-open sessions to time out")
	if st := srv.Stats(); st.HandshakesFailed < int64(max) {
		t.Fatalf("stats %+v", st)
	}
}

func drain(sock *zmq.Socket) {
	for {
		if _, err := sock.RecvMessageBytes(zmq.DONTWAIT); err != nil {
			return
		}
	}
}

func TestServeStopsWithCloseNotify(t *testing.T) {
	srv, err := NewServer(mustContext(t, RoleServer, serverConfig("server")), "tcp://127.0.0.1:*", echo, &ServerOptions{Logger: quietLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	c := newClient(t, clientConfig(), srv.Endpoint(), &ClientOptions{Pattern: DEALER})
	rctx := ctxTimeout(t, 10*time.Second)
	if _, err := c.Request(rctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Serve took %v to stop", d)
	}
	if _, err := c.Recv(rctx); !errors.Is(err, ErrPeerClosed) || !errors.Is(err, io.EOF) {
		t.Fatalf("client after the server stopped: %v, want ErrPeerClosed (io.EOF: close_notify)", err)
	}
}

// A handler that defers; backends on goroutines of their own answer with Reply, in whatever
// order they finish; lock-step REQ clients get exactly their own reply.
func TestDeferredReply(t *testing.T) {
	type request struct {
		peer *Peer
		msg  []byte
	}
	requests := make(chan request, 64)
	var srv *Server
	handler := func(_ context.Context, p *Peer, req [][]byte) ([][]byte, error) {
		requests <- request{p, req[0]}
		return nil, ErrDeferred
	}
	srv = startServer(t, serverConfig("server"), "tcp://127.0.0.1:*", handler, nil)
	stop := make(chan struct{})
	var backends sync.WaitGroup
	defer func() { close(stop); backends.Wait() }()
	for range 3 { // the backend upper-cases after a while
		backends.Add(1)
		go func() {
			defer backends.Done()
			for {
				select {
				case <-stop:
					return
				case r := <-requests:
					time.Sleep(5 * time.Millisecond)
					if err := srv.Reply(r.peer, [][]byte{bytes.ToUpper(r.msg)}); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	ctx := ctxTimeout(t, 10*time.Second)
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := NewClient(mustContext(t, RoleClient, clientConfig()), srv.Endpoint(), nil)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			for j := range 5 {
				msg := fmt.Sprintf("client %d message %d", i, j)
				got, err := c.Request(ctx, []byte(msg))
				if err != nil || string(got[0]) != strings.ToUpper(msg) {
					t.Errorf("%q: got %q, %v", msg, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestCloseWithoutServe(t *testing.T) {
	srv, err := NewServer(mustContext(t, RoleServer, serverConfig("server")), "tcp://127.0.0.1:*", echo, &ServerOptions{Logger: quietLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Close(); srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close without Serve hangs")
	}
	if err := srv.Serve(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
}

// A client whose session the server has forgotten (here: idle) gets the alert a fresh engine
// would send for its next record, without the server making a session for it, so that a
// client with Reconnect starts over by itself, over REQ and DEALER alike.
func TestForgottenSessionGetsAnAlert(t *testing.T) {
	srv := startServer(t, serverConfig("server-ec"), "tcp://127.0.0.1:*", echo, &ServerOptions{IdleTimeout: 200 * time.Millisecond})
	for _, p := range []Pattern{REQ, DEALER} {
		t.Run(p.String(), func(t *testing.T) {
			c := newClient(t, clientConfig(), srv.Endpoint(), &ClientOptions{Pattern: p, Reconnect: true, Timeout: 5 * time.Second})
			defer c.Close()
			ctx := ctxTimeout(t, 20*time.Second)
			if _, err := c.Request(ctx, []byte("a")); err != nil {
				t.Fatal(err)
			}
			waitfor.Within(t, 5*time.Second, func() bool { return srv.Stats().Sessions == 0 }, "the session to go idle")
			start := time.Now()
			_, err := c.Request(ctx, []byte("b"))
			t.Logf("the first request after the server forgot the session: %v (after %v)", err, time.Since(start))
			// TLS 1.2 reads the plaintext alert; TLS 1.3 refuses a plaintext record after the
			// handshake and says so with an alert of its own: either way, a TLS error at once.
			var alert *AlertError
			if err == nil || !errors.As(err, &alert) {
				t.Fatalf("first request: %v, want a TLS alert", err)
			}
			if time.Since(start) > 2*time.Second {
				t.Fatalf("the client learned it after %v: it waited for a timeout", time.Since(start))
			}
			got, err := c.Request(ctx, []byte("c"))
			if err != nil || string(got[0]) != "c" {
				t.Fatalf("the request after that: %q %v, want a new session", got, err)
			}
		})
	}
}

// A ClientHello cut anywhere into two frames, even inside its record header (a TCP bridge may
// read it so), makes a session: the first piece waits without an engine, the second completes
// it, and the client's engine takes the server's answer.
func TestClientHelloInPieces(t *testing.T) {
	srv := startServer(t, serverConfig("server-ec"), "tcp://127.0.0.1:*", echo, nil)
	for _, cut := range []int{1, 3, 5, 6, 100} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			c, err := NewClientEngine(mustContext(t, RoleClient, clientConfig()))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Update()
			hello := c.GetData()
			d, err := zmq.NewSocket(zmq.DEALER)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			d.SetLinger(0)
			d.SetRcvtimeo(5 * time.Second)
			if err := d.Connect(srv.Endpoint()); err != nil {
				t.Fatal(err)
			}
			d.SendMessage("", hello[:cut])
			first, err := d.RecvMessageBytes(0)
			if err != nil || len(first[len(first)-1]) != 0 {
				t.Fatalf("the first piece: %q, %v; want an empty answer", first, err)
			}
			d.SendMessage("", hello[cut:])
			second, err := d.RecvMessageBytes(0)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.PutData(second[len(second)-1]); err != nil || !c.NeedsWrite() && !c.HandshakeComplete() {
				t.Fatalf("the server's answer to the whole ClientHello: %v", err)
			}
		})
	}
}
