package tlszmq

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq/internal/syncbuf"
	"github.com/tlszmq/tlszmq/internal/waitfor"
)

// The server's events: one line per completed handshake and per failed one, with the peer's
// address (libzmq's Peer-Address), which the handler sees on Peer too.
func TestHandshakeEventsAndPeerAddress(t *testing.T) {
	var logs syncbuf.Buffer
	addrs := make(chan string, 1)
	handler := func(_ context.Context, p *Peer, req [][]byte) ([][]byte, error) {
		select {
		case addrs <- p.Address:
		default:
		}
		return req, nil
	}
	srv := startServer(t, serverConfig("server"), "tcp://127.0.0.1:*", handler,
		&ServerOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c := newClient(t, clientConfig(), srv.Endpoint(), nil)
	if _, err := c.Request(ctxTimeout(t, 10*time.Second), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if a := <-addrs; a != "127.0.0.1" {
		t.Errorf("Peer.Address = %q, want 127.0.0.1", a)
	}
	other := clientConfig()
	other.CAFile = cert("other-ca.crt")
	bad := newClient(t, other, srv.Endpoint(), &ClientOptions{Timeout: 5 * time.Second})
	bad.Request(ctxTimeout(t, 10*time.Second), []byte("x"))
	waitfor.Cond(t, func() bool { return strings.Contains(logs.String(), "handshake failed") }, "the failed handshake's line")
	var done, failed string
	for _, l := range strings.Split(logs.String(), "\n") {
		switch {
		case strings.Contains(l, `msg="tlszmq: handshake done"`):
			done = l
		case strings.Contains(l, `msg="tlszmq: handshake failed"`):
			failed = l
		}
	}
	for _, want := range []string{"level=INFO", "address=127.0.0.1", `version="TLS 1.3"`, "cipher=TLS_", "resumed=false", "took="} {
		if !strings.Contains(done, want) {
			t.Errorf("the handshake line %q lacks %s", done, want)
		}
	}
	for _, want := range []string{"level=WARN", "address=127.0.0.1", "reason=", "alert="} {
		if !strings.Contains(failed, want) {
			t.Errorf("the failure line %q lacks %s", failed, want)
		}
	}
}

// Without a Logger the library logs nothing: not to slog's default logger either.
func TestNoLoggerLogsNothing(t *testing.T) {
	var b bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&b, nil)))
	defer slog.SetDefault(old)
	srv, err := NewServer(mustContext(t, RoleServer, serverConfig("server-ec")), "tcp://127.0.0.1:*", echo, nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background())
	cctx, err := NewContext(RoleClient, &Config{InsecureSkipVerify: true}) // a Context that warns, if told where
	if err != nil {
		t.Fatal(err)
	}
	defer cctx.Close()
	c, err := NewClient(cctx, srv.Endpoint(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Request(ctxTimeout(t, 10*time.Second), []byte("x")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	srv.Close()
	if b.Len() > 0 {
		t.Fatalf("the library logged without a Logger:\n%s", b.String())
	}
}

// A session's counters on Peer, and a Client's: the bytes and messages each way match on both
// ends, and the handshake took some time.
func TestPeerAndClientCounters(t *testing.T) {
	peers := make(chan *Peer, 1)
	handler := func(_ context.Context, p *Peer, req [][]byte) ([][]byte, error) {
		select {
		case peers <- p:
		default:
		}
		return req, nil
	}
	srv := startServer(t, serverConfig("server-ec"), "tcp://127.0.0.1:*", handler, nil)
	c := newClient(t, clientConfig(), srv.Endpoint(), &ClientOptions{Pattern: DEALER})
	for range 3 {
		if _, err := c.Request(ctxTimeout(t, 10*time.Second), []byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	p := <-peers
	cs := c.Stats()
	waitfor.Cond(t, func() bool { pc := p.Counters(); return pc.BytesOut == cs.BytesIn && pc.BytesIn == cs.BytesOut }, "the counters to agree")
	pc := p.Counters()
	if pc.MessagesIn != 3 || pc.MessagesOut != 3 || cs.MessagesIn != 3 || cs.MessagesOut != 3 || cs.Handshakes != 1 || pc.HandshakeTime <= 0 {
		t.Fatalf("peer %+v, client %+v", pc, cs)
	}
}
