package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/tlszmq/tlszmq/internal/cli"
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
		"-suites", "-groups", "-seclevel", "-fips", "-no-tickets", "-max-sessions", "-handshake-timeout", "-idle-timeout", "-v"} {
		if !regexp.MustCompile(`(?m)^  ` + f + `\s`).MatchString(stderr.String()) {
			t.Errorf("-h does not document %s", f)
		}
	}
}
