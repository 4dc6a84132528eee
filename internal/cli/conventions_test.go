package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq"
)

// Each kind of failure has its exit status, whatever wraps it.
func TestStatus(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{flag.ErrHelp, ExitOK},
		{ErrVersion, ExitOK},
		{Usagef("-x: bad"), ExitUsage},
		{Interrupted(context.Background(), "the reply"), ExitInterrupted},
		{&tlszmq.Error{Op: "loading the certificate file", Reasons: []string{"SSL routines: ee key too small"}}, ExitTLS},
		{fmt.Errorf("request: %w", &tlszmq.Error{Op: "handshake", Verify: &tlszmq.CertificateVerificationError{Code: 20}}), ExitTLS},
		{fmt.Errorf("request: %w", &tlszmq.AlertError{Code: 48, Text: "unknown CA"}), ExitTLS},
		{&hinted{&tlszmq.CertificateVerificationError{Code: 66}, "hint"}, ExitTLS},
		{fmt.Errorf("%w: handshake with tcp://127.0.0.1:1: %w", tlszmq.ErrTimeout, context.DeadlineExceeded), ExitUnreachable},
		{errors.New("boom"), ExitFailure},
		{tlszmq.ErrPeerClosed, ExitFailure},
	} {
		if got := Status(c.err); got != c.want {
			t.Errorf("Status(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

// -h says what the command does first, then the flags, then the exit statuses.
func TestHelpDescribesTheCommand(t *testing.T) {
	fs := NewFlagSet("tool", "does one thing well", ExitStatus{Code: ExitTLS}, ExitStatus{Code: ExitInterrupted, Meaning: "stopped early"})
	fs.String("cert", "server.crt", "the certificate")
	var stderr bytes.Buffer
	if err := Parse(fs, []string{"-h"}, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	help := stderr.String()
	if !strings.HasPrefix(help, "tool: does one thing well\n\nusage of tool:\n") {
		t.Errorf("-h does not start with the description:\n%s", help)
	}
	for _, re := range []string{`(?m)^  -cert string\n\s+the certificate`, `(?m)^  -version\n`, `(?m)^exit status:\n  0    success\n  1    any other failure\n  2    usage: `,
		`(?m)^  3    TLS failure: the handshake`, `(?m)^  130  stopped early\n\z`} {
		if !regexp.MustCompile(re).MatchString(help) {
			t.Errorf("-h does not match %s:\n%s", re, help)
		}
	}
}

// -version prints "name version (libzmq ..., go...)" on stdout, nothing on stderr, status 0;
// a tlszmq subcommand prints the program's name.
func TestVersion(t *testing.T) {
	for name, want := range map[string]string{"tlsclient": "tlsclient", "tlszmq bench": "tlszmq"} {
		fs := NewFlagSet(name, "a command")
		fs.Int("n", 1, "a number")
		err := Parse(fs, []string{"-n", "2", "-version"}, io.Discard)
		var stdout, stderr bytes.Buffer
		if code := Exit(name, err, &stdout, &stderr); code != 0 || stderr.Len() != 0 {
			t.Fatalf("%s -version: exit %d, stderr %q", name, code, stderr.String())
		}
		if !regexp.MustCompile(`^` + want + ` 0\.9\.0 \(libzmq \d+\.\d+\.\d+, go1\.[^)]+\)\n$`).MatchString(stdout.String()) {
			t.Errorf("%s -version printed %q", name, stdout.String())
		}
	}
	// A bad flag beside it is still bad use.
	fs := NewFlagSet("tool", "a command")
	if err := Parse(fs, []string{"-version", "-bogus"}, io.Discard); Status(err) != ExitUsage {
		t.Errorf("-version -bogus: %v", err)
	}
}

func TestCheckEndpoint(t *testing.T) {
	long := "ipc:///tmp/" + strings.Repeat("x", 120)
	for _, c := range []struct {
		endpoint string
		bind     bool
		want     string // "" for a valid endpoint, else a part of the error
	}{
		{"tcp://localhost:5556", false, ""},
		{"tcp://127.0.0.1:1", false, ""},
		{"tcp://127.0.0.1:65535", false, ""},
		{"tcp://[::1]:5556", false, ""},
		{"tcp://::1:5556", false, ""},
		{"tcp://server-1.example.com:5556", false, ""},
		{"tcp://127.0.0.1;server:5556", false, ""},
		{"tcp://*:5556", true, ""},
		{"tcp://*:*", true, ""},
		{"tcp://127.0.0.1:*", true, ""},
		{"tcp://eth0:5556", true, ""},
		{"ipc:///tmp/tlszmq.ipc", false, ""},
		{"ipc://@abstract", true, ""},
		{"ipc://*", true, ""},
		{"inproc://server", false, ""},
		{"tcp://127.0.0.1:99999", false, "port 99999 is out of range: want 1 to 65535"},
		{"tcp://127.0.0.1:99999", true, "port 99999 is out of range: want 1 to 65535, or * for any free port"},
		{"tcp://127.0.0.1:0", false, "port 0 is out of range"},
		{"tcp://127.0.0.1:-1", false, `port "-1" is not a number`},
		{"tcp://127.0.0.1:http", false, `port "http" is not a number`},
		{"tcp://127.0.0.1", false, "no port"},
		{"tcp://:5556", false, "no host"},
		{"tcp://*:5556", false, "* binds every interface: to connect, name the host"},
		{"tcp://localhost:*", false, "port * picks a free port to bind"},
		{"tcp://local host:5556", false, `"local host" is not a host name`},
		{"tcp://[nope]:5556", false, "[nope] is not an IPv6 address"},
		{"tcp://[127.0.0.1]:5556", false, "is not an IPv6 address"},
		{"foo", false, `-endpoint "foo": not a ZeroMQ endpoint: want tcp://host:port, ipc://path or inproc://name`},
		{"localhost:5556", false, "not a ZeroMQ endpoint"},
		{"://x", false, "not a ZeroMQ endpoint"},
		{"ipc://", false, "no path"},
		{"ipc://*", false, "connect to a path"},
		{long, true, "a path of 125 bytes, the most is 107"},
		{"inproc://", false, "no name"},
		{"pgm://eth0;239.192.1.1:5555", false, "pgm:// is for PUB and SUB sockets"},
		{"epgm://eth0;239.192.1.1:5555", true, "epgm:// is for PUB and SUB sockets"},
		{"udp://127.0.0.1:5555", false, "udp:// is for RADIO and DISH sockets"},
		{"http://example.com:80", false, `unknown transport "http"`},
	} {
		err := CheckEndpoint("endpoint", c.endpoint, c.bind)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q (bind %v): %v", c.endpoint, c.bind, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q (bind %v): %v, want an error saying %q", c.endpoint, c.bind, err, c.want)
		case c.want != "":
			var stderr bytes.Buffer
			if Exit("tool", err, io.Discard, &stderr) != ExitUsage || strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("%q: not one line with exit status 2: %q", c.endpoint, stderr.String())
			}
		}
	}
}

// Every line gets the prefix, however the writes cut them.
func TestPrefixed(t *testing.T) {
	var b bytes.Buffer
	w := Prefixed(&b, "tool")
	for _, s := range []string{"one\ntw", "o\n", "", "three\nfour\n"} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if want := "tool: one\ntool: two\ntool: three\ntool: four\n"; b.String() != want {
		t.Fatalf("%q, want %q", b.String(), want)
	}
	b.Reset()
	Logger(&b, "tool").Info("hello", "k", "v")
	if !regexp.MustCompile(`^tool: time=\S+ level=INFO msg=hello k=v\n$`).MatchString(b.String()) {
		t.Fatalf("log line %q", b.String())
	}
}

// Warnings about weakened security start with the command's name.
func TestWarningsArePrefixed(t *testing.T) {
	fs := NewFlagSet("tool", "a command")
	tf := AddTLSFlags(fs, tlszmq.RoleClient, "", "")
	if err := Parse(fs, []string{"-seclevel", "1"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if _, err := tf.Config("localhost", &stderr); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.SplitAfter(strings.TrimSuffix(stderr.String(), "\n"), "\n") {
		if !strings.HasPrefix(line, "tool: warning: ") {
			t.Errorf("warning line %q", line)
		}
	}
}

// A missing certificate or key says how to give one, or make one.
func TestMissingCertificateHint(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, args := range [][]string{{}, {"-cert", "server.crt", "-key", "../nope.key"}} {
		fs := NewFlagSet("tlsserver", "a server")
		tf := AddTLSFlags(fs, tlszmq.RoleServer, "server.crt", "server.key")
		if err := Parse(fs, args, io.Discard); err != nil {
			t.Fatal(err)
		}
		_, err := tf.Config("", io.Discard)
		var stderr bytes.Buffer
		if Exit("tlsserver", err, io.Discard, &stderr) != ExitUsage {
			t.Fatalf("%v: %v", args, err)
		}
		for _, want := range []string{"server.crt: no such file or directory", "-cert and -key", "tlszmq keygen"} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("%v: %q does not say %q", args, stderr.String(), want)
			}
		}
	}
}

// A legacy certificate refused for the security level names the -seclevel that accepts it.
func TestSeclevelHint(t *testing.T) {
	certs := filepath.Join("..", "..", "testdata", "certs")
	for _, c := range []struct {
		cert, seclevel string
		want           string // "" for no hint
	}{
		{"legacy", "default", "-seclevel 1 accepts 1024-bit RSA keys and SHA-1 signatures"},
		{"legacy", "2", "-seclevel 1"},
		{"fork-server", "default", "-seclevel 1"},
		{"fork-server", "1", "-seclevel 0 accepts weaker certificates still"},
	} {
		fs := NewFlagSet("tlsserver", "a server")
		tf := AddTLSFlags(fs, tlszmq.RoleServer, filepath.Join(certs, c.cert+".crt"), filepath.Join(certs, c.cert+".key"))
		if err := Parse(fs, []string{"-seclevel", c.seclevel}, io.Discard); err != nil {
			t.Fatal(err)
		}
		cfg, err := tf.Config("", io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tlszmq.NewContext(tlszmq.RoleServer, cfg)
		err = tf.Explain(err)
		if err == nil || Status(err) != ExitTLS || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s at -seclevel %s: %v (status %d), want exit status 3 and %q", c.cert, c.seclevel, err, Status(err), c.want)
		}
		t.Logf("%s at -seclevel %s: %v", c.cert, c.seclevel, err)
	}
	// Other errors get no hint.
	fs := NewFlagSet("tool", "a command")
	tf := AddTLSFlags(fs, tlszmq.RoleClient, "", "")
	if err := errors.New("boom"); tf.Explain(err) != err || tf.Explain(nil) != nil {
		t.Error("Explain changed an error it has nothing to say about")
	}
}

// SIGINT cancels a SignalContext with a cause naming it; the command's error is then
// ErrInterrupted, exit status 130.
func TestSignalContext(t *testing.T) {
	ctx, stop := SignalContext(context.Background())
	defer stop()
	syscall.Kill(os.Getpid(), syscall.SIGINT)
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("SIGINT did not cancel the context")
	}
	err := Interrupted(ctx, "the reply")
	var stderr bytes.Buffer
	if code := Exit("tool", err, io.Discard, &stderr); code != ExitInterrupted || stderr.String() != "tool: interrupted by SIGINT before the reply\n" {
		t.Fatalf("exit %d, %q", code, stderr.String())
	}
	// stop ends a context no signal came to, and the signals are the default again.
	ctx, stop = SignalContext(context.Background())
	stop()
	if ctx.Err() == nil || errors.Is(context.Cause(ctx), ErrInterrupted) {
		t.Fatalf("after stop: %v", context.Cause(ctx))
	}
}
