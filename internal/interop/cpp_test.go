// Package interop proves that tlszmq speaks with peers it does not share code with: the C++
// TLSZMQ test peer in testdata/cpp, which behaves on the wire as the deployed C++
// implementations do, defects included.
package interop

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cmdtest"
	"github.com/tlszmq/tlszmq/internal/device"
	"github.com/tlszmq/tlszmq/internal/syncbuf"
)

func cert(name string) string { return filepath.Join(cmdtest.Root(), "testdata", "certs", name) }

// cppPeer returns the C++ peer, built once.
func cppPeer(t *testing.T) string { return cmdtest.CppPeer(t) }

// output collects a process's output; exec copies it from a pipe on a goroutine of its own.
type output struct{ syncbuf.Buffer }

// waitFor waits up to 5 s for the output to contain want n times.
func (o *output) waitFor(want string, n int) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Count(o.String(), want) >= n {
			return true
		}
	}
	return false
}

// start runs the C++ peer until the test ends.
func start(t *testing.T, args ...string) *output {
	cmd := exec.Command(cppPeer(t), args...)
	out := &output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return out
}

// run runs the C++ peer to its end and returns its output.
func run(t *testing.T, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cppPeer(t), args...).CombinedOutput()
	return string(out), err
}

// A cell of the matrix: who serves, which C++ behaviour, TLS version, path, certificates.
type cell struct {
	goClient bool   // Go client → C++ server; else C++ client → Go server
	variant  string // original or fork
	tls      string // 1.2 or 1.3
	path     string // direct, cpp-device or go-device
	certs    string // modern, legacy (the original's 1024-bit SHA-1) or fork (the fork's)
	// noTickets runs the original C++ server without session tickets: it answers nothing to
	// the Go client's Finished, and glues the half-sent envelope to its next reply.
	noTickets bool
}

func (c cell) name() string {
	dir := "cpp-client→go-server"
	if c.goClient {
		dir = "go-client→cpp-server"
	}
	name := fmt.Sprintf("%s/%s/TLS%s/%s/%s-certs", dir, c.variant, c.tls, c.path, c.certs)
	if c.noTickets {
		name += "/no-tickets"
	}
	return name
}

// serverFiles returns the server's certificate, key, the CA that verifies it and the
// security level they need.
func (c cell) serverFiles() (crt, key, ca string, level int) {
	switch c.certs {
	case "legacy":
		return cert("legacy.crt"), cert("legacy.key"), cert("legacy.crt"), 1
	case "fork":
		return cert("fork-server.crt"), cert("fork-server.key"), cert("fork-ca.crt"), 0
	}
	return cert("server.crt"), cert("server.key"), cert("ca.crt"), -1
}

// clientFiles returns the fork client's certificate and key (the original has none).
func (c cell) clientFiles() (crt, key string) {
	if c.certs == "fork" {
		return cert("fork-client.crt"), cert("fork-client.key")
	}
	return cert("client.crt"), cert("client.key")
}

func goLevel(level int) int {
	switch level {
	case -1:
		return 0
	case 0:
		return tlszmq.SecurityLevelZero
	}
	return level
}

func cells() []cell {
	var out []cell
	for _, goClient := range []bool{true, false} {
		for _, path := range []string{"direct", "cpp-device", "go-device"} {
			for _, tls := range []string{"1.2", "1.3"} {
				for _, certs := range []string{"modern", "legacy"} {
					out = append(out, cell{goClient, "original", tls, path, certs, false})
				}
			}
			// The fork speaks TLS 1.2 only, always with a client certificate.
			for _, certs := range []string{"modern", "fork"} {
				out = append(out, cell{goClient, "fork", "1.2", path, certs, false})
			}
			if goClient {
				out = append(out, cell{goClient, "original", "1.3", path, "modern", true})
			}
		}
	}
	return out
}

func TestCppMatrix(t *testing.T) {
	for _, c := range cells() {
		t.Run(c.name(), func(t *testing.T) { runCell(t, c) })
	}
}

