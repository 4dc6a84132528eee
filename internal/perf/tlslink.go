package perf

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/tlszmq/tlszmq"
)

// tlsLink is a tlszmq Client and Server: an echo Handler (round trips) or one that
// acknowledges every chunk messages (streaming, from a DEALER client that gathers messages
// with Queue and sends them with Flush when it runs out of credit).
type tlsLink struct {
	pattern string
	srv     *tlszmq.Server
	cli     *tlszmq.Client
	stop    func() error // stops the server
}

// Keys is what a TLS measurement runs with: contexts for both sides, made once, and what a
// client process needs to make the client's again.
type Keys struct {
	Server, Client *tlszmq.Context
	// CAPEM is the CA certificate the client checks the server's against; Suite is what the
	// client offers (a TLS 1.3 suite, or TLS12AES).
	CAPEM []byte
	Suite string
}

// NewKeys makes the contexts of a TLS transport from a fixture (see NewFixture): the server
// with the fixture's key of the given type, the client verifying it against the fixture's CA
// and the host name "localhost".
func NewKeys(f *Fixture, suite string, ecdsa bool) (*Keys, error) {
	crt, key := f.RSACert, f.RSAKey
	if ecdsa {
		crt, key = f.ECCert, f.ECKey
	}
	s, err := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{CertPEM: crt, KeyPEM: key})
	if err != nil {
		return nil, err
	}
	c, err := tlszmq.NewContext(tlszmq.RoleClient, clientConfig(f.CACert, suite))
	if err != nil {
		s.Close()
		return nil, err
	}
	return &Keys{Server: s, Client: c, CAPEM: f.CACert, Suite: suite}, nil
}

// clientConfig is the configuration of a client that offers suite and checks the server's
// certificate against the CA certificate caPEM, for the host name "localhost".
func clientConfig(caPEM []byte, suite string) *tlszmq.Config {
	cfg := &tlszmq.Config{CAPEM: caPEM, ServerName: "localhost"}
	switch {
	case suite == TLS12AES:
		cfg.MaxVersion, cfg.CipherList = tlszmq.VersionTLS12, suite
	case strings.HasPrefix(suite, "TLS_"):
		cfg.CipherSuites = suite
	}
	return cfg
}

// Close frees the contexts.
func (k *Keys) Close() {
	k.Server.Close()
	k.Client.Close()
}

// quietLog drops the servers' per-session lines, which would otherwise fill the output.
var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// newTLSLink starts a server with the given workers and a client connected to it.
func newTLSLink(keys *Keys, pattern string, size, workers int) (*tlsLink, error) {
	_, chunk := credit(size)
	ack := [][]byte{{1}}
	var handler tlszmq.Handler = func(_ context.Context, _ *tlszmq.Peer, req [][]byte) ([][]byte, error) {
		return req, nil
	}
	if pattern == Stream {
		got := 0 // one client per server, so one session, which stays on one worker
		handler = func(context.Context, *tlszmq.Peer, [][]byte) ([][]byte, error) {
			if got++; got%chunk == 0 {
				return ack, nil
			}
			return nil, nil
		}
	}
	srv, err := tlszmq.NewServer(keys.Server, "tcp://127.0.0.1:*", handler,
		&tlszmq.ServerOptions{Logger: quietLog, Workers: workers})
	if err != nil {
		return nil, err
	}
	l := &tlsLink{pattern: pattern, srv: srv, stop: serve(srv)}
	opts := &tlszmq.ClientOptions{}
	if pattern == Stream {
		opts.Pattern = tlszmq.DEALER
	}
	if l.cli, err = tlszmq.NewClient(keys.Client, srv.Endpoint(), opts); err == nil {
		err = l.cli.Handshake(context.Background())
	}
	if err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

func (l *tlsLink) run(msg []byte, n int) error {
	ctx := context.Background()
	if l.pattern == Roundtrip {
		for range n {
			reply, err := l.cli.Request(ctx, msg)
			if err != nil {
				return err
			}
			if len(reply) != 1 || len(reply[0]) != len(msg) {
				return fmt.Errorf("perf: a wrong reply to a request of %d bytes", len(msg))
			}
		}
		return nil
	}
	return stream(len(msg), n, func() error { return l.cli.Queue(ctx, msg) }, func() error {
		if err := l.cli.Flush(); err != nil { // what is gathered goes before waiting for credit
			return err
		}
		_, err := l.cli.Recv(ctx)
		return err
	})
}

func (l *tlsLink) close() error {
	var err error
	if l.cli != nil {
		err = l.cli.Close()
	}
	if serr := l.stop(); err == nil {
		err = serr
	}
	return err
}
