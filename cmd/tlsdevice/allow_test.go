package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cli"
	"github.com/tlszmq/tlszmq/internal/cmdtest"
	"github.com/tlszmq/tlszmq/internal/syncbuf"
)

// startDevice runs tlsdevice with args until the test ends, and returns its stderr.
func startDevice(t *testing.T, args []string) *syncbuf.Buffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout bytes.Buffer
	stderr := &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, &stdout, stderr) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("tlsdevice %q: %v\n%s", args, err, stderr.String())
		}
	})
	return stderr
}

// -allow and -deny in pass mode, on the TLS clients' frontend, with and without -pin: in front
// of a server, a client from 127.0.0.1 is answered, one whose connection comes from 127.0.0.2
// gets no answer, and the device logs the refusal.
func TestAllowDenyPass(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		list string
	}{
		{"allow", []string{"-allow", "192.0.2.1, 127.0.0.1", "-allow", "::1"}, "allow"},
		{"deny", []string{"-deny", "10.0.0.0/8", "-deny", "127.0.0.2/32,2001:db8::/32"}, "deny"},
		{"pin allow", []string{"-pin", "-allow", "127.0.0.1"}, "allow"},
	} {
		t.Run(c.name, func(t *testing.T) {
			front := fmt.Sprintf("tcp://127.0.0.1:%d", cmdtest.FreePort(t))
			back := fmt.Sprintf("tcp://127.0.0.1:%d", cmdtest.FreePort(t))
			stderr := startDevice(t, append([]string{"-frontend", front, "-backend", back}, c.args...))
			sctx := cmdtest.Context(t, tlszmq.RoleServer, &tlszmq.Config{CertFile: certFile("server.crt"), KeyFile: certFile("server.key")})
			srv, err := tlszmq.NewServer(sctx, back, func(_ context.Context, _ *tlszmq.Peer, req [][]byte) ([][]byte, error) {
				return req, nil
			}, &tlszmq.ServerOptions{Connect: true})
			if err != nil {
				t.Fatal(err)
			}
			cmdtest.Serve(t, srv.Serve)
			cctx := cmdtest.Context(t, tlszmq.RoleClient, &tlszmq.Config{CAFile: certFile("ca.crt"), ServerName: "localhost"})
			ask := func(source string, timeout time.Duration) error {
				got, err := cmdtest.RequestFrom(t, cctx, source, front, timeout)
				if err == nil && (len(got) != 1 || string(got[0]) != "hello") {
					t.Fatalf("from %s: got %q", source, got)
				}
				return err
			}
			// With -pin the server may not have announced itself yet: the first request waits
			// out the device's drop, so a long timeout and a retry.
			var err1 error
			for range 3 {
				if err1 = ask("127.0.0.1", 5*time.Second); err1 == nil {
					break
				}
			}
			if err1 != nil {
				t.Fatalf("a client from 127.0.0.1: %v; stderr:\n%s", err1, stderr.String())
			}
			if err := ask("127.0.0.2", 500*time.Millisecond); !errors.Is(err, tlszmq.ErrTimeout) {
				t.Fatalf("a client from 127.0.0.2: %v, want a timeout (refused)", err)
			}
			cmdtest.WantRefused(t, stderr, "tlsdevice", c.list)
		})
	}
}

// -deny in originate mode, on the plaintext clients' frontend: a plaintext client from
// 127.0.0.2 reaches nothing upstream.
func TestAllowDenyOriginate(t *testing.T) {
	sctx := cmdtest.Context(t, tlszmq.RoleServer, &tlszmq.Config{CertFile: certFile("server.crt"), KeyFile: certFile("server.key")})
	srv, err := tlszmq.NewServer(sctx, "tcp://127.0.0.1:*", func(_ context.Context, _ *tlszmq.Peer, req [][]byte) ([][]byte, error) {
		return req, nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cmdtest.Serve(t, srv.Serve)
	front := fmt.Sprintf("tcp://127.0.0.1:%d", cmdtest.FreePort(t))
	stderr := startDevice(t, []string{"-mode", "originate", "-frontend", front, "-upstream", srv.Endpoint(),
		"-ca", certFile("ca.crt"), "-deny", "127.0.0.2"})
	if !cmdtest.PlainRequestFrom(t, "127.0.0.1", front, 10*time.Second) {
		t.Fatalf("a client from 127.0.0.1 was not answered; stderr:\n%s", stderr.String())
	}
	if cmdtest.PlainRequestFrom(t, "127.0.0.2", front, 500*time.Millisecond) {
		t.Fatal("a client from 127.0.0.2 was answered, past -deny")
	}
	cmdtest.WantRefused(t, stderr, "tlsdevice", "deny")
}

// A bad entry is bad use in every mode, naming it, before anything is bound.
func TestAllowDenyBadUse(t *testing.T) {
	for _, args := range [][]string{{"-allow", "127.0.0.1,bogus"}, {"-mode", "originate", "-deny", "10.0.0.0/40"},
		{"-mode", "terminate", "-deny", "fe80::1%lo"}} {
		var stdout, stderr bytes.Buffer
		code := cli.Exit("tlsdevice", run(context.Background(), args, &stdout, &stderr), &stdout, &stderr)
		v := args[len(args)-1]
		bad := v[strings.LastIndexByte(v, ',')+1:]
		if code != 2 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), bad) {
			t.Errorf("%q: exit %d, stderr %q: want 2 and one line naming %q", args, code, stderr.String(), bad)
		}
	}
}
