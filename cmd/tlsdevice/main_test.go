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
	"syscall"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq/internal/cli"
	"github.com/tlszmq/tlszmq/internal/cmdtest"
	"github.com/tlszmq/tlszmq/internal/syncbuf"
)

func certFile(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "certs", name)
}

func TestHelpListsEveryFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := cli.Exit("tlsdevice", run(context.Background(), []string{"-h"}, &stdout, &stderr), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
	help := stderr.String()
	if !strings.HasPrefix(help, "tlsdevice: forwards TLSZMQ traffic between clients and servers on ZeroMQ") || !strings.Contains(help, "\n\nusage of tlsdevice:\n") {
		t.Errorf("-h does not start with what tlsdevice does:\n%s", help)
	}
	for _, re := range []string{`(?m)^exit status:$`, `(?m)^  0    stopped by SIGINT or SIGTERM$`, `(?m)^  2    usage`, `(?m)^  3    TLS failure`} {
		if !regexp.MustCompile(re).MatchString(help) {
			t.Errorf("-h does not match %s:\n%s", re, help)
		}
	}
	for _, f := range []string{"-version", "-mode", "-frontend", "-backend", "-upstream", "-pin", "-max-clients", "-max-clients-per-conn",
		"-max-backends", "-max-envelope", "-max-pending", "-max-pending-per-client", "-max-sessions", "-idle", "-timeout", "-v", "-allow", "-deny"} {
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
		{"-max-clients-per-conn", "0"}, {"-max-backends", "0"}, {"-max-sessions", "0"}, {"-idle", "0s"}, {"-timeout", "-1s"},
		{"-mode", "bogus"}, {"-frontend", "tcp://*:99999"}, {"-backend", "foo"}, {"-mode", "originate", "-upstream", "tcp://*:5557"},
		{"-mode", "terminate", "-backend", "tcp://127.0.0.1:0"}} {
		var stdout, stderr bytes.Buffer
		code := cli.Exit("tlsdevice", run(context.Background(), args, &stdout, &stderr), &stdout, &stderr)
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

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := cli.Exit("tlsdevice", run(context.Background(), []string{"-version"}, &stdout, &stderr), &stdout, &stderr)
	if code != 0 || stderr.Len() != 0 || !regexp.MustCompile(`^tlsdevice 0\.9\.0 \(libzmq \d+\.\d+\.\d+, go1\.[^)]+\)\n$`).MatchString(stdout.String()) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

// The C++ device prints nothing on stdout, and neither does tlsdevice, in any mode, even with
// -v: its start-up line, log lines and trace go to stderr, each line "tlsdevice: ...".
func TestNothingOnStdout(t *testing.T) {
	tls := []string{"-cert", certFile("server.crt"), "-key", certFile("server.key")}
	for _, c := range []struct {
		mode  string
		extra []string
		line  string
	}{
		{"pass", nil, "tlsdevice: clients at ipc://"},
		{"pass", []string{"-pin"}, "tlsdevice: clients at ipc://"},
		{"terminate", append([]string{"-v"}, tls...), "tlsdevice: TLS clients at ipc://"},
		{"originate", []string{"-v"}, "tlsdevice: plaintext clients at ipc://"},
	} {
		dir := t.TempDir()
		args := append([]string{"-mode", c.mode, "-frontend", "ipc://" + filepath.Join(dir, "front.ipc"), "-backend", "ipc://" + filepath.Join(dir, "back.ipc"),
			"-upstream", "ipc://" + filepath.Join(dir, "up.ipc")}, c.extra...)
		ctx, cancel := context.WithCancel(context.Background())
		var stdout bytes.Buffer
		stderr := &syncbuf.Buffer{}
		done := make(chan error, 1)
		go func() { done <- run(ctx, args, &stdout, stderr) }()
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(stderr.String(), c.line); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no start-up line on stderr: %q", c.mode, stderr.String())
			}
		}
		cancel()
		if code := cli.Exit("tlsdevice", <-done, &stdout, stderr); code != 0 || stdout.Len() != 0 {
			t.Errorf("%v: exit %d, stdout %q: want 0 and nothing", args, code, stdout.String())
		}
		for _, line := range strings.SplitAfter(strings.TrimSuffix(stderr.String(), "\n"), "\n") {
			if !strings.HasPrefix(line, "tlsdevice: ") {
				t.Errorf("%s: a line on stderr without the prefix: %q", c.mode, line)
			}
		}
	}

	// The built command, as a C++ deployment runs it.
	dir := t.TempDir()
	dev := exec.Command(cmdtest.Build(t, "tlsdevice"), "-frontend", "ipc://"+filepath.Join(dir, "front.ipc"), "-backend", "ipc://"+filepath.Join(dir, "back.ipc"))
	var stdout bytes.Buffer
	stderr := &syncbuf.Buffer{}
	dev.Stdout, dev.Stderr = &stdout, stderr
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(stderr.String(), "tlsdevice: clients at"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			dev.Process.Kill()
			dev.Wait()
			t.Fatalf("no start-up line on stderr: %q", stderr.String())
		}
	}
	dev.Process.Signal(syscall.SIGINT)
	if err := dev.Wait(); err != nil || stdout.Len() != 0 {
		t.Fatalf("tlsdevice: %v, stdout %q: want exit status 0 and nothing on stdout", err, stdout.String())
	}
}
