package tlszmq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq/internal/syncbuf"
	"github.com/tlszmq/tlszmq/internal/waitfor"
)

// attacker is a peer with a real session, behind its own envelope frame on its own DEALER,
// that then abuses it.
type attacker struct {
	t      *testing.T
	hop    string
	sock   *zmq.Socket
	e      *Engine
	flight [][]byte // the frames it sent during its handshake
}

func newAttacker(t *testing.T, cctx *Context, endpoint, hop string) *attacker {
	sock, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	sock.SetLinger(0)
	sock.SetRcvtimeo(10 * time.Second)
	if err := sock.Connect(endpoint); err != nil {
		t.Fatal(err)
	}
	e, err := NewClientEngine(cctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	a := &attacker{t: t, hop: hop, sock: sock, e: e}
	e.Update()
	for {
		done := e.HandshakeComplete()
		out := e.GetData()
		if out == nil {
			break
		}
		a.flight = append(a.flight, out)
		if err := e.PutData(a.send(out)); err != nil {
			t.Fatalf("%s: handshake: %v", hop, err)
		}
		if done {
			break
		}
	}
	if !e.HandshakeComplete() {
		t.Fatalf("%s: no handshake", hop)
	}
	return a
}

// send sends one payload behind the attacker's envelope frame and returns the answer's.
func (a *attacker) send(payload []byte) []byte {
	if _, err := a.sock.SendMessage(a.hop, "", payload); err != nil {
		a.t.Fatal(err)
	}
	reply, err := a.sock.RecvMessageBytes(0)
	if err != nil {
		a.t.Fatalf("%s: no answer: %v", a.hop, err)
	}
	if len(reply) != 3 || string(reply[0]) != a.hop {
		a.t.Fatalf("%s: an answer for another envelope: %q", a.hop, reply)
	}
	return reply[2]
}

// record encrypts msg and returns its record, as it would go out.
func (a *attacker) record(msg string) []byte {
	if _, err := a.e.Write([]byte(msg)); err != nil {
		a.t.Fatal(err)
	}
	return a.e.GetData()
}

// alerted reports whether the answer is, once the attacker's engine decrypts it, the alert
// bad_record_mac.
func (a *attacker) alerted(answer []byte) bool {
	var alert *AlertError
	return errors.As(a.e.PutData(answer), &alert) && !alert.Sent && alert.Code == 20 // bad_record_mac
}

// encryptedAlertSize is the length of a TLS 1.3 record that carries an alert: two bytes, the
// inner content type and the AES-GCM tag.
const encryptedAlertSize = 2 + 1 + 16

// Attacks on established sessions and on replayed handshakes, while well-behaved clients
// exchange messages: each attacked session gets an alert where TLS has one, is removed with
// one log line naming the peer and the reason, and nobody else notices.
func TestHostileSessionsWhileClientsWork(t *testing.T) {
	var logs syncbuf.Buffer
	srv := startServer(t, serverConfig("server-ec"), "tcp://127.0.0.1:*", identityEcho, &ServerOptions{IdleTimeout: 2 * time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	cctx := mustContext(t, RoleClient, &Config{InsecureSkipVerify: true})

	good := startGoodClients(t, cctx, srv.Endpoint(), 3)

	attacks := map[string]func(a *attacker) []byte{
		"random bytes after the handshake": func(a *attacker) []byte {
			return a.send(bytes.Repeat([]byte{0x17, 0x03, 0x03, 0x00, 0x20, 0xde, 0xad}, 8))
		},
		"a bad MAC": func(a *attacker) []byte {
			rec := a.record("tampered")
			rec[len(rec)-1] ^= 1
			return a.send(rec)
		},
		"a duplicated record": func(a *attacker) []byte {
			rec := a.record("once")
			if err := a.e.PutData(a.send(rec)); err != nil {
				a.t.Fatalf("%s: the first copy was refused: %v", a.hop, err)
			}
			return a.send(rec)
		},
		"reordered records": func(a *attacker) []byte {
			first, second := a.record("first"), a.record("second")
			_ = first // never sent: the second record arrives where the first was due
			return a.send(second)
		},
	}
	for name, attack := range attacks {
		a := newAttacker(t, cctx, srv.Endpoint(), name)
		if got := attack(a); !a.alerted(got) {
			t.Errorf("%s: answered %x, not an alert", name, got[:min(len(got), 8)])
		}
	}
	// The flights of a session, replayed as a new session under another name: the server
	// answers the old ClientHello, then refuses the old Finished with an alert, encrypted
	// under handshake keys the replayer does not have.
	a := newAttacker(t, cctx, srv.Endpoint(), "a replayed handshake flight")
	replay := &attacker{t: t, hop: "a replayed handshake flight (replay)", sock: a.sock}
	replay.send(a.flight[0])
	if got := replay.send(a.flight[len(a.flight)-1]); len(got) != 5+encryptedAlertSize || got[0] != 23 {
		t.Errorf("replayed flight: answered %x, not one encrypted alert", got[:min(len(got), 8)])
	}
	// Half a record, then silence: the session is removed once it has been idle too long.
	quiet := newAttacker(t, cctx, srv.Endpoint(), "a truncated record, then silence")
	rec := quiet.record("never finished")
	quiet.send(rec[:len(rec)/2])

	waitfor.Within(t, 20*time.Second, func() bool {
		return removedLine(logs.String(), "a truncated record, then silence")
	}, "the silent session's removal")
	if exchanged := good.stop(); exchanged < 20 {
		t.Errorf("only %d good exchanges during the attacks", exchanged)
	}
	// One removal line per attacked session, naming it and the reason.
	log := logs.String()
	for _, peer := range []string{"random bytes after the handshake", "a bad MAC", "a duplicated record", "reordered records",
		"a replayed handshake flight (replay)", "a truncated record, then silence"} {
		var lines []string
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, fmt.Sprintf("peer=%q", peer)) && strings.Contains(line, "session removed") {
				lines = append(lines, line)
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], "reason=") {
			t.Errorf("%s: log lines %q", peer, lines)
			continue
		}
		t.Logf("%s", lines[0])
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "good-") && strings.Contains(line, "session removed") && !strings.Contains(line, `reason="close_notify received"`) {
			t.Errorf("a well-behaved client was disturbed: %s", line)
		}
	}
}

