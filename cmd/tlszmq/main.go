// Command tlszmq is the project's tool for everything beside the drop-in commands:
//
//	tlszmq demo     a server and a client exchange "hello world!" over ZeroMQ on loopback, with the trace
//	tlszmq keygen   makes a CA, a server and a client certificate through OpenSSL
//	tlszmq bench    measures tlszmq beside plain ZeroMQ and CURVE (see internal/perf)
//	tlszmq bridge   carries a TCP byte stream as TLSZMQ frames, for openssl s_client/s_server
//
// Run `tlszmq COMMAND -h` for a command's flags, `tlszmq -version` for the version. Every
// line the tool writes on stderr starts with "tlszmq COMMAND: " ("tlszmq: " before a command
// is known).
//
// Exit status: 0 success; 2 bad use (no or an unknown command, a bad flag or value, a
// malformed endpoint, a missing file); 3 a TLS failure (demo); 4 no server answered in time
// (demo); 130 interrupted by SIGINT or SIGTERM before the work was done (bench, after the
// table of what was measured); 1 any other failure.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/tlszmq/tlszmq/internal/cli"
)

type command struct {
	name string
	run  func(args []string, stdout, stderr io.Writer) error
}

var commands = []command{{"demo", runDemo}, {"keygen", runKeygen}, {"bench", runBench}, {"bridge", runBridge}}

// abouts are what -h says of each command beside its flags: what it does, and its exit
// statuses beyond 0, 1 and 2.
var abouts = map[string]struct {
	summary string
	exits   []cli.ExitStatus
}{
	"demo": {"run a server and a client over ZeroMQ on loopback and show the handshake", []cli.ExitStatus{
		{Code: cli.ExitTLS}, {Code: cli.ExitUnreachable, Meaning: "no reply from the demo's server within 10s"}}},
	"keygen": {"make a CA and server and client certificates through OpenSSL", nil},
	"bench": {"measure tlszmq beside plain ZeroMQ and CURVE: round trips, streaming, handshakes, memory", []cli.ExitStatus{
		{Code: cli.ExitInterrupted, Meaning: "interrupted by SIGINT or SIGTERM: the table of what was measured so far is printed"}}},
	"bridge": {"carry a TCP byte stream as TLSZMQ frames (openssl s_client and s_server meet TLSZMQ peers)", []cli.ExitStatus{
		{Code: cli.ExitOK, Meaning: "stopped by SIGINT or SIGTERM"}}},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return cli.ExitUsage
		}
		return cli.ExitOK
	}
	if args[0] == "-version" || args[0] == "--version" || args[0] == "version" {
		return cli.Exit("tlszmq", cli.ErrVersion, stdout, stderr)
	}
	for _, c := range commands {
		if c.name == args[0] {
			return cli.Exit("tlszmq "+c.name, c.run(args[1:], stdout, stderr), stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "tlszmq: unknown command %q (tlszmq -h lists the commands)\n", args[0])
	return cli.ExitUsage
}

// summary is what the tool does, the first line of its -h.
const summary = "the TLSZMQ tool: a demonstration, certificates, measurements and a bridge to TCP TLS tools"

func usage(w io.Writer) {
	fmt.Fprintf(w, "tlszmq: %s\n\nusage: tlszmq COMMAND [flags]\n       tlszmq -version\n\ncommands:\n", summary)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, abouts[c.name].summary)
	}
	fmt.Fprint(w, "\n"+cli.ExitStatuses(
		cli.ExitStatus{Code: cli.ExitTLS, Meaning: "TLS failure (demo)"},
		cli.ExitStatus{Code: cli.ExitUnreachable, Meaning: "no server answered in time (demo)"},
		cli.ExitStatus{Code: cli.ExitInterrupted, Meaning: "interrupted by SIGINT or SIGTERM before the work was done (bench, after the table of what was measured)"}))
}

// newFlags makes the FlagSet of a command: its -h starts with what the command does and ends
// with its exit statuses, and -version prints the tool's version.
func newFlags(name string) *flag.FlagSet {
	return cli.NewFlagSet("tlszmq "+name, abouts[name].summary, abouts[name].exits...)
}
