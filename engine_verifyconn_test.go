package tlszmq

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq/internal/syncbuf"
	"github.com/tlszmq/tlszmq/internal/waitfor"
)

// errNotAllowed is the tests' VerifyConnection refusal.
var errNotAllowed = errors.New("subject not allowed")

// allowSubjects is a VerifyConnection hook that takes peers whose certificate's common name is
// one of names, and counts its calls and keeps the states it saw.
type allowSubjects struct {
	mu     sync.Mutex
	names  []string
	states []ConnectionState
}

func (a *allowSubjects) verify(st ConnectionState) error {
	a.mu.Lock()
	a.states = append(a.states, st)
	a.mu.Unlock()
	if len(st.PeerCertificates) == 0 {
		return fmt.Errorf("no certificate: %w", errNotAllowed)
	}
	cn := st.PeerCertificates[0].Subject.CommonName
	for _, n := range a.names {
		if cn == n {
			return nil
		}
	}
	return fmt.Errorf("%q: %w", cn, errNotAllowed)
}

func (a *allowSubjects) calls() []ConnectionState {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]ConnectionState(nil), a.states...)
}

// checkRefused fails unless err is the engine error of a session the hook refused.
func checkRefused(t *testing.T, side string, err error) {
	t.Helper()
	var e *Error
	if !errors.Is(err, errNotAllowed) || !errors.As(err, &e) || !strings.Contains(err.Error(), "refused by Config.VerifyConnection") {
		t.Errorf("%s: %v, want the hook's refusal", side, err)
	}
}

// A server's hook refuses a client by subject, after OpenSSL verified its certificate: the
// engine fails with the hook's error, the application data that came with the client's last
// flight is never handed out, and the client gets close_notify. An allowed client goes on.
func TestVerifyConnectionServerSide(t *testing.T) {
	for _, ver := range bothVersions {
		t.Run(ver.name, func(t *testing.T) {
			hook := &allowSubjects{names: []string{"tlszmq client-ec"}}
			scfg := serverConfig("server")
			scfg.CAFile, scfg.ClientAuth, scfg.VerifyConnection = cert("ca.crt"), RequireAndVerifyClientCert, hook.verify
			ccfg := clientConfig()
			ccfg.MaxVersion = ver.v
			ccfg.CertFile, ccfg.KeyFile = cert("client.crt"), cert("client.key") // "tlszmq client": not allowed
			c, s := newPair(t, ccfg, scfg)
			if _, err := c.Write([]byte("secret request")); err != nil { // sent with the client's Finished
				t.Fatal(err)
			}
			_, serr := handshake(c, s)
			checkRefused(t, "server", serr)
			if msg, err := s.Read(); len(msg) > 0 || !errors.Is(err, errNotAllowed) {
				t.Errorf("server Read after the refusal: %q, %v", msg, err)
			}
			if st := s.State(); !errors.Is(st.Err, errNotAllowed) || st.Readable != 0 {
				t.Errorf("server state %+v", st)
			}
			// The close_notify reaches the client.
			transfer(s, c, whole)
			if !c.PeerClosed() {
				t.Errorf("client: peer closed %v, error %v; want the server's close_notify", c.PeerClosed(), c.Err())
			}
			calls := hook.calls()
			if len(calls) != 1 || !calls[0].Verified || calls[0].Version != ver.v || calls[0].CipherSuite == "" {
				t.Errorf("the hook saw %+v, want one verified state", calls)
			}

			ccfg.CertFile, ccfg.KeyFile = cert("client-ec.crt"), cert("client-ec.key")
			c, s = newPair(t, ccfg, scfg)
			if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
				t.Fatalf("an allowed client: %v / %v", cerr, serr)
			}
			if got := roundTrip(t, c, s, []byte("hello")); string(got) != "hello" {
				t.Errorf("allowed client's data: %q", got)
			}
		})
	}
}

// A client's hook refuses a server (here by subject, as pinning would): the data the client
// wrote before the handshake is never sent, the server gets close_notify, and the client's
// error wraps the hook's.
func TestVerifyConnectionClientSide(t *testing.T) {
	for _, ver := range bothVersions {
		t.Run(ver.name, func(t *testing.T) {
			hook := &allowSubjects{names: []string{"pinned.example"}}
			ccfg := clientConfig()
			ccfg.MaxVersion, ccfg.VerifyConnection = ver.v, hook.verify
			c, s := newPair(t, ccfg, serverConfig("server"))
			if _, err := c.Write([]byte("secret request")); err != nil {
				t.Fatal(err)
			}
			cerr, serr := handshake(c, s)
			checkRefused(t, "client", cerr)
			if serr != nil && !errors.Is(serr, io.EOF) {
				t.Logf("server: %v", serr)
			}
			transfer(c, s, whole)
			if msg, _ := s.Read(); bytes.Contains(msg, []byte("secret")) {
				t.Errorf("the server read %q: the client sent data to a server its hook refused", msg)
			}
			if !s.PeerClosed() {
				t.Errorf("server: peer closed %v, error %v; want the client's close_notify", s.PeerClosed(), s.Err())
			}
			if _, err := c.Write([]byte("more")); !errors.Is(err, errNotAllowed) {
				t.Errorf("client Write after the refusal: %v", err)
			}
		})
	}
}

