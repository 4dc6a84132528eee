package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/certgen"
	"github.com/tlszmq/tlszmq/internal/cmdtest"
	"github.com/tlszmq/tlszmq/internal/syncbuf"
)

// issue makes a certificate with an ECDSA key, signed by ca.
func issue(t *testing.T, spec certgen.Spec) *certgen.Pair {
	t.Helper()
	spec.Key = certgen.ECDSAP256
	p, err := certgen.Issue(spec)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func serial(t *testing.T, p *certgen.Pair) *big.Int {
	t.Helper()
	c, err := x509.ParseCertificate(p.Cert.DER())
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}

// waitLine waits until stderr holds a line with every one of texts after offset from, and
// returns the end of that line.
func waitLine(t *testing.T, stderr *syncbuf.Buffer, from int, texts ...string) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		all := stderr.String()
		rest := all[from:]
		for _, line := range strings.SplitAfter(rest, "\n") {
			if !strings.HasSuffix(line, "\n") {
				break
			}
			ok := true
			for _, s := range texts {
				ok = ok && strings.Contains(line, s)
			}
			if ok {
				return from + strings.Index(rest, line) + len(line)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line with %q on stderr after offset %d:\n%s", texts, from, all)
		}
	}
}

// The built tlsserver reloads on SIGHUP: a new certificate for new handshakes while a live
// session keeps its own; a key that does not match is refused, with a log line naming the
// file, and the certificate before stays; a new CRL refuses the client it revokes on its next
// handshake, its live session going on. SIGHUP never stops the server; SIGINT does, status 0.
func TestSIGHUPReload(t *testing.T) {
	dir := t.TempDir()
	ca := issue(t, certgen.Spec{CommonName: "SIGHUP test CA", IsCA: true})
	if err := ca.Write(dir, "ca"); err != nil {
		t.Fatal(err)
	}
	serverSpec := certgen.Spec{CommonName: "localhost", Hosts: []string{"localhost"}, Server: true, Issuer: ca}
	first, second := issue(t, serverSpec), issue(t, serverSpec)
	if err := first.Write(dir, "server"); err != nil {
		t.Fatal(err)
	}
	client := issue(t, certgen.Spec{CommonName: "SIGHUP client", Client: true, Issuer: ca})
	if err := client.Write(dir, "client"); err != nil {
		t.Fatal(err)
	}
	crl := filepath.Join(dir, "ca.crl")
	writeCRL := func(revoked ...*certgen.Certificate) {
		pem, err := certgen.CRL(certgen.CRLSpec{Issuer: ca, Revoked: revoked, ThisUpdate: -time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(crl, pem, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeCRL()

	endpoint := "tcp://127.0.0.1:" + freePort(t)
	srv := exec.Command(cmdtest.Build(t, "tlsserver"), "-endpoint", endpoint, "-q",
		"-cert", filepath.Join(dir, "server.crt"), "-key", filepath.Join(dir, "server.key"),
		"-ca", filepath.Join(dir, "ca.crt"), "-verify", "require", "-crl", crl)
	var stdout bytes.Buffer
	stderr := &syncbuf.Buffer{}
	srv.Stdout, srv.Stderr = &stdout, stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			srv.Process.Kill()
			srv.Wait()
		}
	}()
	at := waitLine(t, stderr, 0, "tlsserver: serving")
	hangup := func() {
		t.Helper()
		if err := srv.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cctx := cmdtest.Context(t, tlszmq.RoleClient, &tlszmq.Config{CAFile: filepath.Join(dir, "ca.crt"), ServerName: "localhost",
		CertFile: filepath.Join(dir, "client.crt"), KeyFile: filepath.Join(dir, "client.key")})
	connect := func() *tlszmq.Client {
		t.Helper()
		c, err := tlszmq.NewClient(cctx, endpoint, &tlszmq.ClientOptions{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	request := func(c *tlszmq.Client) error {
		t.Helper()
		reply, err := c.Request(ctx, []byte("hello world!"))
		if err == nil && string(reply[0]) != "Got it!\x00" {
			t.Fatalf("reply %q", reply)
		}
		return err
	}
	peerSerial := func(c *tlszmq.Client) *big.Int {
		t.Helper()
		return c.ConnectionState().PeerCertificates[0].SerialNumber
	}

	live := connect()
	if err := request(live); err != nil {
		t.Fatal(err)
	}
	if peerSerial(live).Cmp(serial(t, first)) != 0 {
		t.Fatal("the first session has not the first certificate")
	}

	// A new certificate.
	if err := second.Write(dir, "server"); err != nil {
		t.Fatal(err)
	}
	hangup()
	at = waitLine(t, stderr, at, "reloaded", "on=SIGHUP", "certificate=", "CN=localhost", "expires=")
	if err := request(live); err != nil {
		t.Fatalf("the live session after the reload: %v", err)
	}
	if peerSerial(live).Cmp(serial(t, first)) != 0 {
		t.Error("the live session's certificate changed")
	}
	fresh := connect()
	if err := request(fresh); err != nil {
		t.Fatal(err)
	}
	if peerSerial(fresh).Cmp(serial(t, second)) != 0 {
		t.Error("a new session after SIGHUP has not the new certificate")
	}

	// A key that does not match: refused, the second certificate stays.
	keyPEM, _ := first.Key.MarshalPEM()
	if err := os.WriteFile(filepath.Join(dir, "server.key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	hangup()
	at = waitLine(t, stderr, at, "reload refused", "the old configuration stays", filepath.Join(dir, "server.key"), "key values mismatch")
	other := connect()
	if err := request(other); err != nil {
		t.Fatalf("after a refused reload: %v", err)
	}
	if peerSerial(other).Cmp(serial(t, second)) != 0 {
		t.Error("after a refused reload, a new session has not the certificate before it")
	}
	keyPEM, _ = second.Key.MarshalPEM()
	if err := os.WriteFile(filepath.Join(dir, "server.key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	// A CRL revoking the client: its live sessions go on, a new handshake is refused.
	writeCRL(client.Cert)
	hangup()
	at = waitLine(t, stderr, at, "reloaded", "on=SIGHUP")
	if err := request(live); err != nil {
		t.Fatalf("the live session after the CRL reload: %v", err)
	}
	if err := request(connect()); err == nil {
		t.Fatal("a revoked client made a new session")
	}
	waitLine(t, stderr, at, "handshake failed", "certificate revoked")

	if err := srv.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := srv.Wait()
	stopped = true
	if err != nil {
		t.Fatalf("tlsserver: %v; stderr:\n%s", err, stderr.String())
	}
}
