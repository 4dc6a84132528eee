// Command tlszmq is the project's tool for everything beside the drop-in commands:
//
//	tlszmq demo     a server and a client exchange "hello world!" over ZeroMQ on loopback, with the trace
//	tlszmq keygen   makes a CA, a server and a client certificate through OpenSSL
//	tlszmq bench    measures tlszmq beside plain ZeroMQ and CURVE (see internal/perf)
//	tlszmq bridge   carries a TCP byte stream as TLSZMQ frames, for openssl s_client/s_server
//
// Run `tlszmq COMMAND -h` for a command's flags.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/tlszmq/tlszmq/internal/cli"
)

type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"demo", "run a server and a client over ZeroMQ on loopback and show the handshake", runDemo},
	{"keygen", "make a CA and server and client certificates through OpenSSL", runKeygen},
	{"bench", "measure tlszmq beside plain ZeroMQ and CURVE: round trips, streaming, handshakes, memory", runBench},
	{"bridge", "carry a TCP byte stream as TLSZMQ frames (openssl s_client and s_server meet TLSZMQ peers)", runBridge},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			return cli.Exit("tlszmq "+c.name, c.run(args[1:], stdout, stderr), stderr)
		}
	}
	fmt.Fprintf(stderr, "tlszmq: unknown command %q (tlszmq -h lists the commands)\n", args[0])
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: tlszmq COMMAND [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
}

// newFlags makes the FlagSet of a command.
func newFlags(name string) *flag.FlagSet {
	return flag.NewFlagSet("tlszmq "+name, flag.ContinueOnError)
}