func runCell(t *testing.T, c cell) {
	dir := t.TempDir()
	front := "ipc://" + filepath.Join(dir, "front.ipc")
	back := "ipc://" + filepath.Join(dir, "back.ipc")
	serverEP, clientEP, connect := front, front, false
	switch c.path {
	case "cpp-device":
		start(t, "--mode", "device", "--frontend", front, "--backend", back)
		serverEP, connect = back, true
	case "go-device":
		d, err := device.NewPassThrough(front, back, false, 0, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		cmdtest.Serve(t, d.Run)
		serverEP, connect = back, true
	}
	crt, key, ca, level := c.serverFiles()
	ccrt, ckey := c.clientFiles()
	fork := c.variant == "fork"
	if c.goClient {
		args := []string{"--mode", "server", "--variant", c.variant, "--endpoint", serverEP, "--tls", c.tls,
			"--cert", crt, "--key", key, "--seclevel", fmt.Sprint(level)}
		if fork {
			args = append(args, "--ca", ca)
		}
		if connect {
			args = append(args, "--connect")
		}
		if c.noTickets {
			args = append(args, "--no-tickets")
		}
		out := start(t, args...)
		cfg := &tlszmq.Config{CAFile: ca, SecurityLevel: goLevel(level), MinVersion: tlsVersion(c.tls), MaxVersion: tlsVersion(c.tls)}
		cfg.ServerName = "localhost"
		if c.certs == "fork" {
			cfg.ServerName = "fork-server"
		}
		opts := &tlszmq.ClientOptions{Timeout: 10 * time.Second, FinishedWait: 300 * time.Millisecond}
		if fork {
			cfg.CertFile, cfg.KeyFile = ccrt, ckey
			opts.Identity = "client2"
		}
		cl, err := tlszmq.NewClient(cmdtest.Context(t, tlszmq.RoleClient, cfg), clientEP, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		for i := range 2 {
			reply, err := cl.Request(ctx, []byte("hello world!"))
			if err != nil {
				t.Fatalf("request %d: %v\nC++ server:\n%s", i, err, out)
			}
			if len(reply) != 1 || string(reply[0]) != "Got it!\x00" {
				t.Fatalf("request %d: reply %q", i, reply)
			}
		}
		st := cl.ConnectionState()
		if !st.Verified || tlszmq.VersionName(st.Version) != "TLS "+c.tls || st.NegotiatedProtocol != "" {
			t.Fatalf("state %+v", st)
		}
		if !out.waitFor("Received: hello world!\nsending data - [Got it!]\n", 2) {
			t.Fatalf("the C++ server printed %q", out.String())
		}
		return
	}
	// C++ client → Go server.
	scfg := &tlszmq.Config{CertFile: crt, KeyFile: key, SecurityLevel: goLevel(level), MinVersion: tlsVersion(c.tls), MaxVersion: tlsVersion(c.tls)}
	if fork {
		scfg.CAFile, scfg.ClientAuth = ca, tlszmq.RequireAndVerifyClientCert
		if c.certs == "modern" {
			scfg.CAFile = cert("ca.crt")
		}
	}
	var peers sync.Map
	srv, err := tlszmq.NewServer(cmdtest.Context(t, tlszmq.RoleServer, scfg), serverEP,
		tlszmq.SinglePart(func(_ context.Context, p *tlszmq.Peer, req []byte) ([]byte, error) {
			peers.Store(string(p.Identity), p)
			return []byte("Got it!\x00"), nil
		}), &tlszmq.ServerOptions{Connect: connect, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	cmdtest.Serve(t, srv.Serve)
	args := []string{"--mode", "client", "--variant", c.variant, "--endpoint", clientEP, "--tls", c.tls, "--seclevel", fmt.Sprint(level)}
	if fork {
		args = append(args, "--cert", ccrt, "--key", ckey, "--ca", ca)
	}
	out, err := run(t, args...)
	if err != nil || out != "Sending - [hello world!]\nReceived - [Got it!]\n" {
		t.Fatalf("C++ client: %v\n%s", err, out)
	}
	if fork {
		p, ok := peers.Load("client2")
		if !ok || !p.(*tlszmq.Peer).Verified {
			t.Fatalf("the Go server did not see a verified client2: %v", p)
		}
	}
}

func tlsVersion(v string) uint16 {
	if v == "1.3" {
		return tlszmq.VersionTLS13
	}
	return tlszmq.VersionTLS12
}

// The C++ peers between themselves over TLS 1.3 break (the server drops its tickets): the
// reproduced defect, which the Go client and server make work where a correct peer can.
func TestCppToCppTLS13IsBroken(t *testing.T) {
	dir := t.TempDir()
	ep := "ipc://" + filepath.Join(dir, "s.ipc")
	start(t, "--mode", "server", "--endpoint", ep, "--tls", "1.3", "--cert", cert("server.crt"), "--key", cert("server.key"))
	out, err := run(t, "--mode", "client", "--endpoint", ep, "--tls", "1.3")
	if err == nil || !strings.Contains(out, "An error occurred: unknown") {
		t.Fatalf("C++ client against C++ server over TLS 1.3: %v\n%s", err, out)
	}
	out, err = run(t, "--mode", "client", "--endpoint", ep, "--tls", "1.2")
	if err == nil { // the 1.3-only server refuses 1.2: the control that the peer runs at all
		t.Fatalf("a TLS 1.2 client reached a 1.3-only server:\n%s", out)
	}
}
