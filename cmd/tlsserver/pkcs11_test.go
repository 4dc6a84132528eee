package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cmdtest"
	"github.com/tlszmq/tlszmq/internal/softhsm"
)

// softHSMToken makes a SoftHSM2 token in a folder of the test's, holding testdata's server key
// (imported from a PKCS#8 file that is deleted at once), and points SOFTHSM2_CONF at it for
// the commands the test runs. It returns the module's path.
func softHSMToken(t *testing.T, token, label, pin string) string {
	t.Helper()
	tk, err := softhsm.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", tk.Conf)
	key, err := softhsm.ReadKey(filepath.Join(cmdtest.Root(), "testdata", "certs", "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tk.InitToken(token, pin, "5678"); err != nil {
		t.Fatal(err)
	}
	if err := tk.Import(token, label, "01", pin, key); err != nil {
		t.Fatal(err)
	}
	return tk.Module
}

// tlsserver -key pkcs11:... serves handshakes with a key that exists only on a SoftHSM2
// token, its PIN read from a file named by the URI's pin-source: a client that verifies the
// server gets its reply, and the start-up line names the certificate. First the built
// tlsserver is given a wrong pin-value: it fails with status 3 before serving, naming the
// refused PIN, and nothing it writes (libp11's own lines included) shows the PIN.
func TestPKCS11Key(t *testing.T) {
	module := softHSMToken(t, "cmdtest", "server", "token-PIN")
	certs := filepath.Join(cmdtest.Root(), "testdata", "certs")

	// "&" before pin-value, where RFC 7512 has ";": libp11 reads it all the same.
	bad := fmt.Sprintf("pkcs11:token=cmdtest;object=server;type=private&pin-value=wrong-PIN?module-path=%s", module)
	cmd := exec.Command(cmdtest.Build(t, "tlsserver"), "-endpoint", "tcp://127.0.0.1:"+freePort(t),
		"-cert", filepath.Join(certs, "server.crt"), "-key", bad)
	var badOut, badErr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &badOut, &badErr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 || !strings.Contains(badErr.String(), "refused the PIN") {
		t.Fatalf("a wrong PIN: %v, want exit status 3 naming the refused PIN; stderr:\n%s", err, badErr.String())
	}
	if strings.Contains(badErr.String()+badOut.String(), "wrong-PIN") {
		t.Errorf("the PIN is in the output:\n%s%s", badOut.String(), badErr.String())
	}

	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte("token-PIN"), 0o600); err != nil {
		t.Fatal(err)
	}
	uri := fmt.Sprintf("pkcs11:token=cmdtest;object=server;type=private?pin-source=file:%s&module-path=%s", pinFile, module)
	endpoint := "tcp://127.0.0.1:" + freePort(t)
	stderr, stop := startServer(t, "-endpoint", endpoint, "-cert", filepath.Join(certs, "server.crt"), "-key", uri)
	cctx := cmdtest.Context(t, tlszmq.RoleClient, &tlszmq.Config{CAFile: filepath.Join(certs, "ca.crt"), ServerName: "localhost"})
	c, err := tlszmq.NewClient(cctx, endpoint, &tlszmq.ClientOptions{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reply, err := c.Request(context.Background(), []byte("hello world!"))
	if err != nil || string(reply[0]) != "Got it!\x00" {
		t.Fatalf("request: %q, %v; stderr:\n%s", reply, err, stderr.String())
	}
	if err := stop(); err != nil {
		t.Fatalf("tlsserver: %v; stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "certificate CN=localhost,O=tlszmq,C=ZZ, expires 2086-11-10") {
		t.Errorf("no start-up line names the certificate; stderr:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String(), "token-PIN") {
		t.Errorf("the PIN is in the log; stderr:\n%s", stderr.String())
	}
}
