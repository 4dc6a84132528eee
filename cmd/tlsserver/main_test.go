package main

import (
	"bytes"
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cli"
	"github.com/tlszmq/tlszmq/internal/syncbuf"
)

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
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := cli.Exit("tlsserver", run(context.Background(), args, &stdout, &stderr), &stderr)
			if code != 2 || strings.Count(stderr.String(), "\n") != 1 || !strings.HasPrefix(stderr.String(), "tlsserver: ") {
				t.Fatalf("exit %d, stderr %q: want 2 and one line", code, stderr.String())
			}
		})
	}
}

func TestHelpListsEveryFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := cli.Exit("tlsserver", run(context.Background(), []string{"-h"}, &stdout, &stderr), &stderr)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, f := range []string{"-endpoint", "-connect", "-cert", "-key", "-ca", "-verify", "-min", "-max", "-ciphers",
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "tcp://" + ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout bytes.Buffer
	stderr := &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-endpoint", endpoint, "-q", "-max-parts", "2",
			"-cert", "../../testdata/certs/server.crt", "-key", "../../testdata/certs/server.key"}, &stdout, stderr)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
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
	for !strings.Contains(stderr.String(), "budget exceeded: a message of more than 2 parts (MaxParts)") {
		if time.Now().After(deadline) {
			t.Fatalf("no log line names the budget; stderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
