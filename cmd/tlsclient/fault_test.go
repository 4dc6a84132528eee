package main

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cmdtest"
)

// faultClient is a library client that reconnects by itself after a failure.
func faultClient(t *testing.T, endpoint string) *tlszmq.Client {
	cctx := cmdtest.Context(t, tlszmq.RoleClient, &tlszmq.Config{CAFile: filepath.Join(certsDir(), "ca.crt"), ServerName: "localhost"})
	c, err := tlszmq.NewClient(cctx, endpoint, &tlszmq.ClientOptions{Reconnect: true, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// kill ends a command the way a crash does: no close_notify, no goodbye.
func kill(cmd *exec.Cmd) {
	cmd.Process.Kill()
	cmd.Wait()
}

// lostRequest checks that a request to a vanished peer fails with ErrTimeout within about the
// client's timeout, instead of hanging or vanishing.
func lostRequest(t *testing.T, c *tlszmq.Client, what string) {
	t.Helper()
	start := time.Now()
	_, err := c.Request(context.Background(), []byte(what))
	if !errors.Is(err, tlszmq.ErrTimeout) || time.Since(start) > 4*time.Second {
		t.Fatalf("%s: %v after %v, want ErrTimeout within the 2 s timeout", what, err, time.Since(start))
	}
	t.Logf("%s: %v", what, err)
}

// okRequest sends a request and checks its reply (tlsserver's default "Got it!").
func okRequest(t *testing.T, c *tlszmq.Client, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := c.Request(ctx, []byte(what))
	if err != nil || len(got) != 1 || string(got[0]) != "Got it!\x00" {
		t.Fatalf("%s: %q %v", what, got, err)
	}
}

func ticketKeyFile(t *testing.T, dir string) string {
	key := make([]byte, tlszmq.SessionTicketKeyLen)
	rand.Read(key)
	f := filepath.Join(dir, "ticket.key")
	if err := os.WriteFile(f, key, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// A server killed mid-session: the client's next request fails within its timeout; once the
// server is back (restarted with the same ticket key), the client reconnects by itself and
// resumes its session. Nothing is retried behind the caller's back.
func TestServerRestartClientReconnects(t *testing.T) {
	dir := t.TempDir()
	endpoint := "ipc://" + filepath.Join(dir, "tlsserver.ipc")
	args := []string{"-endpoint", endpoint, "-q", "-ticket-key", ticketKeyFile(t, dir),
		"-cert", filepath.Join(certsDir(), "server.crt"), "-key", filepath.Join(certsDir(), "server.key")}
	srv, _, _ := startServer(t, dir, args...)
	c := faultClient(t, endpoint)
	okRequest(t, c, "before")
	if c.ConnectionState().DidResume {
		t.Fatal("the first session resumed")
	}
	kill(srv)
	lostRequest(t, c, "while the server is down")
	startServer(t, dir, args...)
	okRequest(t, c, "after the restart")
	if !c.ConnectionState().DidResume {
		t.Error("the session was not resumed by the restarted server")
	}
	okRequest(t, c, "and on")
}

// A device killed between client and server: the same recovery, through a new device, with
// the server that never went away (which resumes the session from its own memory).
func TestDeviceRestartClientReconnects(t *testing.T) {
	dir := t.TempDir()
	front, back := "ipc://"+filepath.Join(dir, "front.ipc"), "ipc://"+filepath.Join(dir, "back.ipc")
	startDevice := func() *exec.Cmd {
		dev := exec.Command(cmdtest.Build(t, "tlsdevice"), "-frontend", front, "-backend", back)
		dev.Dir = dir
		if err := dev.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { kill(dev) })
		return dev
	}
	dev := startDevice()
	startServer(t, dir, "-connect", "-endpoint", back, "-q",
		"-cert", filepath.Join(certsDir(), "server.crt"), "-key", filepath.Join(certsDir(), "server.key"))
	c := faultClient(t, front)
	okRequest(t, c, "before")
	kill(dev)
	lostRequest(t, c, "while the device is down")
	startDevice()
	okRequest(t, c, "after the restart")
	if !c.ConnectionState().DidResume {
		t.Error("the session was not resumed through the new device")
	}
}

// Without Reconnect, a client that lost its server says so on every call instead of
// starting over behind the caller's back.
func TestNoReconnectUnlessAsked(t *testing.T) {
	dir := t.TempDir()
	endpoint := "ipc://" + filepath.Join(dir, "tlsserver.ipc")
	args := []string{"-endpoint", endpoint, "-q",
		"-cert", filepath.Join(certsDir(), "server.crt"), "-key", filepath.Join(certsDir(), "server.key")}
	srv, _, _ := startServer(t, dir, args...)
	cctx := cmdtest.Context(t, tlszmq.RoleClient, &tlszmq.Config{CAFile: filepath.Join(certsDir(), "ca.crt"), ServerName: "localhost"})
	c, err := tlszmq.NewClient(cctx, endpoint, &tlszmq.ClientOptions{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	okRequest(t, c, "before")
	kill(srv)
	lostRequest(t, c, "while the server is down")
	startServer(t, dir, args...)
	// The REQ socket still owes... nothing: REQ_RELAXED lets it send, but the new server has
	// no session for this client's records, so the request fails rather than being answered
	// by someone who does not know the client.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Request(ctx, []byte("after the restart")); err == nil {
		t.Fatal("a request on the dead session was answered")
	}
	if err := c.Reconnect(ctx); err != nil {
		t.Fatalf("an explicit Reconnect: %v", err)
	}
	okRequest(t, c, "after Reconnect")
}
