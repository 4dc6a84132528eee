package tlszmq

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// withProtos returns cfg with NextProtos set.
func withProtos(cfg *Config, protos ...string) *Config {
	cfg.NextProtos = protos
	return cfg
}

// alpnCases are the rule of Config.NextProtos, crypto/tls's: the server's preference; a
// client that offers nothing gets nothing; a server without protocols selects none; a client
// that offers protocols, none of them the server's, is refused.
var alpnCases = []struct {
	name           string
	client, server []string
	want           string // the protocol agreed on
	refused        bool   // the server refuses the client: no_application_protocol
}{
	{name: "server preference", client: []string{"h2", "x"}, server: []string{"x", "h2"}, want: "x"},
	{name: "server preference reversed", client: []string{"x", "h2"}, server: []string{"h2", "x"}, want: "h2"},
	{name: "one in common", client: []string{"a", "h2", "b"}, server: []string{"c", "h2"}, want: "h2"},
	{name: "no overlap", client: []string{"a", "b"}, server: []string{"x", "h2"}, refused: true},
	{name: "client offers nothing", server: []string{"x", "h2"}},
	{name: "server accepts nothing", client: []string{"h2", "x"}},
	{name: "a long name", client: []string{strings.Repeat("n", 255)}, server: []string{"x", strings.Repeat("n", 255)},
		want: strings.Repeat("n", 255)},
}

// Two engines agree on ALPN by the rule of Config.NextProtos, over both TLS versions.
func TestNextProtosEngines(t *testing.T) {
	for _, v := range []uint16{VersionTLS12, VersionTLS13} {
		for _, tc := range alpnCases {
			t.Run(VersionName(v)+"/"+tc.name, func(t *testing.T) {
				ccfg := withProtos(clientConfig(), tc.client...)
				ccfg.MaxVersion = v
				c, s := newPair(t, ccfg, withProtos(serverConfig("server-ec"), tc.server...))
				cerr, serr := handshake(c, s)
				if tc.refused {
					checkNoApplicationProtocol(t, cerr, serr)
					return
				}
				if cerr != nil || serr != nil {
					t.Fatal(cerr, serr)
				}
				if got := c.ConnectionState().NegotiatedProtocol; got != tc.want {
					t.Errorf("client: NegotiatedProtocol %q, want %q", got, tc.want)
				}
				if got := s.ConnectionState().NegotiatedProtocol; got != tc.want {
					t.Errorf("server: NegotiatedProtocol %q, want %q", got, tc.want)
				}
				if got := roundTrip(t, c, s, []byte("ping")); string(got) != "ping" {
					t.Errorf("round trip: %q", got)
				}
			})
		}
	}
}

