package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cmdtest"
)

// certsDir is testdata/certs.
func certsDir() string { return filepath.Join(cmdtest.Root(), "testdata", "certs") }

// dropinDir is a working folder holding server.crt and server.key, as a C++ deployment has.
func dropinDir(t *testing.T) string {
	dir := t.TempDir()
	for _, f := range []string{"server.crt", "server.key"} {
		b, err := os.ReadFile(filepath.Join(certsDir(), f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o600)
	}
	return dir
}

// startServer runs tlsserver with args in dir and returns it with its output.
func startServer(t *testing.T, dir string, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	srv := exec.Command(cmdtest.Build(t, "tlsserver"), args...)
	srv.Dir = dir
	var out, errb bytes.Buffer
	srv.Stdout, srv.Stderr = &out, &errb
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if srv.ProcessState == nil {
			srv.Process.Kill()
			srv.Wait()
		}
	})
	return srv, &out, &errb
}

// stop sends SIGTERM and returns the exit status and how long the server took.
func stop(t *testing.T, srv *exec.Cmd) (int, time.Duration) {
	start := time.Now()
	srv.Process.Signal(syscall.SIGTERM)
	err := srv.Wait()
	d := time.Since(start)
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), d
		}
		t.Fatal(err)
	}
	return 0, d
}

