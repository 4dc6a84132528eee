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
//	           verified certificate subject (see internal/device for the worker messages)
//	originate  the other way round: plaintext clients reach the device, which carries each
//	           one's messages over TLS to the server at -upstream
//
// SIGINT or SIGTERM stops the device (in terminate mode after close_notify to every client)
// with exit status 0.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cli"
	"github.com/tlszmq/tlszmq/internal/device"
)

func main() { cli.Main("tlsdevice", run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tlsdevice", flag.ContinueOnError)
	mode := fs.String("mode", "pass", "pass (the C++ device), terminate or originate")
	frontend := fs.String("frontend", "tcp://*:5556", "endpoint the clients connect to")
	backend := fs.String("backend", "tcp://*:5555", "endpoint the servers (pass) or workers (terminate) connect to")
	upstream := fs.String("upstream", "tcp://localhost:5557", "originate: the TLS server to carry the clients' messages to")
	pin := fs.Bool("pin", false, "pass: keep each client with one server (servers must announce themselves)")
	maxClients := fs.Int("max-clients", 100000, "most clients remembered for pinning (and sessions kept, in terminate mode)")
	timeout := fs.Duration("timeout", 10*time.Second, "originate: how long to wait for the upstream server's handshake and replies")
	verbose := fs.Bool("v", false, "terminate/originate: print the DEBUG trace of bytes through the BIOs")
	tf := cli.AddTLSFlags(fs, tlszmq.RoleServer, "server.crt", "server.key")
	if err := cli.Parse(fs, args, stderr); err != nil {
		return err
	}
	if *maxClients < 1 || *timeout <= 0 {
		return cli.Usagef("-max-clients and -timeout must be positive")
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	switch *mode {
	case "pass":
		d, err := device.NewPassThrough(*frontend, *backend, *pin, *maxClients, log)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "tlsdevice: clients at %s, servers at %s\n", *frontend, *backend)
		return d.Run(ctx)
	case "terminate":
		cfg, err := tf.Config("", stderr)
		if err != nil {
			return err
		}
		if *verbose {
			cfg.Debug = stdout
		}
		tctx, err := tlszmq.NewContext(tlszmq.RoleServer, cfg)
		if err != nil {
			return err
		}
		defer tctx.Close()
		d, err := device.NewTerminate(tctx, *frontend, *backend, tlszmq.ServerOptions{Logger: log, MaxSessions: *maxClients}, *maxClients)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "tlsdevice: TLS clients at %s, plaintext workers at %s\n", *frontend, *backend)
		return d.Run(ctx)
	case "originate":
		cfg, err := tf.ClientConfig(cli.EndpointHost(*upstream), stderr)
		if err != nil {
			return err
		}
		if *verbose {
			cfg.Debug = stdout
		}
		tctx, err := tlszmq.NewContext(tlszmq.RoleClient, cfg)
		if err != nil {
			return err
		}
		defer tctx.Close()
		d, err := device.NewOriginate(tctx, *frontend, *upstream, *maxClients, *timeout, log)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "tlsdevice: plaintext clients at %s, TLS server at %s\n", *frontend, *upstream)
		return d.Run(ctx)
	}
	return cli.Usagef("-mode %q: want pass, terminate or originate", *mode)
}
