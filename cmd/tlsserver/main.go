// Command tlsserver is a drop-in replacement for the C++ TLSZMQ server: with no flags it binds
// a ROUTER socket at tcp://*:5556, reads server.crt and server.key from the working directory,
// answers every "hello world!" with "Got it!" and prints what the C++ server prints:
//
//	Received: hello world!
//	sending data - [Got it!]
//
// Run `tlsserver -h` for the flags. SIGINT or SIGTERM sends close_notify to every live session
// and exits 0. Log lines go to stderr, each starting with "tlsserver: ".
//
// SIGHUP reloads the TLS configuration without a restart: the files the flags name (-cert,
// -key, -ca, -cadir, -crl, -crldir, -ticket-key) are read again, and new handshakes use them
// while live sessions go on. One log line says "reloaded", with the new certificate's subject
// and expiry, or "reload refused", with the reason: a file that does not load leaves the old
// configuration in place. The session ticket key is kept unless -ticket-key names one.
//
// -allow and -deny restrict the clients by IP address (ServerOptions.Allow and Deny): each
// takes addresses and CIDR prefixes, IPv4 or IPv6, comma-separated, and may be repeated. With
// -allow only the addresses listed connect; -deny refuses those listed, and wins over -allow.
// ZeroMQ refuses the connection before any message (its ZAP authentication, under the NULL
// mechanism); each refusal is logged (WARN, with the address and the list, at most one line a
// second) and counted in the metrics (tlszmq_connections_refused_total).
//
// -metrics 127.0.0.1:9464 serves the server's Prometheus metrics (package
// github.com/tlszmq/tlszmq/metrics, with the Go runtime's and the process's) over HTTP at
// http://127.0.0.1:9464/metrics, from before the first client is served until exit; port 0
// picks a free port, which a log line names.
//
// Exit status: 0 when stopped by SIGINT or SIGTERM; 2 for bad use (a bad flag or value, a
// malformed endpoint, a missing certificate or key); 3 when OpenSSL refuses the certificate,
// the key or the settings (a legacy certificate names the -seclevel that accepts it); 1 for
// any other failure.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cli"
	"github.com/tlszmq/tlszmq/internal/metricsrv"
)

