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
// chain alone with -ca and -verify-chain-only (and says so on stderr). -message-file sends a
// file's contents (or standard input's, with -) instead of -message. Run `tlsclient -h` for
// the flags.
//
// Exit status: 0 when every reply came; 2 for bad use (a bad flag or value, a malformed
// endpoint, a missing file); 3 when TLS failed (the handshake, the server's certificate, or
// OpenSSL refusing the certificates or settings); 4 when no server answered within -timeout;
// 130 when SIGINT or SIGTERM came before the last reply; 1 for any other failure.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cli"
	"github.com/tlszmq/tlszmq/internal/zmqendpoint"
)

func main() { cli.Main("tlsclient", run) }

// stdin is what -message-file - reads.
var stdin io.Reader = os.Stdin

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := cli.NewFlagSet("tlsclient", "sends messages to a TLSZMQ server over TLS 1.2/1.3 on ZeroMQ and prints the replies (drop-in for the C++ client)",
		cli.ExitStatus{Code: cli.ExitOK, Meaning: "success: every reply came"},
		cli.ExitStatus{Code: cli.ExitTLS},
		cli.ExitStatus{Code: cli.ExitUnreachable, Meaning: "no server: nothing answered at the endpoint within -timeout"},
		cli.ExitStatus{Code: cli.ExitInterrupted, Meaning: "interrupted by SIGINT or SIGTERM before the last reply"})
	endpoint := fs.String("endpoint", "tcp://localhost:5556", "endpoint to connect to (or to bind, with -bind)")
	bind := fs.Bool("bind", false, "bind the endpoint instead of connecting to it")
	pattern := fs.String("pattern", "req", "socket type: req (the C++ client's) or dealer")
	identity := fs.String("identity", "", "socket identity (the C++ fork's client uses client2)")
	message := fs.String("message", "hello world!", "the message to send")
	messageFile := fs.String("message-file", "", "send this file's contents, as they are, instead of -message (- reads standard input): for a large or binary message")
	count := fs.Int("count", 1, "how many times to send it")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the handshake and for each reply")
	raw := fs.Bool("raw", false, "offer no ALPN: the C++ peers' message format even with a tlszmq server")
	verbose := fs.Bool("v", false, "print the DEBUG trace of bytes through the BIOs")
	tf := cli.AddTLSFlags(fs, tlszmq.RoleClient, "", "")
	if err := cli.Parse(fs, args, stderr); err != nil {
		return err
	}
	defer func() { err = tf.Explain(err) }()
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
	msg := []byte(*message)
	if *messageFile != "" {
		given := false
		fs.Visit(func(f *flag.Flag) { given = given || f.Name == "message" })
		if given {
			return cli.Usagef("-message and -message-file: give one")
		}
		if msg, err = readMessage(*messageFile); err != nil {
			return err
		}
	}
	if len(msg) == 0 {
		if *messageFile != "" {
			return cli.Usagef("-message-file %s is empty: there is nothing to send", *messageFile)
		}
		return cli.Usagef("-message is empty")
	}
	if err := cli.CheckEndpoint("endpoint", *endpoint, *bind); err != nil {
		return err
	}
	host := zmqendpoint.Host(*endpoint) // the server's, unless the client binds
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
		fmt.Fprintf(stdout, "Sending - [%s]\n", msg)
		reply, err := c.Request(ctx, msg)
		if err != nil {
			if ctx.Err() != nil {
				return cli.Interrupted(ctx, "the reply") // Close sends close_notify
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

// readMessage reads the message of -message-file: a file, or standard input for "-".
func readMessage(path string) ([]byte, error) {
	if path == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("-message-file -: reading standard input: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if nerr := cli.NeedFiles(path); nerr != nil {
			return nil, nerr // "PATH: no such file or directory"
		}
		return nil, cli.Usagef("-message-file: %v", err) // a folder, say
	}
	return b, nil
}
