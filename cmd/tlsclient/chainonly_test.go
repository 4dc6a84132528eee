package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq/internal/cmdtest"
)

// writeFishTestPKI writes a CA and a server certificate like the C++ fork's: its only name
// is the CN "*.fish-test.com", with no subject alternative name. It returns the paths of the
// CA, the certificate and its key.
func writeFishTestPKI(t *testing.T) (ca, crt, key string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	caKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fish-test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "*.fish-test.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return write("fish-ca.crt", "CERTIFICATE", caDER), write("fish.crt", "CERTIFICATE", leafDER),
		write("fish.key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(leafKey))
}

// freeEndpoint returns a tcp://127.0.0.1 endpoint with a port nobody listens on.
func freeEndpoint(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprintf("tcp://%s", ln.Addr())
}

// tlsclient as the C++ fork's client, against the C++ fork's server with a certificate like
// the fork's (CN *.fish-test.com, no alternative name): with -ca alone the host name check
// refuses it (the endpoint is 127.0.0.1); -servername with a name under the wildcard passes;
// -verify-chain-only passes as the fork's client did, and says on stderr what it gives up.
func TestChainOnlyAgainstForkCertificate(t *testing.T) {
	ca, crt, key := writeFishTestPKI(t)
	endpoint := freeEndpoint(t)
	srv := exec.Command(cmdtest.CppPeer(t), "--mode", "server", "--variant", "fork", "--endpoint", endpoint,
		"--cert", crt, "--key", key, "--ca", ca)
	var srvOut bytes.Buffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })

	client := func(args ...string) (string, string, error) {
		var out, errb bytes.Buffer
		cl := exec.Command(cmdtest.Build(t, "tlsclient"), append([]string{"-endpoint", endpoint, "-ca", ca, "-timeout", "3s"}, args...)...)
		cl.Stdout, cl.Stderr = &out, &errb
		err := cl.Run()
		return out.String(), errb.String(), err
	}
	want := "Sending - [hello world!]\nReceived - [Got it!]\n"
	var out, errs string
	var err error
	for try := 0; try < 30; try++ { // the C++ server may still be binding
		if out, errs, err = client("-verify-chain-only"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || out != want {
		t.Fatalf("-verify-chain-only: %v\n%s%s\nC++ server:\n%s", err, out, errs, srvOut.String())
	}
	if !strings.Contains(errs, "warning: the server's host name is not checked (-verify-chain-only)") {
		t.Errorf("-verify-chain-only without a warning: %q", errs)
	}
	if out, errs, err = client("-servername", "server1.fish-test.com"); err != nil || out != want || strings.Contains(errs, "warning") {
		t.Errorf("-servername server1.fish-test.com: %v\n%s%s", err, out, errs)
	}
	if _, errs, err = client(); err == nil || !strings.Contains(errs, "IP address mismatch") {
		t.Errorf("-ca alone against *.fish-test.com at 127.0.0.1: %v %q, want an IP address mismatch", err, errs)
	}
}

// Without a host to check, -ca needs -servername or -verify-chain-only, and says so; and
// -verify-chain-only needs something to verify against.
func TestCANeedsAName(t *testing.T) {
	for _, args := range [][]string{
		{"-endpoint", "ipc:///tmp/nobody.ipc", "-ca", "../../testdata/certs/ca.crt"},
		{"-endpoint", "tcp://127.0.0.1:5999", "-bind", "-ca", "../../testdata/certs/ca.crt"},
		{"-verify-chain-only"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), args, &stdout, &stderr)
		if err == nil || !(strings.Contains(err.Error(), "-servername") || strings.Contains(err.Error(), "needs -ca")) {
			t.Errorf("%q: %v", args, err)
		}
	}
}
