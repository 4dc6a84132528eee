package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cli"
)

// runDemo runs the original article's exchange over real ZeroMQ sockets on loopback: a ROUTER
// server and a REQ client in one process, the client sending "hello world!" and the server
// answering "Got it!", with the DEBUG trace of bytes through each side's BIOs.
func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo")
	certs := fs.String("certs", "testdata/certs", "folder with ca.crt, server.crt and server.key")
	endpoint := fs.String("endpoint", "tcp://127.0.0.1:*", "endpoint the server binds (* picks a free port)")
	maxVersion := fs.String("max", "1.3", "maximum TLS version: 1.2 or 1.3")
	quiet := fs.Bool("q", false, "leave out the DEBUG trace")
	if err := cli.Parse(fs, args, stderr); err != nil {
		return err
	}
	if err := cli.CheckEndpoint("endpoint", *endpoint, true); err != nil {
		return err
	}
	ca, crt, key := filepath.Join(*certs, "ca.crt"), filepath.Join(*certs, "server.crt"), filepath.Join(*certs, "server.key")
	if err := cli.NeedFiles(ca, crt, key); err != nil {
		return err
	}
	maxV := tlszmq.VersionTLS13
	switch *maxVersion {
	case "1.3":
	case "1.2":
		maxV = tlszmq.VersionTLS12
	default:
		return cli.Usagef("-max %q: want 1.2 or 1.3", *maxVersion)
	}
	out := &syncWriter{w: stdout}
	var ctrace, strace io.Writer
	if !*quiet {
		ctrace, strace = prefixed(out, "client "), prefixed(out, "server ")
	}
	sctx, err := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{CertFile: crt, KeyFile: key, Debug: strace})
	if err != nil {
		return err
	}
	defer sctx.Close()
	cctx, err := tlszmq.NewContext(tlszmq.RoleClient, &tlszmq.Config{CAFile: ca, ServerName: "localhost", MaxVersion: maxV, Debug: ctrace})
	if err != nil {
		return err
	}
	defer cctx.Close()

	srv, err := tlszmq.NewServer(sctx, *endpoint, tlszmq.SinglePart(func(_ context.Context, p *tlszmq.Peer, req []byte) ([]byte, error) {
		fmt.Fprintf(out, "server Received: %s\n", req)
		fmt.Fprintln(out, "server sending data - [Got it!]")
		return []byte("Got it!\x00"), nil
	}), &tlszmq.ServerOptions{Logger: slog.New(slog.NewTextHandler(cli.Prefixed(stderr, "tlszmq demo"), &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background()) }()
	fmt.Fprintf(out, "server listening on %s (ROUTER)\n", srv.Endpoint())

	c, err := tlszmq.NewClient(cctx, srv.Endpoint(), nil)
	if err != nil {
		srv.Close()
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Fprintf(out, "client connecting to %s (REQ)\n", srv.Endpoint())
	fmt.Fprintln(out, "client Sending - [hello world!]")
	reply, err := c.Request(ctx, []byte("hello world!"))
	if err != nil {
		c.Close()
		srv.Close()
		return err
	}
	fmt.Fprintf(out, "client Received - [%s]\n", cli.CString(reply[0]))
	st := c.ConnectionState()
	fmt.Fprintf(out, "client %s, %s, server certificate verified: %v\n", st.VersionName, st.CipherSuite, st.Verified)
	c.Close()
	srv.Close()
	if err := <-served; err != nil {
		return err
	}
	fmt.Fprintf(out, "server sessions: %d handshake(s), %d message(s) in, %d out\n",
		srv.Stats().HandshakesDone, srv.Stats().MessagesIn, srv.Stats().MessagesOut)
	return nil
}

// syncWriter serialises the writes of the client, the server and their traces.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// Write writes b to the underlying writer, one caller at a time.
func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// prefixed writes every line to w with a prefix.
func prefixed(w io.Writer, prefix string) io.Writer { return &prefixWriter{w: w, prefix: prefix} }

type prefixWriter struct {
	w      io.Writer
	prefix string
}

// Write writes b with the prefix in front.
func (p *prefixWriter) Write(b []byte) (int, error) {
	if _, err := fmt.Fprintf(p.w, "%s%s", p.prefix, b); err != nil {
		return 0, err
	}
	return len(b), nil
}