// A frame above the configured maximum message size is refused by ZeroMQ itself
// (ZMQ_MAXMSGSIZE) before any of it is kept: the sender's connection is dropped, and clients
// on other connections, and the server, go on.
func TestOversizedFrameIsRefusedByZeroMQ(t *testing.T) {
	srv := startServer(t, serverConfig("server-ec"), "tcp://127.0.0.1:*", echo, &ServerOptions{MaxMessageSize: 1 << 20})
	c := newClient(t, clientConfig(), srv.Endpoint(), nil)
	if _, err := c.Request(ctxTimeout(t, 10*time.Second), []byte("before")); err != nil {
		t.Fatal(err)
	}
	raw, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetLinger(0)
	raw.Connect(srv.Endpoint())
	before := cHeapInUse()
	if _, err := raw.SendMessage("", make([]byte, 64<<20)); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		got, err := c.Request(ctxTimeout(t, 10*time.Second), []byte(fmt.Sprint("during ", i)))
		if err != nil || string(got[0]) != fmt.Sprint("during ", i) {
			t.Fatalf("%q %v", got, err)
		}
	}
	if st := srv.Stats(); st.Sessions != 1 || st.BytesIn > 1<<20 {
		t.Fatalf("the 64 MiB frame reached the server: %+v", st)
	}
	if grown := cHeapInUse() - before; grown > 8<<20 {
		t.Fatalf("the C heap grew by %d MiB", grown>>20)
	}
}

