package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cli"
	"github.com/tlszmq/tlszmq/internal/cmdtest"
)

// -allow and -deny reach the server: a client from 127.0.0.1 is answered, one whose
// connection comes from 127.0.0.2 is refused (its request times out) and the log names it.
func TestAllowDenyFlags(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		list string
	}{
		{"allow", []string{"-allow", "192.0.2.1, 127.0.0.1", "-allow", "::1"}, "allow"},
		{"deny", []string{"-deny", "10.0.0.0/8", "-deny", "127.0.0.2/32,2001:db8::/32"}, "deny"},
	} {
		t.Run(c.name, func(t *testing.T) {
			endpoint := fmt.Sprintf("tcp://127.0.0.1:%d", cmdtest.FreePort(t))
			stderr, _ := startServer(t, append([]string{"-endpoint", endpoint, "-q",
				"-cert", "../../testdata/certs/server.crt", "-key", "../../testdata/certs/server.key"}, c.args...)...)
			cctx := cmdtest.Context(t, tlszmq.RoleClient, &tlszmq.Config{CAFile: "../../testdata/certs/ca.crt", ServerName: "localhost"})
			ask := func(source string, timeout time.Duration) error {
				_, err := cmdtest.RequestFrom(t, cctx, source, endpoint, timeout)
				return err
			}
			if err := ask("127.0.0.1", 10*time.Second); err != nil {
				t.Fatalf("a client from 127.0.0.1: %v; stderr:\n%s", err, stderr.String())
			}
			if err := ask("127.0.0.2", 500*time.Millisecond); !errors.Is(err, tlszmq.ErrTimeout) {
				t.Fatalf("a client from 127.0.0.2: %v, want a timeout (refused)", err)
			}
			cmdtest.WantRefused(t, stderr, "tlsserver", c.list)
		})
	}
}

// A bad entry is bad use, naming it, before anything is bound; -h documents the flags.
func TestAllowDenyBadUse(t *testing.T) {
	for _, args := range [][]string{{"-allow", "127.0.0.1,bogus"}, {"-deny", "10.0.0.0/40"}, {"-deny", "fe80::1%lo"}, {"-allow", ""}, {"-deny", " , "}} {
		var stdout, stderr bytes.Buffer
		code := cli.Exit("tlsserver", run(context.Background(), args, &stdout, &stderr), &stdout, &stderr)
		bad := args[1][strings.LastIndexByte(args[1], ',')+1:]
		if code != 2 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), bad) {
			t.Errorf("%q: exit %d, stderr %q: want 2 and one line naming %q", args, code, stderr.String(), bad)
		}
	}
	var stdout, stderr bytes.Buffer
	cli.Exit("tlsserver", run(context.Background(), []string{"-h"}, &stdout, &stderr), &stdout, &stderr)
	for _, f := range []string{"-allow", "-deny"} {
		if !regexp.MustCompile(`(?m)^  ` + f + ` addresses\n\s+\S`).MatchString(stderr.String()) {
			t.Errorf("-h does not document %s:\n%s", f, stderr.String())
		}
	}
}
