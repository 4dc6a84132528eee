package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/cmd/internal/cmdtest"
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
		if _, err := c.Recv(ctx); err != io.EOF {
			t.Errorf("client %d: %v, want io.EOF from the server's close_notify", i, err)
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
	if err == nil || !strings.Contains(errb.String(), "certificate verify failed: hostname mismatch") {
		t.Fatalf("err %v, stderr %q: want a hostname mismatch", err, errb.String())
	}
}