// With no flags, in a folder holding server.crt and server.key, the two commands do what the
// C++ tlsserver and tlsclient do, on their port, and print their lines.
func TestDropIn(t *testing.T) {
	dir := dropinDir(t)
	srv, srvOut, srvErr := startServer(t, dir)
	var out, errb bytes.Buffer
	var err error
	for try := 0; try < 50; try++ { // the server may still be binding
		out.Reset()
		errb.Reset()
		cl := exec.Command(cmdtest.Build(t, "tlsclient"), "-timeout", "2s")
		cl.Dir = dir
		cl.Stdout, cl.Stderr = &out, &errb
		if err = cl.Run(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("tlsclient: %v\n%s%s", err, out.String(), errb.String())
	}
	if want := "Sending - [hello world!]\nReceived - [Got it!]\n"; out.String() != want {
		t.Errorf("tlsclient printed %q, the C++ client prints %q", out.String(), want)
	}
	if !strings.Contains(errb.String(), "warning: the server's certificate is not verified") {
		t.Errorf("tlsclient without -ca gave no warning: %q", errb.String())
	}
	code, took := stop(t, srv)
	if code != 0 || took > time.Second {
		t.Errorf("tlsserver on SIGTERM: exit %d after %v, want 0 within a second\n%s", code, took, srvErr.String())
	}
	if want := "Received: hello world!\nsending data - [Got it!]\n"; srvOut.String() != want {
		t.Errorf("tlsserver printed %q, the C++ server prints %q", srvOut.String(), want)
	}
}

// SIGTERM sends close_notify to every live session; the server exits 0 within a second.
func TestGracefulStop(t *testing.T) {
	endpoint := "ipc://" + filepath.Join(t.TempDir(), "tlsserver.ipc")
	srv, _, srvErr := startServer(t, t.TempDir(), "-endpoint", endpoint,
		"-cert", filepath.Join(certsDir(), "server.crt"), "-key", filepath.Join(certsDir(), "server.key"), "-q")
	cctx, err := tlszmq.NewContext(tlszmq.RoleClient, &tlszmq.Config{CAFile: filepath.Join(certsDir(), "ca.crt"), ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer cctx.Close()
	var clients []*tlszmq.Client
	for range 3 {
		c, err := tlszmq.NewClient(cctx, endpoint, &tlszmq.ClientOptions{Pattern: tlszmq.DEALER})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range clients {
		if _, err := c.Request(ctx, []byte("hello world!")); err != nil {
			t.Fatal(err)
		}
	}
	code, took := stop(t, srv)
	if code != 0 || took > time.Second {
		t.Fatalf("exit %d after %v, want 0 within a second\n%s", code, took, srvErr.String())
	}
	for i, c := range clients {
		if _, err := c.Recv(ctx); !errors.Is(err, tlszmq.ErrPeerClosed) || !errors.Is(err, io.EOF) {
			t.Errorf("client %d: %v, want ErrPeerClosed (io.EOF) from the server's close_notify", i, err)
		}
	}
}

// With -ca the client verifies the chain and the host name.
func TestClientVerifies(t *testing.T) {
	endpoint := "ipc://" + filepath.Join(t.TempDir(), "tlsserver.ipc")
	srv, _, _ := startServer(t, t.TempDir(), "-endpoint", endpoint,
		"-cert", filepath.Join(certsDir(), "wronghost.crt"), "-key", filepath.Join(certsDir(), "wronghost.key"), "-q")
	defer stop(t, srv)
	var out, errb bytes.Buffer
	cl := exec.Command(cmdtest.Build(t, "tlsclient"), "-endpoint", endpoint, "-servername", "localhost",
		"-ca", filepath.Join(certsDir(), "ca.crt"), "-timeout", "3s")
	cl.Stdout, cl.Stderr = &out, &errb
	err := cl.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(errb.String(), "certificate verify failed: hostname mismatch") {
		t.Fatalf("err %v, stderr %q: want exit status 3 and a hostname mismatch", err, errb.String())
	}
}

// startCmd runs one of the built commands in dir until the test ends.
func startCmd(t *testing.T, dir, name string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	cmd := exec.Command(cmdtest.Build(t, name), args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, &out
}

// runClient runs tlsclient until it succeeds (the others may still be starting).
func runClient(t *testing.T, dir string, args ...string) string {
	var out, errb bytes.Buffer
	var err error
	for try := 0; try < 50; try++ {
		out.Reset()
		errb.Reset()
		cl := exec.Command(cmdtest.Build(t, "tlsclient"), append([]string{"-timeout", "2s"}, args...)...)
		cl.Dir = dir
		cl.Stdout, cl.Stderr = &out, &errb
		if err = cl.Run(); err == nil {
			return out.String()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("tlsclient %v: %v\n%s%s", args, err, out.String(), errb.String())
	return ""
}

// The C++ layout with every default: tlsdevice, a tlsserver connected to the device's :5555,
// and tlsclient through :5556. The client's lines are the C++ client's.
func TestDropInThroughDevice(t *testing.T) {
	dir := dropinDir(t)
	dev, devOut := startCmd(t, dir, "tlsdevice")
	srv, _ := startCmd(t, dir, "tlsserver", "-connect", "-endpoint", "tcp://localhost:5555")
	if got, want := runClient(t, dir), "Sending - [hello world!]\nReceived - [Got it!]\n"; got != want {
		t.Errorf("tlsclient printed %q, want %q", got, want)
	}
	for name, cmd := range map[string]*exec.Cmd{"tlsserver": srv, "tlsdevice": dev} {
		if code, took := stop(t, cmd); code != 0 || took > time.Second {
			t.Errorf("%s on SIGTERM: exit %d after %v\n%s", name, code, took, devOut.String())
		}
	}
}

// With -pin, every message of a client goes to the server that took its handshake.
func TestDevicePinsClients(t *testing.T) {
	dir := t.TempDir()
	front, back := "ipc://"+filepath.Join(dir, "front.ipc"), "ipc://"+filepath.Join(dir, "back.ipc")
	startCmd(t, dir, "tlsdevice", "-pin", "-frontend", front, "-backend", back)
	for _, name := range []string{"server A", "server B"} {
		startCmd(t, dir, "tlsserver", "-connect", "-endpoint", back, "-reply", name, "-q",
			"-cert", filepath.Join(certsDir(), "server.crt"), "-key", filepath.Join(certsDir(), "server.key"))
	}
	time.Sleep(300 * time.Millisecond) // both servers announce themselves
	seen := map[string]bool{}
	for range 4 {
		out := runClient(t, dir, "-endpoint", front, "-count", "5", "-pattern", "dealer")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		first := ""
		for _, l := range lines {
			if strings.HasPrefix(l, "Received - ") {
				if first == "" {
					first = l
				} else if l != first {
					t.Fatalf("one client's replies came from two servers:\n%s", out)
				}
			}
		}
		seen[first] = true
	}
	if len(seen) != 2 {
		t.Fatalf("servers used: %v, want both", seen)
	}
}

// SIGINT or SIGTERM while waiting for a server: exit status 130 within a second, and a line
// saying which signal came before the reply.
func TestClientStopsOnSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		dir := t.TempDir()
		cl, out := startCmd(t, dir, "tlsclient", "-endpoint", "ipc://"+filepath.Join(dir, "nobody.ipc"), "-timeout", "30s")
		time.Sleep(300 * time.Millisecond)
		start := time.Now()
		cl.Process.Signal(sig)
		err := cl.Wait()
		took := time.Since(start)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 || took > time.Second {
			t.Fatalf("%v: %v after %v, want exit status 130 within a second\n%s", sig, err, took, out.String())
		}
		name := map[syscall.Signal]string{syscall.SIGTERM: "SIGTERM", syscall.SIGINT: "SIGINT"}[sig]
		if want := "tlsclient: interrupted by " + name + " before the reply\n"; !strings.HasSuffix(out.String(), want) {
			t.Errorf("%v: output %q, want it to end with %q", sig, out.String(), want)
		}
	}
}

// The drop-in case against the C++ peer: each Go command with no flags, in the same working
// directory as the C++ program it stands in for, prints the lines the C++ one prints.
func TestDropInAgainstCppPeer(t *testing.T) {
	dir := dropinDir(t)
	peer := cmdtest.CppPeer(t)

	// Go tlsclient → C++ server.
	srv := exec.Command(peer, "--mode", "server")
	srv.Dir = dir
	var srvOut bytes.Buffer
	srv.Stdout = &srvOut
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	got := runClient(t, dir)
	srv.Process.Kill()
	srv.Wait()
	if want := "Sending - [hello world!]\nReceived - [Got it!]\n"; got != want {
		t.Errorf("tlsclient against the C++ server printed %q, want %q", got, want)
	}
	if want := "Received: hello world!\nsending data - [Got it!]\n"; srvOut.String() != want {
		t.Errorf("the C++ server printed %q", srvOut.String())
	}

	// C++ client → Go tlsserver.
	gosrv, goOut, _ := startServer(t, dir)
	var out []byte
	var err error
	for try := 0; try < 50; try++ {
		cl := exec.Command(peer, "--mode", "client")
		cl.Dir = dir
		if out, err = cl.Output(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if want := "Sending - [hello world!]\nReceived - [Got it!]\n"; err != nil || string(out) != want {
		t.Errorf("the C++ client against tlsserver: %v, printed %q, want %q", err, out, want)
	}
	if code, _ := stop(t, gosrv); code != 0 {
		t.Errorf("tlsserver exit %d", code)
	}
	if want := "Received: hello world!\nsending data - [Got it!]\n"; goOut.String() != want {
		t.Errorf("tlsserver printed %q, the C++ server prints %q", goOut.String(), want)
	}
}