// Clients killed mid-handshake and mid-transfer leave nothing behind: the handshake and idle
// timeouts free their sessions, each with a log line saying why.
func TestKilledClientsSessionsAreFreed(t *testing.T) {
	var logs syncbuf.Buffer
	srv := startServer(t, serverConfig("server-ec"), "tcp://127.0.0.1:*", echo, &ServerOptions{
		HandshakeTimeout: 500 * time.Millisecond, IdleTimeout: time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	cctx := mustContext(t, RoleClient, &Config{InsecureSkipVerify: true})

	// Mid-handshake: a ClientHello, then the process is gone.
	raw, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetLinger(0)
	raw.SetRcvtimeo(10 * time.Second)
	raw.Connect(srv.Endpoint())
	if _, err := raw.SendMessage("killed mid-handshake", "", clientHello(t)); err != nil {
		t.Fatal(err)
	}
	// The server's answer is in before the client dies: its timeout, not a failed reply, must
	// end the session.
	if _, err := raw.RecvMessageBytes(0); err != nil {
		t.Fatal(err)
	}
	// Mid-transfer: an established session, half a message (answered, with nothing), then gone.
	a := newAttacker(t, cctx, srv.Endpoint(), "killed mid-transfer")
	rec := a.record("a message that never ends")
	a.send(rec[:len(rec)/2])
	if n := srv.Stats().Sessions; n != 2 {
		t.Fatalf("%d sessions, want 2", n)
	}
	raw.Close()
	a.sock.Close()

	waitfor.Within(t, 10*time.Second, func() bool { return srv.Stats().Sessions == 0 }, "the timeouts to free both sessions")
	log := logs.String()
	for _, want := range []string{`peer="killed mid-handshake" reason="handshake not finished within 500ms"`,
		`peer="killed mid-transfer" reason="idle for 1s"`} {
		if !strings.Contains(log, want) {
			t.Errorf("no log line with %s:\n%s", want, log)
		}
	}
}

// A reply that cannot be sent (here: its peer vanished while the handler ran) ends the
// session with a log line, instead of leaving a TLS stream with a piece missing.
func TestUnsendableReplyEndsSession(t *testing.T) {
	var logs syncbuf.Buffer
	entered, release := make(chan struct{}), make(chan struct{})
	srv := startServer(t, serverConfig("server-ec"), "tcp://127.0.0.1:*", func(_ context.Context, _ *Peer, req [][]byte) ([][]byte, error) {
		if string(req[0]) == "block" {
			close(entered)
			<-release
		}
		return req, nil
	}, &ServerOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	a := newAttacker(t, mustContext(t, RoleClient, &Config{InsecureSkipVerify: true}), srv.Endpoint(), "vanishing")
	if _, err := a.sock.SendMessage(a.hop, "", a.record("block")); err != nil {
		t.Fatal(err)
	}
	<-entered
	a.sock.Close()
	time.Sleep(300 * time.Millisecond) // for the server's ROUTER to see the connection go
	close(release)
	waitfor.Cond(t, func() bool { return srv.Stats().Sessions == 0 }, "the session to be removed")
	if want := `peer=vanishing reason="the reply could not be sent: `; !strings.Contains(logs.String(), want) {
		t.Fatalf("no log line with %s:\n%s", want, logs.String())
	}
}

// Clients a server must refuse (a certificate from another CA, an expired one, none when one
// is required) and a server certificate for another host name, each while well-behaved clients
// work: every refused peer gets a TLS alert, the server one log line naming the peer and the
// reason, and nobody else notices.
func TestRefusedPeersWhileClientsWork(t *testing.T) {
	var logs syncbuf.Buffer
	scfg := serverConfig("server")
	scfg.CAFile, scfg.ClientAuth = cert("ca.crt"), RequireAndVerifyClientCert
	srv := startServer(t, scfg, "tcp://127.0.0.1:*", identityEcho, &ServerOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	good := clientConfig()
	good.CertFile, good.KeyFile = cert("client.crt"), cert("client.key")
	workers := startGoodClients(t, mustContext(t, RoleClient, good), srv.Endpoint(), 3)

	refused := map[string]struct {
		cfg          func(*Config)
		serverReason string // in the server's log line
	}{
		"another CA's client":   {func(c *Config) { c.CertFile, c.KeyFile = cert("other-client.crt"), cert("other-client.key") }, "certificate verify failed"},
		"an expired client":     {func(c *Config) { c.CertFile, c.KeyFile = cert("expired-client.crt"), cert("expired-client.key") }, "certificate verify failed"},
		"no client certificate": {func(c *Config) {}, "peer did not return a certificate"},
		"the wrong host name": {func(c *Config) {
			c.CertFile, c.KeyFile, c.ServerName = cert("client.crt"), cert("client.key"), "not-this-host.example"
		}, "alert received"},
	}
	for name, r := range refused {
		cfg := clientConfig()
		r.cfg(cfg)
		c := newClient(t, cfg, srv.Endpoint(), &ClientOptions{Identity: name, Timeout: 5 * time.Second})
		_, err := c.Request(ctxTimeout(t, 10*time.Second), []byte("let me in"))
		var alert *AlertError
		var verify *CertificateVerificationError
		if err == nil || !(errors.As(err, &alert) || errors.As(err, &verify)) {
			t.Errorf("%s: %v, want an alert or a verification error", name, err)
		}
		c.Close()
	}
	waitfor.Cond(t, func() bool {
		for name := range refused {
			if !removedLine(logs.String(), name) {
				return false
			}
		}
		return true
	}, "a log line for every refused peer")
	if exchanged := workers.stop(); exchanged < 10 {
		t.Errorf("only %d good exchanges", exchanged)
	}
	for name, r := range refused {
		var lines []string
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, fmt.Sprintf("peer=%q", name)) && strings.Contains(line, "session removed") {
				lines = append(lines, line)
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], r.serverReason) {
			t.Errorf("%s: log lines %q, want one with %q", name, lines, r.serverReason)
			continue
		}
		t.Logf("%s", lines[0])
	}
}

// removedLine reports whether log has the "session removed" line of the named peer.
func removedLine(log, name string) bool {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "session removed") && strings.Contains(line, fmt.Sprintf("peer=%q", name)) {
			return true
		}
	}
	return false
}