func main() { cli.Main("tlsserver", run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := cli.NewFlagSet("tlsserver", "answers TLSZMQ clients over TLS 1.2/1.3 on ZeroMQ with a fixed reply, one session per client (drop-in for the C++ server)",
		cli.ExitStatus{Code: cli.ExitOK, Meaning: "stopped by SIGINT or SIGTERM (close_notify sent to every session)"},
		cli.ExitStatus{Code: cli.ExitTLS, Meaning: "TLS failure: OpenSSL refused the certificate, the key or the settings"})
	endpoint := fs.String("endpoint", "tcp://*:5556", "endpoint to bind (or to connect to, with -connect)")
	connect := fs.Bool("connect", false, "connect to the endpoint (a tlsdevice's backend, tcp://localhost:5555) instead of binding it")
	reply := fs.String("reply", "Got it!", "the reply to every request")
	nul := fs.Bool("nul", true, "end the reply with a NUL byte, as the C++ server does")
	quiet := fs.Bool("q", false, "print nothing per request")
	lf := cli.AddLogFlags(fs, false)
	verbose := fs.Bool("v", false, "print the DEBUG trace of bytes through the BIOs")
	maxSessions := fs.Int("max-sessions", 10000, "most established sessions kept; the least recently used goes first")
	hsTimeout := fs.Duration("handshake-timeout", 10*time.Second, "drop a session whose handshake has not finished by then")
	idleTimeout := fs.Duration("idle-timeout", 5*time.Minute, "drop a session quiet for this long")
	maxMsg := fs.Int("max-message", tlszmq.DefaultMaxMessageSize, "largest message accepted, in bytes")
	maxHalfOpen := fs.Int("max-half-open", 1000, "most sessions still in their handshake; the oldest goes first")
	maxParts := fs.Int("max-parts", 1024, "most parts of one multi-part message")
	maxPerFrame := fs.Int("max-messages-per-frame", 1024, "most messages one incoming frame may carry")
	maxEnvelope := fs.Int("max-envelope", 16, "most routing frames before the delimiter (devices and hops in between)")
	maxPending := fs.Int("max-pending-output", 4<<20, "most bytes of replies kept for a peer that does not read them")
	maxKeyUpdates := fs.Int("max-key-updates", tlszmq.DefaultMaxKeyUpdates, "most TLS 1.3 KeyUpdate messages in one incoming frame")
	maxRecords := fs.Int("max-records", tlszmq.DefaultMaxRecordsPerPump, "most TLS records in one incoming frame, beyond one per 16 KiB of it")
	var allow, deny cli.AddrList
	fs.Var(&allow, "allow", "admit only clients from these IP `addresses` or CIDR prefixes (comma-separated, repeatable;\n"+
		"e.g. 10.0.0.0/8,::1); the others are refused when they connect")
	fs.Var(&deny, "deny", "refuse clients from these IP `addresses` or CIDR prefixes (comma-separated, repeatable); wins over -allow")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics over HTTP at host:port, path /metrics (e.g. 127.0.0.1:9464; port 0: any free port)")
	tf := cli.AddTLSFlags(fs, tlszmq.RoleServer, "server.crt", "server.key")
	if err := cli.Parse(fs, args, stderr); err != nil {
		return err
	}
	if *maxSessions < 1 || *maxMsg < 1 || *hsTimeout <= 0 || *idleTimeout <= 0 || *maxHalfOpen < 1 ||
		*maxParts < 1 || *maxPerFrame < 1 || *maxEnvelope < 1 || *maxPending < 1 || *maxKeyUpdates < 1 || *maxRecords < 1 {
		return cli.Usagef("the -max-* limits and the timeouts must be positive")
	}
	if err := cli.CheckEndpoint("endpoint", *endpoint, !*connect); err != nil {
		return err
	}
	if err := metricsrv.CheckAddr(*metricsAddr); err != nil {
		return err
	}
	defer func() { err = tf.Explain(err) }()
	// config reads the files the flags name: at start-up, and again on SIGHUP, when the
	// warnings about the flags, said at start-up, are not repeated.
	config := func(warnings io.Writer) (*tlszmq.Config, error) {
		cfg, err := tf.Config("", warnings)
		if err != nil {
			return nil, err
		}
		if *verbose {
			cfg.Debug = stdout
		}
		cfg.MaxKeyUpdates, cfg.MaxRecordsPerPump = *maxKeyUpdates, *maxRecords
		return cfg, nil
	}
	cfg, err := config(stderr)
	if err != nil {
		return err
	}
	tctx, err := tlszmq.NewContext(tlszmq.RoleServer, cfg)
	if err != nil {
		return err
	}
	defer tctx.Close()

	var mu sync.Mutex // stdout is shared with the DEBUG trace
	answer := []byte(*reply)
	if *nul {
		answer = append(answer, 0)
	}
	handler := tlszmq.SinglePart(func(_ context.Context, _ *tlszmq.Peer, req []byte) ([]byte, error) {
		if !*quiet {
			mu.Lock()
			fmt.Fprintf(stdout, "Received: %s\n", cli.CString(req))
			fmt.Fprintf(stdout, "sending data - [%s]\n", *reply)
			mu.Unlock()
		}
		return answer, nil
	})
	if err := lf.Check(); err != nil {
		return err
	}
	log := lf.Logger(stderr, "tlsserver")
	var metricsLn net.Listener
	if *metricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", *metricsAddr); err != nil {
			return fmt.Errorf("-metrics %s: %w", *metricsAddr, err)
		}
		defer metricsLn.Close()
	}
	srv, err := tlszmq.NewServer(tctx, *endpoint, handler, &tlszmq.ServerOptions{
		Connect: *connect, MaxSessions: *maxSessions, HandshakeTimeout: *hsTimeout,
		IdleTimeout: *idleTimeout, MaxMessageSize: *maxMsg, MaxHalfOpen: *maxHalfOpen, MaxParts: *maxParts,
		MaxMessagesPerFrame: *maxPerFrame, MaxEnvelopeFrames: *maxEnvelope, MaxPendingOutput: *maxPending,
		Logger: log, Allow: allow, Deny: deny,
	})
	if err != nil {
		return err
	}
	what := "serving " + srv.Endpoint()
	if metricsLn != nil {
		defer metricsrv.Serve(metricsLn, srv, tctx, log)()
		what += ", metrics at http://" + metricsLn.Addr().String() + "/metrics"
	}
	// SIGHUP reloads from here on: before the start-up line, which says the server is up.
	defer cli.ReloadOnHangup(ctx, log, tctx, func() (*tlszmq.Config, error) { return config(io.Discard) })()
	cli.Startup(stderr, "tlsserver", what, cfg, tctx.Certificate())
	return srv.Serve(ctx)
}
