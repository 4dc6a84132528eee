package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cli"
	"github.com/tlszmq/tlszmq/internal/cmdtest"
	"github.com/tlszmq/tlszmq/internal/syncbuf"
)

// startServer runs tlsserver with args in this process until stop is called or the test
// ends, and returns its stderr. stop returns run's error; the test's end reports it as one.
func startServer(t *testing.T, args ...string) (stderr *syncbuf.Buffer, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout syncbuf.Buffer
	stderr = &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, &stdout, stderr) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("tlsserver %q: %v\n%s", args, err, stderr.String())
		}
	})
	return stderr, stop
}

// Bad use is one line on stderr and exit status 2, before anything is bound.
func TestBadUse(t *testing.T) {
	t.Chdir(t.TempDir()) // no server.crt here
	cases := map[string][]string{
		"missing default certificate": {},
		"missing key":                 {"-cert", "../../testdata/certs/server.crt", "-key", "nope.key"},
		"unknown flag":                {"-bogus"},
		"bad version":                 {"-cert", "../../testdata/certs/server.crt", "-key", "../../testdata/certs/server.key", "-min", "1.1"},
		"verify without CA":           {"-verify", "require"},
		"bad security level":          {"-seclevel", "9"},
		"zero budget":                 {"-max-parts", "0"},
		"port out of range":           {"-endpoint", "tcp://127.0.0.1:99999"},
		"not an endpoint":             {"-endpoint", "foo"},
		"connect to a wildcard":       {"-connect", "-endpoint", "tcp://*:5555"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := cli.Exit("tlsserver", run(context.Background(), args, &stdout, &stderr), &stdout, &stderr)
			if code != 2 || strings.Count(stderr.String(), "\n") != 1 || !strings.HasPrefix(stderr.String(), "tlsserver: ") {
				t.Fatalf("exit %d, stderr %q: want 2 and one line", code, stderr.String())
			}
		})
	}
}

func TestHelpListsEveryFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := cli.Exit("tlsserver", run(context.Background(), []string{"-h"}, &stdout, &stderr), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	help := stderr.String()
	if !strings.HasPrefix(help, "tlsserver: answers TLSZMQ clients over TLS 1.2/1.3 on ZeroMQ") || !strings.Contains(help, "(drop-in for the C++ server)\n\nusage of tlsserver:\n") {
		t.Errorf("-h does not start with what tlsserver does:\n%s", help)
	}
	for _, re := range []string{`(?m)^exit status:$`, `(?m)^  0    stopped by SIGINT or SIGTERM`, `(?m)^  2    usage`, `(?m)^  3    TLS failure`} {
		if !regexp.MustCompile(re).MatchString(help) {
			t.Errorf("-h does not match %s:\n%s", re, help)
		}
	}
	for _, f := range []string{"-version", "-endpoint", "-connect", "-cert", "-key", "-ca", "-verify", "-min", "-max", "-ciphers",
		"-suites", "-groups", "-seclevel", "-fips", "-no-tickets", "-max-sessions", "-handshake-timeout", "-idle-timeout", "-v",
		"-max-half-open", "-max-parts", "-max-messages-per-frame", "-max-envelope", "-max-pending-output",
		"-max-key-updates", "-max-records", "-max-message"} {
		if !regexp.MustCompile(`(?m)^  ` + f + `\s`).MatchString(stderr.String()) {
			t.Errorf("-h does not document %s", f)
		}
	}
}

// The budget flags reach the server: with -max-parts 2, a message of two parts is answered and
// one of three ends the session, with the reason in the log.
func TestBudgetFlags(t *testing.T) {
	endpoint := fmt.Sprintf("tcp://127.0.0.1:%d", cmdtest.FreePort(t))
	stderr, _ := startServer(t, "-endpoint", endpoint, "-q", "-max-parts", "2",
		"-cert", "../../testdata/certs/server.crt", "-key", "../../testdata/certs/server.key")
	ctx := context.Background()
	tctx, err := tlszmq.NewContext(tlszmq.RoleClient, &tlszmq.Config{CAFile: "../../testdata/certs/ca.crt", ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer tctx.Close()
	c, err := tlszmq.NewClient(tctx, endpoint, &tlszmq.ClientOptions{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Request(ctx, []byte("a"), []byte("b")); err != nil {
		t.Fatalf("two parts: %v", err)
	}
	if _, err := c.Request(ctx, []byte("a"), []byte("b"), []byte("c")); err == nil {
		t.Fatal("three parts were answered past -max-parts 2")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !regexp.MustCompile(`(?m)^tlsserver: time=.*budget exceeded: a message of more than 2 parts \(MaxParts\)`).MatchString(stderr.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line names the budget; stderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := cli.Exit("tlsserver", run(context.Background(), []string{"-version"}, &stdout, &stderr), &stdout, &stderr)
	if code != 0 || stderr.Len() != 0 || !regexp.MustCompile(`^tlsserver 0\.9\.0 \(libzmq \d+\.\d+\.\d+, go1\.[^)]+\)\n$`).MatchString(stdout.String()) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

// What is wrong says what to do: a missing server.crt names -cert, -key and tlszmq keygen; a
// malformed endpoint what an endpoint is; a legacy certificate the -seclevel that takes it
// (exit status 3: OpenSSL refused it).
func TestErrorsSayWhatToDo(t *testing.T) {
	t.Chdir(t.TempDir())
	certs := filepath.Join(cmdtest.Root(), "testdata", "certs")
	for _, c := range []struct {
		args []string
		code int
		want []string
	}{
		{nil, 2, []string{"tlsserver: server.crt: no such file or directory; give the certificate and its key with -cert and -key, or make them with tlszmq keygen"}},
		{[]string{"-endpoint", "foo"}, 2, []string{`tlsserver: -endpoint "foo": not a ZeroMQ endpoint: want tcp://host:port, ipc://path or inproc://name`}},
		{[]string{"-endpoint", "tcp://*:99999"}, 2, []string{"port 99999 is out of range: want 1 to 65535, or * for any free port"}},
		{[]string{"-endpoint", "ipc://" + filepath.Join(t.TempDir(), "x.ipc"), "-cert", filepath.Join(certs, "legacy.crt"), "-key", filepath.Join(certs, "legacy.key")},
			3, []string{"tlsserver: tlszmq: loading the certificate file ", "legacy.crt: SSL routines: ee key too small (a legacy certificate: -seclevel 1 accepts"}},
		{[]string{"-endpoint", "ipc://" + filepath.Join(t.TempDir(), "x.ipc"), "-cert", filepath.Join(certs, "fork-server.crt"), "-key", filepath.Join(certs, "fork-server.key"), "-seclevel", "1"},
			3, []string{"tlsserver: warning: OpenSSL security level lowered to 1", "ca md too weak (-seclevel 0 accepts"}},
	} {
		var stdout, stderr bytes.Buffer
		code := cli.Exit("tlsserver", run(context.Background(), c.args, &stdout, &stderr), &stdout, &stderr)
		if code != c.code {
			t.Errorf("%q: exit %d, want %d: %s", c.args, code, c.code, stderr.String())
		}
		for _, w := range c.want {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("%q: stderr %q does not say %q", c.args, stderr.String(), w)
			}
		}
		for _, line := range strings.SplitAfter(strings.TrimSuffix(stderr.String(), "\n"), "\n") {
			if !strings.HasPrefix(line, "tlsserver: ") {
				t.Errorf("%q: a line without the prefix: %q", c.args, line)
			}
		}
	}
}
