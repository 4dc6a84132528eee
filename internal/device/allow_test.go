package device

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cmdtest"
	"github.com/tlszmq/tlszmq/internal/syncbuf"
	"github.com/tlszmq/tlszmq/internal/waitfor"
	"github.com/tlszmq/tlszmq/internal/zapauth"
)

// These tests put Limits.Allow and Deny on a device's client-facing socket and connect
// clients from 127.0.0.1 and 127.0.0.2 (cmdtest.RequestFrom, PlainRequestFrom).

// wantRefusalLogged waits for the device's WARN line refusing source by list.
func wantRefusalLogged(t *testing.T, logs *syncbuf.Buffer, endpoint, source, list string) {
	t.Helper()
	re := regexp.MustCompile(`(?m)level=WARN msg="tlszmq: connection refused" server=` + regexp.QuoteMeta(endpoint) +
		` address=` + regexp.QuoteMeta(source) + ` list=` + list + ` `)
	waitfor.Cond(t, func() bool { return re.MatchString(logs.String()) }, "the refusal of "+source+" in the log")
}

// A pass-mode device (with and without -pin) in front of a server: a TLS client from
// 127.0.0.1 is answered, one from 127.0.0.2 gets nothing; the refusal is counted and logged
// by the device.
func TestPassThroughAllowDeny(t *testing.T) {
	for _, c := range []struct {
		name        string
		pin         bool
		allow, deny []string
		list        string
	}{
		{"allow", false, []string{"127.0.0.1"}, nil, "allow"},
		{"deny", false, nil, []string{"127.0.0.2"}, "deny"},
		{"pin allow", true, []string{"10.0.0.0/8", "127.0.0.0/31"}, nil, "allow"},
		{"pin deny wins", true, []string{"127.0.0.0/8"}, []string{"127.0.0.2/32"}, "deny"},
	} {
		t.Run(c.name, func(t *testing.T) {
			logs := &syncbuf.Buffer{}
			d, err := NewPassThroughLimits("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", c.pin,
				Limits{Allow: c.allow, Deny: c.deny}, slog.New(slog.NewTextHandler(logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			front, back := d.Endpoints()
			cmdtest.Serve(t, d.Run)
			runConnected(t, serverTLS(t), back, named("S"))
			if c.pin {
				waitfor.Cond(t, func() bool { return d.Backends() == 1 }, "the server to announce itself")
			}
			cctx := clientTLS(t)
			if _, err := cmdtest.RequestFrom(t, cctx, "127.0.0.1", front, 10*time.Second); err != nil {
				t.Fatalf("a client from 127.0.0.1: %v\n%s", err, logs.String())
			}
			if _, err := cmdtest.RequestFrom(t, cctx, "127.0.0.2", front, 500*time.Millisecond); !errors.Is(err, tlszmq.ErrTimeout) {
				t.Fatalf("a client from 127.0.0.2: %v, want a timeout (refused)", err)
			}
			waitfor.Cond(t, func() bool { return d.Refused() > 0 }, "the refusal to be counted")
			wantRefusalLogged(t, logs, front, "127.0.0.2", c.list)
			if strings.Contains(logs.String(), "address=127.0.0.1 ") {
				t.Errorf("127.0.0.1 refused:\n%s", logs.String())
			}
		})
	}
}

// An originate-mode device's plaintext frontend takes the lists too: a plaintext client from
// 127.0.0.2 reaches nothing upstream.
func TestOriginateAllow(t *testing.T) {
	srv, err := tlszmq.NewServer(serverTLS(t), "tcp://127.0.0.1:*", func(_ context.Context, _ *tlszmq.Peer, req [][]byte) ([][]byte, error) {
		return req, nil
	}, &tlszmq.ServerOptions{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	cmdtest.Serve(t, srv.Serve)
	logs := &syncbuf.Buffer{}
	d, err := NewOriginate(clientTLS(t), "tcp://127.0.0.1:*", srv.Endpoint(), Limits{Allow: []string{"127.0.0.1"}, Timeout: 5 * time.Second},
		slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	cmdtest.Serve(t, d.Run)
	if !cmdtest.PlainRequestFrom(t, "127.0.0.1", d.Endpoint(), 10*time.Second) {
		t.Fatalf("a client from 127.0.0.1 was not answered\n%s", logs.String())
	}
	if cmdtest.PlainRequestFrom(t, "127.0.0.2", d.Endpoint(), 500*time.Millisecond) {
		t.Fatal("a client from 127.0.0.2 was answered, past -allow")
	}
	waitfor.Cond(t, func() bool { return d.Refused() > 0 }, "the refusal to be counted")
	wantRefusalLogged(t, logs, d.Endpoint(), "127.0.0.2", "allow")
	if n := srv.Stats().HandshakesDone; n != 1 {
		t.Errorf("%d upstream handshakes, want 1: the refused client never reaches upstream", n)
	}
}

// A terminate-mode device hands Limits.Allow and Deny to its TLS server, beside the
// ServerOptions' own.
func TestTerminateLimitsDeny(t *testing.T) {
	d, err := NewTerminate(serverTLS(t), "tcp://127.0.0.1:*", "tcp://127.0.0.1:*",
		tlszmq.ServerOptions{Logger: quiet(), Deny: []string{"192.0.2.1"}}, Limits{Deny: []string{"127.0.0.2"}})
	if err != nil {
		t.Fatal(err)
	}
	front, back := d.Endpoints()
	cmdtest.Serve(t, d.Run)
	cmdtest.Serve(t, func(ctx context.Context) error {
		return RunWorker(ctx, back, func(_ []byte, _ string, req [][]byte) [][]byte { return req })
	})
	waitfor.Cond(t, func() bool { return d.Workers() == 1 }, "the worker to announce itself")
	cctx := clientTLS(t)
	if _, err := cmdtest.RequestFrom(t, cctx, "127.0.0.1", front, 10*time.Second); err != nil {
		t.Fatalf("a client from 127.0.0.1: %v", err)
	}
	if _, err := cmdtest.RequestFrom(t, cctx, "127.0.0.2", front, 500*time.Millisecond); !errors.Is(err, tlszmq.ErrTimeout) {
		t.Fatalf("a client from 127.0.0.2: %v, want a timeout (refused)", err)
	}
	waitfor.Cond(t, func() bool { return d.Server().Counters().RefusedByList["deny"] > 0 }, "the refusal to be counted by the server")
}

// A bad entry fails the constructor, naming it; nothing stays bound or registered.
func TestAllowDenyBadEntry(t *testing.T) {
	_, err := NewPassThroughLimits("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", false, Limits{Allow: []string{"127.0.0.1", "bogus"}}, quiet())
	if err == nil || err.Error() != `device: Limits.Allow: "bogus" is not an IP address or CIDR prefix` {
		t.Errorf("pass: %v", err)
	}
	_, err = NewOriginate(clientTLS(t), "tcp://127.0.0.1:*", "tcp://127.0.0.1:1", Limits{Deny: []string{"10.0.0.0/33"}}, quiet())
	if err == nil || err.Error() != `device: Limits.Deny: "10.0.0.0/33" is not an IP address or CIDR prefix` {
		t.Errorf("originate: %v", err)
	}
	if zapauth.Running() {
		t.Error("a ZAP handler runs")
	}
}

// The policy goes with the device: once Run has returned, no ZAP handler is left running; a
// constructor that fails after attaching its policy releases it.
func TestAllowReleasedAfterRun(t *testing.T) {
	for _, pin := range []bool{false, true} {
		d, err := NewPassThroughLimits("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", pin, Limits{Deny: []string{"192.0.2.1"}}, quiet())
		if err != nil {
			t.Fatal(err)
		}
		if !zapauth.Running() {
			t.Fatal("no ZAP handler with a device's lists")
		}
		_, back := d.Endpoints()
		// Its backend taken, a second device fails after its frontend's policy was attached.
		if _, err := NewPassThroughLimits("tcp://127.0.0.1:*", back, pin, Limits{Allow: []string{"127.0.0.1"}}, quiet()); err == nil {
			t.Fatal("a second device bound the same backend")
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if zapauth.Running() {
			t.Fatalf("pin %v: the ZAP handler runs after Run returned", pin)
		}
	}
}
