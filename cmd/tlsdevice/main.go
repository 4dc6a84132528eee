// Command tlsdevice is a drop-in replacement for the C++ TLSZMQ device: with no flags it binds
// a ROUTER at tcp://*:5556 for clients and a DEALER at tcp://*:5555 for servers, which connect
// to it, and forwards the TLS bytes both ways untouched (encryption stays client to server).
//
// Modes (-mode):
//
//	pass       the C++ device; with -pin the backend is a ROUTER and each client stays with
//	           the server it first reached (servers must announce themselves when they connect,
//	           as tlsserver -connect does)
//	terminate  the device is the TLS server for its clients and hands the plaintext to
//	           backend workers, each client pinned to one, with the client's identity and
//	           verified certificate subject (see internal/device for the worker messages); the
//	           backend binds tcp://127.0.0.1:5555 by default, since whoever connects to it reads
//	           plaintext
//	originate  the other way round: plaintext clients reach the device, which carries each
//	           one's messages over TLS to the server at -upstream; the plaintext frontend binds
//	           tcp://127.0.0.1:5556 by default, since whoever connects to it speaks with the
//	           device's client certificate
//
// Limits (every one a flag; a client past one loses its own request, pin or session, and the
// device logs one line naming the limit):
//
//	-max-clients             100000  clients pinned (pass -pin, terminate; terminate: also TLS
//	                                 sessions); the least recently used loses its pin
//	-max-clients-per-conn    1000    clients pinned through one frontend connection; past it
//	                                 that connection's least recently used loses its pin
//	-max-backends            256     servers or workers known; more announcements are ignored
//	-max-envelope            16      envelope frames honoured (each at most 255 bytes); a
//	                                 message with more is dropped
//	-max-pending             100000  terminate: requests waiting for workers, all clients
//	-max-pending-per-client  64      terminate: requests one client may have waiting for a
//	                                 worker; originate: queued for its upstream session; past
//	                                 it the client's requests are refused (no reply)
//	-timeout                 10s     terminate: a worker's time to reply, then the client gets
//	                                 an empty answer; originate: the upstream handshake and
//	                                 each reply
//	-max-sessions            500     originate: upstream sessions (a goroutine and a socket
//	                                 each); a new client replaces the least recently used idle
//	                                 one, or is refused while all are busy
//	-idle                    5m      originate: an upstream session unused this long is closed
//
// -allow and -deny restrict the clients by IP address, in every mode, on the side that accepts
// them: the frontend (pass: the ROUTER of the TLS clients; terminate: the TLS server, as
// tlszmq.ServerOptions.Allow and Deny; originate: the ROUTER of the plaintext clients, which
// binds loopback by default, where the lists narrow down who speaks with the device's client
// certificate). The backend takes no list. Each flag takes addresses and CIDR prefixes, IPv4
// or IPv6, comma-separated, and may be repeated. With -allow only the addresses listed
// connect; -deny refuses those listed, and wins over -allow. ZeroMQ refuses the connection
// before any message (its ZAP authentication); each refusal is logged (WARN "tlszmq:
// connection refused", with the address and the list, at most one line a second) and, in
// terminate mode, counted (tlszmq_connections_refused_total, with -metrics).
//
// -metrics 127.0.0.1:9464 (terminate mode) serves the Prometheus metrics of the device's TLS
// server (package github.com/tlszmq/tlszmq/metrics, with the Go runtime's and the process's)
// over HTTP at http://127.0.0.1:9464/metrics, from before the first client is served until
// exit; port 0 picks a free port, which the start-up line names. The other modes have no TLS
// server (pass forwards the TLS bytes untouched, originate is a TLS client) and refuse it.
//
// Like the C++ device it prints nothing on stdout: its start-up line, its log lines and the -v
// trace go to stderr, each line starting with "tlsdevice: ". SIGINT or SIGTERM stops the
// device (in terminate mode after close_notify to every client) with exit status 0.
//
// In terminate mode SIGHUP reloads the TLS configuration without a restart: the files the
// flags name (-cert, -key, -ca, -cadir, -crl, -crldir, -ticket-key) are read again, and new
// handshakes use them while live sessions go on; one log line says "reloaded", with the new
// certificate's subject and expiry, or "reload refused", with the reason, the old
// configuration staying. The other modes take SIGHUP as they always did: it stops them.
//
// Exit status: 0 when stopped by SIGINT or SIGTERM; 2 for bad use (a bad flag or value, a
// malformed endpoint, a missing certificate or key); 3 when OpenSSL refuses the certificate,
// the key or the settings (terminate and originate modes); 1 for any other failure, such as
// an endpoint that cannot be bound.
package main

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cli"
	"github.com/tlszmq/tlszmq/internal/device"
	"github.com/tlszmq/tlszmq/internal/metricsrv"
	"github.com/tlszmq/tlszmq/internal/zmqendpoint"
)

