package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq/internal/cli"
)

func certFile(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "certs", name)
}

func TestHelpListsEveryFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := cli.Exit("tlsdevice", run(context.Background(), []string{"-h"}, &stdout, &stderr), &stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
	help := stderr.String()
	for _, f := range []string{"-mode", "-frontend", "-backend", "-upstream", "-pin", "-max-clients", "-max-clients-per-conn",
		"-max-backends", "-max-envelope", "-max-pending", "-max-pending-per-client", "-max-sessions", "-idle", "-timeout", "-v"} {
		if !regexp.MustCompile(`(?m)^  ` + f + `\s`).MatchString(help) {
			t.Errorf("-h does not document %s", f)
		}
	}
	for _, want := range []string{"tcp://127.0.0.1:5555 in terminate mode", "tcp://*:5555 in pass mode", "originate mode tcp://127.0.0.1:5556",
		"(default 64)", "(default 100000)", "(default 1000)", "(default 256)", "(default 16)", "(default 500)", "(default 5m0s)", "(default 10s)"} {
		if !strings.Contains(help, want) {
			t.Errorf("-h does not say %q", want)
		}
	}
}

func TestBadLimits(t *testing.T) {
	for _, args := range [][]string{{"-max-pending", "0"}, {"-max-pending-per-client", "-1"}, {"-max-envelope", "0"},
		{"-max-clients-per-conn", "0"}, {"-max-backends", "0"}, {"-max-sessions", "0"}, {"-idle", "0s"}, {"-timeout", "-1s"}} {
		var stdout, stderr bytes.Buffer
		code := cli.Exit("tlsdevice", run(context.Background(), args, &stdout, &stderr), &stderr)
		if code != 2 || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line", args, code, stderr.String())
		}
	}
}

// netnsEnv marks the copy of the test binary that runs in a network namespace of its own.
const netnsEnv = "TLSDEVICE_TEST_NETNS"

// The default endpoints, bound for real on their fixed ports in a private network namespace
// whose loopback interface also holds 10.9.9.9, an address that is not loopback's: pass mode
// binds every address, as the C++ device does; terminate mode binds its plaintext backend to
// 127.0.0.1 only, and originate mode its plaintext frontend.
func TestDefaultEndpoints(t *testing.T) {
	if os.Getenv(netnsEnv) == "" {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := exec.LookPath("unshare"); err != nil {
			t.Fatal("unshare(1) is not installed: no private network namespace for fixed ports (Debian util-linux)")
		}
		cmd := exec.Command("unshare", "-rn", "sh", "-c", `ip link set lo up && ip addr add 10.9.9.9/32 dev lo && exec "$0" "$@"`,
			exe, "-test.run=^TestDefaultEndpoints$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), netnsEnv+"=1")
		out, err := cmd.CombinedOutput()
		if bytes.Contains(out, []byte("unshare failed")) {
			t.Fatalf("no private network namespace here (unshare -rn must work): %s", out)
		}
		if err != nil || !bytes.Contains(out, []byte("--- PASS: TestDefaultEndpoints")) {
			t.Fatalf("in a private network namespace: %v\n%s", err, out)
		}
		t.Logf("in a private network namespace:\n%s", out)
		return
	}
	reachable := func(addr string) bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	tls := []string{"-cert", certFile("server.crt"), "-key", certFile("server.key"), "-ca", certFile("ca.crt")}
	for _, c := range []struct {
		mode                   string
		frontOutside, backSeen bool // reachable at 10.9.9.9
		back                   bool // binds a backend
	}{
		{"pass", true, true, true},
		{"terminate", true, false, true},
		{"originate", false, false, false},
	} {
		t.Run(c.mode, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			var stdout, stderr bytes.Buffer
			go func() { done <- run(ctx, append([]string{"-mode", c.mode}, tls...), &stdout, &stderr) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("tlsdevice -mode %s: %v\n%s", c.mode, err, stderr.String())
				}
				// ZeroMQ closes its listeners on its own thread, a little later.
				for deadline := time.Now().Add(5 * time.Second); reachable("127.0.0.1:5556") || reachable("127.0.0.1:5555"); time.Sleep(20 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatal("the ports are still bound after the device stopped")
					}
				}
			}()
			for deadline := time.Now().Add(5 * time.Second); !reachable("127.0.0.1:5556"); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("nothing listens on 127.0.0.1:5556")
				}
			}
			if got := reachable("10.9.9.9:5556"); got != c.frontOutside {
				t.Errorf("frontend reachable from outside loopback: %v, want %v", got, c.frontOutside)
			}
			if got := reachable("127.0.0.1:5555"); got != c.back {
				t.Errorf("backend on 127.0.0.1: %v, want %v", got, c.back)
			}
			if got := reachable("10.9.9.9:5555"); got != c.backSeen {
				t.Errorf("backend reachable from outside loopback: %v, want %v", got, c.backSeen)
			}
		})
	}
}

func TestEndpointsByMode(t *testing.T) {
	for _, c := range []struct{ mode, front, back string }{
		{"pass", "tcp://*:5556", "tcp://*:5555"},
		{"terminate", "tcp://*:5556", "tcp://127.0.0.1:5555"},
		{"originate", "tcp://127.0.0.1:5556", "tcp://*:5555"},
	} {
		if f, b := endpoints(c.mode, "", ""); f != c.front || b != c.back {
			t.Errorf("%s: %s, %s; want %s, %s", c.mode, f, b, c.front, c.back)
		}
	}
	if f, b := endpoints("terminate", "tcp://a:1", "tcp://b:2"); f != "tcp://a:1" || b != "tcp://b:2" {
		t.Errorf("given endpoints changed: %s, %s", f, b)
	}
}
