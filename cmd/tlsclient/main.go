// Command tlsclient is a drop-in replacement for the C++ TLSZMQ client: with no flags it
// connects a REQ socket to tcp://localhost:5556, sends "hello world!" and prints what the C++
// client prints:
//
//	Sending - [hello world!]
//	Received - [Got it!]
//
// Like the C++ client it verifies nothing unless given -ca (and says so on stderr); with -ca
// it verifies the server's chain and host name (-servername, else the endpoint's host). As
// the C++ fork's client, whose server's certificate names *.fish-test.com, it verifies the
// chain alone with -ca and -verify-chain-only (and says so on stderr). Run `tlsclient -h` for
// the flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cli"
)

func main() { cli.Main("tlsclient", run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tlsclient", flag.ContinueOnError)
	endpoint := fs.String("endpoint", "tcp://localhost:5556", "endpoint to connect to (or to bind, with -bind)")
	bind := fs.Bool("bind", false, "bind the endpoint instead of connecting to it")
	pattern := fs.String("pattern", "req", "socket type: req (the C++ client's) or dealer")
	identity := fs.String("identity", "", "socket identity (the C++ fork's client uses client2)")
	message := fs.String("message", "hello world!", "the message to send")
	count := fs.Int("count", 1, "how many times to send it")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the handshake and for each reply")
	raw := fs.Bool("raw", false, "offer no ALPN: the C++ peers' message format even with a tlszmq server")
	verbose := fs.Bool("v", false, "print the DEBUG trace of bytes through the BIOs")
	tf := cli.AddTLSFlags(fs, tlszmq.RoleClient, "", "")
	if err := cli.Parse(fs, args, stderr); err != nil {
		return err
	}
	var pat tlszmq.Pattern
	switch *pattern {
	case "req":
	case "dealer":
		pat = tlszmq.DEALER
	default:
		return cli.Usagef("-pattern %q: want req or dealer", *pattern)
	}
	if *count < 1 || *timeout <= 0 {
		return cli.Usagef("-count and -timeout must be positive")
	}
	if *message == "" {
		return cli.Usagef("-message is empty")
	}
	host := cli.EndpointHost(*endpoint) // the server's, unless the client binds
	if *bind {
		host = ""
	}
	cfg, err := tf.Config(host, stderr)
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
	c, err := tlszmq.NewClient(tctx, *endpoint, &tlszmq.ClientOptions{
		Pattern: pat, Bind: *bind, Identity: *identity, Timeout: *timeout, Raw: *raw,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	for range *count {
		fmt.Fprintf(stdout, "Sending - [%s]\n", *message)
		reply, err := c.Request(ctx, []byte(*message))
		if err != nil {
			if ctx.Err() != nil {
				return nil // SIGINT or SIGTERM: Close sends close_notify; a clean stop
			}
			return err
		}
		var text []byte
		for _, p := range reply {
			text = append(text, p...)
		}
		fmt.Fprintf(stdout, "Received - [%s]\n", cli.CString(text))
	}
	return nil
}
