package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cli"
	"github.com/tlszmq/tlszmq/internal/cmdtest"
)

// runCmd runs tlsclient in-process as main does, and returns its exit status and output.
func runCmd(ctx context.Context, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := cli.Exit("tlsclient", run(ctx, args, &stdout, &stderr), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestBadUse(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600)
	cases := map[string][]string{
		"unknown flag":              {"-bogus"},
		"bad pattern":               {"-pattern", "pub"},
		"missing CA":                {"-ca", "nope.crt"},
		"cert alone":                {"-cert", "../../testdata/certs/client.crt"},
		"zero count":                {"-count", "0"},
		"bad max":                   {"-max", "1.4"},
		"stray argument":            {"extra"},
		"port out of range":         {"-endpoint", "tcp://127.0.0.1:99999"},
		"not an endpoint":           {"-endpoint", "foo"},
		"no port":                   {"-endpoint", "tcp://localhost"},
		"wildcard host":             {"-endpoint", "tcp://*:5556"},
		"message and message-file":  {"-message", "hi", "-message-file", "main.go"},
		"missing message-file":      {"-message-file", filepath.Join(dir, "nope")},
		"message-file is a folder":  {"-message-file", dir},
		"empty message-file":        {"-message-file", filepath.Join(dir, "empty")},
		"missing client key":        {"-cert", "../../testdata/certs/client.crt", "-key", "nope.key"},
		"bad version flag argument": {"-version=maybe"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr := runCmd(context.Background(), args...)
			if code != cli.ExitUsage || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "tlsclient: ") || stdout != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q: want 2, one line and nothing on stdout", code, stdout, stderr)
			}
		})
	}
}

// The endpoint errors say what is wrong, before any socket is made.
func TestEndpointErrors(t *testing.T) {
	for endpoint, want := range map[string]string{
		"foo":                   `tlsclient: -endpoint "foo": not a ZeroMQ endpoint: want tcp://host:port, ipc://path or inproc://name (tlsclient -h lists the flags)` + "\n",
		"tcp://127.0.0.1:99999": `tlsclient: -endpoint "tcp://127.0.0.1:99999": port 99999 is out of range: want 1 to 65535 (tlsclient -h lists the flags)` + "\n",
	} {
		code, _, stderr := runCmd(context.Background(), "-endpoint", endpoint)
		if code != cli.ExitUsage || stderr != want {
			t.Errorf("-endpoint %s: exit %d, %q; want 2, %q", endpoint, code, stderr, want)
		}
	}
	// A bound client may take any free port.
	if err := cli.CheckEndpoint("endpoint", "tcp://127.0.0.1:*", true); err != nil {
		t.Error(err)
	}
}

func TestHelp(t *testing.T) {
	code, stdout, stderr := runCmd(context.Background(), "-h")
	if code != 0 || stdout != "" {
		t.Fatalf("exit %d, stdout %q", code, stdout)
	}
	if !strings.HasPrefix(stderr, "tlsclient: sends messages to a TLSZMQ server over TLS 1.2/1.3 on ZeroMQ") || !strings.Contains(stderr, "(drop-in for the C++ client)\n\nusage of tlsclient:\n") {
		t.Errorf("-h does not start with what tlsclient does:\n%s", stderr)
	}
	for _, re := range []string{`(?m)^  -message-file string$`, `(?m)^  -version$`, `(?m)^exit status:$`, `(?m)^  0    success`, `(?m)^  2    usage`,
		`(?m)^  3    TLS failure`, `(?m)^  4    no server`, `(?m)^  130  interrupted by SIGINT or SIGTERM before the last reply$`} {
		if !regexp.MustCompile(re).MatchString(stderr) {
			t.Errorf("-h does not match %s:\n%s", re, stderr)
		}
	}
}