// The hook runs when nothing is verified too (as crypto/tls's does), once per handshake,
// resumed ones included, with the negotiated state; data written before the handshake goes
// once the hook has passed the peer.
func TestVerifyConnectionStates(t *testing.T) {
	var states []ConnectionState
	ccfg := &Config{InsecureSkipVerify: true, NextProtos: []string{"p1"},
		VerifyConnection: func(st ConnectionState) error { states = append(states, st); return nil }}
	scfg := serverConfig("server")
	scfg.NextProtos = []string{"p1"}
	cctx, sctx := mustContext(t, RoleClient, ccfg), mustContext(t, RoleServer, scfg)
	c, s, cerr, serr := connect(t, cctx, sctx)
	if cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	roundTrip(t, s, c, []byte("tickets"))
	session, err := c.Session()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := NewClientEngine(cctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c2.Close() })
	c2.SetSession(session)
	if _, err := c2.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	s2, _ := NewServerEngine(sctx)
	t.Cleanup(func() { s2.Close() })
	if cerr, serr := handshake(c2, s2); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	if msg, err := s2.Read(); err != nil || string(msg) != "early" {
		t.Errorf("data written before the handshake: %q, %v", msg, err)
	}
	if len(states) != 2 {
		t.Fatalf("the hook ran %d times for 2 handshakes", len(states))
	}
	first, second := states[0], states[1]
	if first.Verified || first.DidResume || first.Version != VersionTLS13 || first.NegotiatedProtocol != "p1" ||
		len(first.PeerCertificates) == 0 || first.PeerCertificates[0].Subject.CommonName != "localhost" || !first.HandshakeComplete {
		t.Errorf("first state %+v", first)
	}
	if !second.DidResume {
		t.Errorf("second state %+v, want a resumed session", second)
	}
}

// Go's crypto/tls, as a client a tlszmq server's hook refuses, sees the session end at once
// (close_notify: EOF), its request unanswered.
func TestVerifyConnectionWithGoTLS(t *testing.T) {
	hook := &allowSubjects{names: []string{"someone else"}}
	scfg := serverConfig("server")
	scfg.CAFile, scfg.ClientAuth, scfg.VerifyConnection = cert("ca.crt"), RequireAndVerifyClientCert, hook.verify
	l := listenEngines(t, mustContext(t, RoleServer, scfg))
	pair, err := tls.LoadX509KeyPair(cert("client.crt"), cert("client.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ver := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		_, err := goTLSExchange(l.ln.Addr().String(), &tls.Config{RootCAs: caPool(t), ServerName: "localhost",
			Certificates: []tls.Certificate{pair}, MinVersion: ver, MaxVersion: ver})
		if !errors.Is(err, io.EOF) {
			t.Errorf("crypto/tls %x: %v, want EOF (the server's close_notify)", ver, err)
		}
		checkRefused(t, "server engine", l.lastErr())
	}
}

// Over ZeroMQ: a Server whose hook refuses a client ends the session, logs the hook's reason
// and counts a failed handshake ("verify"); the Client's call fails. A Client whose hook
// refuses the server fails its call with the hook's error.
func TestVerifyConnectionZMQ(t *testing.T) {
	for _, ver := range bothVersions {
		t.Run(ver.name, func(t *testing.T) {
			var logs syncbuf.Buffer
			hook := &allowSubjects{names: []string{"tlszmq client-ec"}}
			scfg := serverConfig("server")
			scfg.CAFile, scfg.ClientAuth, scfg.VerifyConnection = cert("ca.crt"), RequireAndVerifyClientCert, hook.verify
			srv := startServer(t, scfg, "tcp://127.0.0.1:*", echo, &ServerOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			ccfg := clientConfig()
			ccfg.MaxVersion = ver.v
			ccfg.CertFile, ccfg.KeyFile = cert("client.crt"), cert("client.key")
			c := newClient(t, ccfg, srv.Endpoint(), &ClientOptions{Timeout: 5 * time.Second})
			if _, err := c.Request(ctxTimeout(t, 10*time.Second), []byte("hello")); err == nil {
				t.Fatal("a client the server's hook refuses got an answer")
			} else {
				t.Logf("refused client: %v", err)
			}
			waitfor.Cond(t, func() bool { return srv.Counters().FailedByCause["verify"] == 1 }, "the failed handshake counted")
			if !strings.Contains(logs.String(), "subject not allowed") || !strings.Contains(logs.String(), "handshake failed") {
				t.Errorf("the server's log lacks the hook's reason:\n%s", logs.String())
			}
			if srv.Stats().HandshakesDone != 0 {
				t.Errorf("HandshakesDone %d, want 0", srv.Stats().HandshakesDone)
			}

			// The allowed client is served.
			ccfg.CertFile, ccfg.KeyFile = cert("client-ec.crt"), cert("client-ec.key")
			good := newClient(t, ccfg, srv.Endpoint(), nil)
			if got, err := good.Request(ctxTimeout(t, 10*time.Second), []byte("hello")); err != nil || string(got[0]) != "hello" {
				t.Fatalf("allowed client: %q, %v", got, err)
			}

			// The client's own hook refuses the server.
			pinned := &allowSubjects{names: []string{"pinned.example"}}
			ccfg.VerifyConnection = pinned.verify
			c = newClient(t, ccfg, srv.Endpoint(), &ClientOptions{Timeout: 5 * time.Second})
			_, err := c.Request(ctxTimeout(t, 10*time.Second), []byte("hello"))
			var op *OpError
			if !errors.Is(err, errNotAllowed) || !errors.As(err, &op) {
				t.Errorf("client refusing the server: %v, want an OpError wrapping the hook's error", err)
			}
		})
	}
}