// checkNoApplicationProtocol checks a handshake that the server refused for want of a common
// ALPN protocol: the server sent no_application_protocol, the client received it.
func checkNoApplicationProtocol(t *testing.T, cerr, serr error) {
	t.Helper()
	var sa, ca *AlertError
	if !errors.As(serr, &sa) || !sa.Sent || sa.Code != 120 {
		t.Errorf("server: %v, want the no_application_protocol alert sent", serr)
	}
	if !strings.Contains(strings.ToLower(errString(serr)), "no application protocol") {
		t.Errorf("server error %q does not say why", serr)
	}
	if !errors.As(cerr, &ca) || ca.Sent || ca.Code != 120 {
		t.Errorf("client: %v, want the no_application_protocol alert received", cerr)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// The ZeroMQ layer's engines put the framed protocol before the Context's NextProtos: a
// server selects it first, and without it a client is refused only for the Context's
// protocols, never for the framed one alone.
func TestNextProtosEngineOwnFirst(t *testing.T) {
	cases := []struct {
		name           string
		client, server []string // the Contexts' NextProtos
		clientFramed   bool     // the client engine offers the framed protocol first
		want           string
		refused        bool
	}{
		{name: "framed first", client: []string{"x"}, server: []string{"x"}, clientFramed: true, want: ProtocolFramed},
		{name: "framed last offered, first selected", client: []string{"x", ProtocolFramed}, server: []string{"x"}, want: ProtocolFramed},
		{name: "a client without framed", client: []string{"x"}, server: []string{"h2", "x"}, want: "x"},
		{name: "the C++ peers", server: []string{"x"}},
		{name: "other protocols, server without NextProtos", client: []string{"h2"}},
		{name: "other protocols, server with NextProtos", client: []string{"h2"}, server: []string{"x"}, refused: true},
		{name: "framed client, server without NextProtos", client: []string{"x"}, clientFramed: true, want: ProtocolFramed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cctx := mustContext(t, RoleClient, withProtos(clientConfig(), tc.client...))
			sctx := mustContext(t, RoleServer, withProtos(serverConfig("server-ec"), tc.server...))
			var own []string
			if tc.clientFramed {
				own = framedProtos
			}
			c, err := NewEngine(cctx, EngineOptions{ServerName: "localhost", NextProtos: own})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := NewEngine(sctx, EngineOptions{NextProtos: framedProtos})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			cerr, serr := handshake(c, s)
			if tc.refused {
				checkNoApplicationProtocol(t, cerr, serr)
				return
			}
			if cerr != nil || serr != nil {
				t.Fatal(cerr, serr)
			}
			if cp, sp := c.ConnectionState().NegotiatedProtocol, s.ConnectionState().NegotiatedProtocol; cp != tc.want || sp != tc.want {
				t.Errorf("NegotiatedProtocol: client %q, server %q, want %q", cp, sp, tc.want)
			}
		})
	}
}

// Config.check refuses the lists that ALPN cannot carry, and Clone copies the list.
func TestNextProtosCheck(t *testing.T) {
	for _, tc := range []struct {
		name   string
		protos []string
		ok     bool
	}{
		{"none", nil, true},
		{"some", []string{"h2", "x"}, true},
		{"255 bytes", []string{strings.Repeat("a", 255)}, true},
		{"empty name", []string{"h2", ""}, false},
		{"256 bytes", []string{strings.Repeat("a", 256)}, false},
		{"65,535 bytes in all", fill(65535), true},
		{"65,536 bytes in all", fill(65536), false},
	} {
		for _, role := range []Role{RoleClient, RoleServer} {
			cfg := withProtos(clientConfig(), tc.protos...)
			if role == RoleServer {
				cfg = withProtos(serverConfig("server-ec"), tc.protos...)
			}
			ctx, err := NewContext(role, cfg)
			if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("%s, %v: %v", tc.name, role, err)
			}
			if err == nil {
				ctx.Close()
			}
		}
	}
	cfg := withProtos(clientConfig(), "h2", "x")
	clone := cfg.Clone()
	cfg.NextProtos[0] = "changed"
	if clone.NextProtos[0] != "h2" {
		t.Error("Clone shares NextProtos")
	}
}

// fill returns names of 255 bytes, and one shorter, that take n bytes in ALPN's encoding.
func fill(n int) []string {
	var protos []string
	for ; n > 256; n -= 256 {
		protos = append(protos, strings.Repeat("p", 255))
	}
	return append(protos, strings.Repeat("q", n-1))
}