func TestVersion(t *testing.T) {
	code, stdout, stderr := runCmd(context.Background(), "-version")
	if code != 0 || stderr != "" || !regexp.MustCompile(`^tlsclient 0\.9\.0 \(libzmq \d+\.\d+\.\d+, go1\.[^)]+\)\n$`).MatchString(stdout) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// lengthServer serves at an ipc endpoint until the test ends, answering every request with
// its length; cfg is the server's TLS configuration (server.crt, from ca.crt, if nil).
func lengthServer(t *testing.T, cfg *tlszmq.Config) string {
	if cfg == nil {
		cfg = &tlszmq.Config{CertFile: filepath.Join(certsDir(), "server.crt"), KeyFile: filepath.Join(certsDir(), "server.key")}
	}
	cfg.Logger = quietLogger()
	sctx := cmdtest.Context(t, tlszmq.RoleServer, cfg)
	endpoint := "ipc://" + filepath.Join(t.TempDir(), "server.ipc")
	srv, err := tlszmq.NewServer(sctx, endpoint, tlszmq.SinglePart(func(_ context.Context, _ *tlszmq.Peer, req []byte) ([]byte, error) {
		return fmt.Appendf(nil, "%d bytes", len(req)), nil
	}), &tlszmq.ServerOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	cmdtest.Serve(t, srv.Serve)
	return endpoint
}

// The exit statuses: TLS failures (3), no server (4), interrupted before the reply (130).
func TestExitStatus(t *testing.T) {
	ca := filepath.Join(certsDir(), "ca.crt")
	t.Run("server from another CA", func(t *testing.T) {
		endpoint := lengthServer(t, nil)
		code, stdout, stderr := runCmd(context.Background(), "-endpoint", endpoint, "-servername", "localhost",
			"-ca", filepath.Join(certsDir(), "other-ca.crt"), "-timeout", "5s")
		if code != cli.ExitTLS || !strings.Contains(stderr, "tlsclient: tlszmq: ") || !strings.Contains(stderr, "certificate verify failed") {
			t.Fatalf("exit %d, stdout %q, stderr %q: want 3 and the verification failure", code, stdout, stderr)
		}
	})
	t.Run("server refuses the client's certificate", func(t *testing.T) {
		endpoint := lengthServer(t, &tlszmq.Config{CertFile: filepath.Join(certsDir(), "server.crt"), KeyFile: filepath.Join(certsDir(), "server.key"),
			CAFile: filepath.Join(certsDir(), "other-ca.crt"), ClientAuth: tlszmq.RequireAndVerifyClientCert})
		code, _, stderr := runCmd(context.Background(), "-endpoint", endpoint, "-servername", "localhost", "-ca", ca,
			"-cert", filepath.Join(certsDir(), "client.crt"), "-key", filepath.Join(certsDir(), "client.key"), "-timeout", "5s")
		if code != cli.ExitTLS || !strings.Contains(stderr, "alert") {
			t.Fatalf("exit %d, stderr %q: want 3 and the server's alert", code, stderr)
		}
	})
	t.Run("legacy client certificate", func(t *testing.T) {
		code, _, stderr := runCmd(context.Background(), "-endpoint", "ipc:///nonexistent/x.ipc",
			"-cert", filepath.Join(certsDir(), "legacy.crt"), "-key", filepath.Join(certsDir(), "legacy.key"))
		if code != cli.ExitTLS || !strings.Contains(stderr, "ee key too small") || !strings.Contains(stderr, "-seclevel 1") {
			t.Fatalf("exit %d, stderr %q: want 3 and a hint naming -seclevel 1", code, stderr)
		}
	})
	t.Run("no server", func(t *testing.T) {
		start := time.Now()
		code, stdout, stderr := runCmd(context.Background(), "-endpoint", "ipc://"+filepath.Join(t.TempDir(), "nobody.ipc"), "-timeout", "300ms")
		if code != cli.ExitUnreachable || !strings.Contains(stderr, "timed out") || time.Since(start) > 5*time.Second {
			t.Fatalf("exit %d after %v, stdout %q, stderr %q: want 4", code, time.Since(start), stdout, stderr)
		}
	})
	t.Run("interrupted", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		code, stdout, stderr := runCmd(ctx, "-endpoint", "ipc://"+filepath.Join(t.TempDir(), "nobody.ipc"), "-timeout", "30s")
		if code != cli.ExitInterrupted || !strings.HasSuffix(stderr, "tlsclient: interrupted before the reply\n") || stdout != "Sending - [hello world!]\n" {
			t.Fatalf("exit %d, stdout %q, stderr %q: want 130", code, stdout, stderr)
		}
	})
	t.Run("success", func(t *testing.T) {
		endpoint := lengthServer(t, nil)
		code, stdout, stderr := runCmd(context.Background(), "-endpoint", endpoint, "-servername", "localhost", "-ca", ca, "-count", "2")
		if want := "Sending - [hello world!]\nReceived - [12 bytes]\n"; code != 0 || stdout != want+want || stderr != "" {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})
}

// -message-file sends a file's bytes as they are, or standard input's with -.
func TestMessageFile(t *testing.T) {
	endpoint := lengthServer(t, nil)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	big = append(big, '\n')
	file := filepath.Join(t.TempDir(), "message")
	if err := os.WriteFile(file, big, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-endpoint", endpoint, "-servername", "localhost", "-ca", filepath.Join(certsDir(), "ca.crt")}
	want := fmt.Sprintf("Sending - [%s]\nReceived - [%d bytes]\n", big, len(big))

	code, stdout, stderr := runCmd(context.Background(), append(args, "-message-file", file)...)
	if code != 0 || stdout != want {
		t.Fatalf("from a file: exit %d, stderr %q, stdout ends %q", code, stderr, stdout[max(0, len(stdout)-40):])
	}

	stdin = bytes.NewReader(big)
	defer func() { stdin = os.Stdin }()
	code, stdout, stderr = runCmd(context.Background(), append(args, "-message-file", "-")...)
	if code != 0 || stdout != want {
		t.Fatalf("from standard input: exit %d, stderr %q, stdout ends %q", code, stderr, stdout[max(0, len(stdout)-40):])
	}
}

// quietLogger drops the test server's log lines.
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