func main() { cli.Main("tlsdevice", run) }

func run(ctx context.Context, args []string, _, stderr io.Writer) (err error) { // nothing on stdout
	fs := cli.NewFlagSet("tlsdevice", "forwards TLSZMQ traffic between clients and servers on ZeroMQ: the TLS bytes untouched (drop-in for the C++ device), "+
		"or as the TLS end for plaintext workers (-mode terminate) or for plaintext clients (-mode originate)",
		cli.ExitStatus{Code: cli.ExitOK, Meaning: "stopped by SIGINT or SIGTERM"},
		cli.ExitStatus{Code: cli.ExitTLS, Meaning: "TLS failure (terminate, originate): OpenSSL refused the certificate, the key or the settings"})
	mode := fs.String("mode", "pass", "pass (the C++ device), terminate or originate")
	frontend := fs.String("frontend", "", "endpoint the clients connect to (default tcp://*:5556; in originate mode tcp://127.0.0.1:5556:\n"+
		"whoever reaches it speaks to -upstream with the device's client certificate)")
	backend := fs.String("backend", "", "endpoint the servers (pass) or workers (terminate) connect to (default tcp://*:5555 in pass mode,\n"+
		"tcp://127.0.0.1:5555 in terminate mode: whoever connects to it becomes a worker and reads the plaintext of the clients pinned to it)")
	upstream := fs.String("upstream", "tcp://localhost:5557", "originate: the TLS server to carry the clients' messages to")
	pin := fs.Bool("pin", false, "pass: keep each client with one server (servers must announce themselves)")
	maxClients := fs.Int("max-clients", device.DefaultMaxClients, "pass -pin, terminate: most clients pinned (terminate: and TLS sessions kept); the least recently used goes first")
	perConn := fs.Int("max-clients-per-conn", device.DefaultMaxClientsPerConn, "pass -pin, terminate: most clients pinned through one frontend connection (a hop carries many);\n"+
		"past it that connection's least recently used client loses its pin, no other connection's")
	maxBackends := fs.Int("max-backends", device.DefaultMaxBackends, "pass -pin, terminate: most servers or workers known; an announcement past it is ignored, with a log line")
	maxEnvelope := fs.Int("max-envelope", device.DefaultMaxEnvelope, "pass -pin, terminate, originate: most envelope frames honoured (each at most 255 bytes);\n"+
		"a message with more is dropped (terminate: refused), with a log line")
	maxPending := fs.Int("max-pending", device.DefaultMaxPending, "terminate: most requests waiting for workers, all clients together; past it requests are refused (no reply)")
	perClient := fs.Int("max-pending-per-client", device.DefaultMaxPendingPerClient, "terminate: most requests one client may have waiting for a worker; originate: queued for its\n"+
		"upstream session; past it the client's requests are refused (no reply), with one log line until its queue empties")
	maxSessions := fs.Int("max-sessions", device.DefaultMaxSessions, "originate: most upstream TLS sessions (a goroutine and a ZeroMQ socket each); a new client takes\n"+
		"the least recently used idle one's place, or is refused while all are busy")
	idle := fs.Duration("idle", device.DefaultIdleTimeout, "originate: close an upstream session (close_notify, socket, goroutine) unused for this long")
	timeout := fs.Duration("timeout", device.DefaultTimeout, "terminate: how long a request waits for its worker, then the client gets an empty answer;\n"+
		"originate: how long to wait for the upstream server's handshake and replies")
	verbose := fs.Bool("v", false, "terminate/originate: print the DEBUG trace of bytes through the BIOs, on stderr")
	metricsAddr := fs.String("metrics", "", "terminate: serve the TLS server's Prometheus metrics over HTTP at host:port, path /metrics\n"+
		"(e.g. 127.0.0.1:9464; port 0: any free port)")
	var allow, deny cli.AddrList
	fs.Var(&allow, "allow", "all modes: admit only clients from these IP `addresses` or CIDR prefixes on the frontend (comma-separated,\n"+
		"repeatable; e.g. 10.0.0.0/8,::1); the others are refused when they connect")
	fs.Var(&deny, "deny", "all modes: refuse clients from these IP `addresses` or CIDR prefixes on the frontend (comma-separated,\n"+
		"repeatable); wins over -allow")
	tf := cli.AddTLSFlags(fs, tlszmq.RoleServer, "server.crt", "server.key")
	lf := cli.AddLogFlags(fs, true)
	if err := cli.Parse(fs, args, stderr); err != nil {
		return err
	}
	if err := lf.Check(); err != nil {
		return err
	}
	for _, n := range []int{*maxClients, *perConn, *maxBackends, *maxEnvelope, *maxPending, *perClient, *maxSessions} {
		if n < 1 {
			return cli.Usagef("the -max-* flags must be positive")
		}
	}
	if *timeout <= 0 || *idle <= 0 {
		return cli.Usagef("-timeout and -idle must be positive")
	}
	lim := device.Limits{MaxClients: *maxClients, MaxClientsPerConn: *perConn, MaxBackends: *maxBackends, MaxEnvelope: *maxEnvelope,
		MaxPending: *maxPending, MaxPendingPerClient: *perClient, MaxSessions: *maxSessions, Timeout: *timeout, IdleTimeout: *idle,
		Allow: allow, Deny: deny} // on the frontend, in every mode
	if *mode != "pass" && *mode != "terminate" && *mode != "originate" {
		return cli.Usagef("-mode %q: want pass, terminate or originate", *mode)
	}
	if *metricsAddr != "" && *mode != "terminate" {
		why := "forwards the TLS bytes untouched"
		if *mode == "originate" {
			why = "is a TLS client of -upstream"
		}
		return cli.Usagef("-metrics: -mode %s has no TLS server to count (it %s): -metrics is for -mode terminate", *mode, why)
	}
	if err := metricsrv.CheckAddr(*metricsAddr); err != nil {
		return err
	}
	*frontend, *backend = endpoints(*mode, *frontend, *backend)
	if err := cli.CheckEndpoint("frontend", *frontend, true); err != nil {
		return err
	}
	if *mode == "originate" {
		if err := cli.CheckEndpoint("upstream", *upstream, false); err != nil {
			return err
		}
	} else if err := cli.CheckEndpoint("backend", *backend, true); err != nil {
		return err
	}
	log := lf.Logger(stderr, "tlsdevice")
	trace := cli.Prefixed(stderr, "tlsdevice") // -v: stdout stays empty, as the C++ device's
	defer func() { err = tf.Explain(err) }()
	switch *mode {
	case "pass":
		d, err := device.NewPassThroughLimits(*frontend, *backend, *pin, lim, log)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "tlsdevice: clients at %s, servers at %s\n", *frontend, *backend)
		return d.Run(ctx)
	case "terminate":
		// config reads the files the flags name: at start-up, and again on SIGHUP (without
		// repeating the warnings about the flags).
		config := func(warnings io.Writer) (*tlszmq.Config, error) {
			cfg, err := tf.Config("", warnings)
			if err != nil {
				return nil, err
			}
			if *verbose {
				cfg.Debug = trace
			}
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
		var metricsLn net.Listener
		if *metricsAddr != "" {
			if metricsLn, err = net.Listen("tcp", *metricsAddr); err != nil {
				return fmt.Errorf("-metrics %s: %w", *metricsAddr, err)
			}
			defer metricsLn.Close()
		}
		d, err := device.NewTerminate(tctx, *frontend, *backend, tlszmq.ServerOptions{Logger: log}, lim) // lim's Allow and Deny go to the server
		if err != nil {
			return err
		}
		served := ""
		if metricsLn != nil {
			defer metricsrv.Serve(metricsLn, d.Server(), tctx, log)()
			served = ", metrics at http://" + metricsLn.Addr().String() + "/metrics"
		}
		front, back := d.Endpoints()
		// SIGHUP reloads from here on: before the start-up line, which says the device is up.
		defer cli.ReloadOnHangup(ctx, log, tctx, func() (*tlszmq.Config, error) { return config(io.Discard) })()
		cli.Startup(stderr, "tlsdevice", fmt.Sprintf("TLS clients at %s, plaintext workers at %s%s", front, back, served), cfg, tctx.Certificate())
		return d.Run(ctx)
	case "originate":
		cfg, err := tf.ClientConfig(zmqendpoint.Host(*upstream), stderr)
		if err != nil {
			return err
		}
		if *verbose {
			cfg.Debug = trace
		}
		tctx, err := tlszmq.NewContext(tlszmq.RoleClient, cfg)
		if err != nil {
			return err
		}
		defer tctx.Close()
		d, err := device.NewOriginate(tctx, *frontend, *upstream, lim, log)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "tlsdevice: plaintext clients at %s, TLS server at %s\n", *frontend, *upstream)
		return d.Run(ctx)
	}
	return nil // not reached: the mode was checked
}

// endpoints fills in the default frontend and backend of a mode: the C++ device's in pass
// mode; loopback for the plaintext side of the others (terminate's backend, originate's
// frontend).
func endpoints(mode, frontend, backend string) (string, string) {
	if frontend == "" {
		frontend = "tcp://*:5556"
		if mode == "originate" {
			frontend = "tcp://127.0.0.1:5556"
		}
	}
	if backend == "" {
		backend = "tcp://*:5555"
		if mode == "terminate" {
			backend = "tcp://127.0.0.1:5555"
		}
	}
	return frontend, backend
}