// A crypto/tls client with NextProtos and a tlszmq server engine agree as two crypto/tls peers
// would; and a tlszmq client engine with a crypto/tls server.
func TestNextProtosGoTLS(t *testing.T) {
	caPEM, err := os.ReadFile(cert("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	for _, tc := range alpnCases {
		t.Run("crypto/tls client/"+tc.name, func(t *testing.T) {
			s, err := NewServerEngine(mustContext(t, RoleServer, withProtos(serverConfig("server-ec"), tc.server...)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			conn, result := engineOverPipe(t, s)
			tc2 := tls.Client(conn, &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: tc.client})
			tc2.SetDeadline(time.Now().Add(10 * time.Second))
			herr := tc2.Handshake()
			res := <-result
			if tc.refused {
				if herr == nil || !strings.Contains(herr.Error(), "no application protocol") {
					t.Errorf("crypto/tls: %v, want the no_application_protocol alert", herr)
				}
				var a *AlertError
				if !errors.As(res.err, &a) || !a.Sent || a.Code != 120 {
					t.Errorf("engine: %v, want the no_application_protocol alert sent", res.err)
				}
				return
			}
			if herr != nil || res.err != nil {
				t.Fatal(herr, res.err)
			}
			if got := tc2.ConnectionState().NegotiatedProtocol; got != tc.want {
				t.Errorf("crypto/tls: NegotiatedProtocol %q, want %q", got, tc.want)
			}
			if res.proto != tc.want {
				t.Errorf("engine: NegotiatedProtocol %q, want %q", res.proto, tc.want)
			}
			echoOnce(t, tc2)
		})
	}
	pair, err := tls.LoadX509KeyPair(cert("server-ec.crt"), cert("server-ec.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range alpnCases {
		t.Run("crypto/tls server/"+tc.name, func(t *testing.T) {
			c, err := NewClientEngine(mustContext(t, RoleClient, withProtos(clientConfig(), tc.client...)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			conn, result := engineOverPipe(t, c)
			ts := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: tc.server})
			ts.SetDeadline(time.Now().Add(10 * time.Second))
			herr := ts.Handshake()
			res := <-result
			if tc.refused {
				var a *AlertError
				if herr == nil || !errors.As(res.err, &a) || a.Sent || a.Code != 120 {
					t.Errorf("crypto/tls: %v; engine: %v, want the no_application_protocol alert received", herr, res.err)
				}
				return
			}
			if herr != nil || res.err != nil {
				t.Fatal(herr, res.err)
			}
			if got := ts.ConnectionState().NegotiatedProtocol; got != tc.want {
				t.Errorf("crypto/tls: NegotiatedProtocol %q, want %q", got, tc.want)
			}
			if res.proto != tc.want {
				t.Errorf("engine: NegotiatedProtocol %q, want %q", res.proto, tc.want)
			}
			echoOnce(t, ts)
		})
	}
}

// echoOnce sends a message through conn to the engine behind it and reads it back.
func echoOnce(t *testing.T, conn *tls.Conn) {
	t.Helper()
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q %v", buf, err)
	}
}

// engineResult is what engineOverPipe reports once: the protocol agreed on when the handshake
// completes, or the engine's error.
type engineResult struct {
	proto string
	err   error
}

// engineOverPipe runs e behind one end of a net.Pipe and returns the other end, for crypto/tls.
// Each read from the pipe goes to PutData as one frame, and the engine echoes the application
// data it reads. What the engine has for the network is written back by a goroutine of its
// own: net.Pipe has no buffer, and crypto/tls writes while the engine writes (TLS 1.3's
// session tickets). A client engine sends its ClientHello first.
func engineOverPipe(t *testing.T, e *Engine) (net.Conn, <-chan engineResult) {
	a, b := net.Pipe()
	result := make(chan engineResult, 1)
	out := make(chan []byte, 64)
	done := make(chan struct{}, 2)
	go func() { // the writer
		defer func() { done <- struct{}{} }()
		failed := false
		for p := range out {
			if !failed {
				_, err := b.Write(p)
				failed = err != nil
			}
		}
		b.Close()
	}()
	go func() { // the engine's owner
		defer func() { done <- struct{}{} }()
		defer close(out)
		reported := false
		report := func(err error) {
			if !reported && (err != nil || e.HandshakeComplete()) {
				reported = true
				result <- engineResult{e.ConnectionState().NegotiatedProtocol, err}
			}
		}
		if e.Role() == RoleClient {
			e.Update()
			out <- e.GetData()
		}
		buf := make([]byte, 64<<10)
		for {
			n, err := b.Read(buf)
			if err != nil {
				report(err)
				return
			}
			err = e.PutData(buf[:n])
			if msg, rerr := e.Read(); err == nil && rerr == nil {
				_, err = e.Write(msg)
			}
			if p := e.GetData(); p != nil {
				out <- p // an alert too
			}
			report(err)
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		a.Close()
		<-done
		<-done
	})
	return a, result
}
