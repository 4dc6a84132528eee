package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// keygen runs tlszmq keygen with args and returns its exit status, stdout and stderr.
func keygen(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"keygen"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func mustKeygen(t *testing.T, args ...string) string {
	t.Helper()
	code, stdout, stderr := keygen(t, args...)
	if code != 0 {
		t.Fatalf("keygen %v: exit %d: %s", args, code, stderr)
	}
	return stdout
}

// What keygen makes verifies with the openssl command and with Go, names the hosts, carries
// the key usages, chains by key identifier, is valid 10 years (CA) and 1 year (the others),
// has its private keys in PKCS#8 files of mode 0600, and serves a TLS handshake.
func TestKeygenChain(t *testing.T) {
	for _, key := range []string{"rsa2048", "ecdsa-p256"} {
		t.Run(key, func(t *testing.T) {
			dir := t.TempDir()
			out := mustKeygen(t, "-dir", dir, "-key", key)
			if !strings.Contains(out, `ca.key: "tlszmq CA `) || strings.Count(out, "\n") != 3 {
				t.Errorf("stdout:\n%s", out)
			}
			path := func(name string) string { return filepath.Join(dir, name) }
			verify(t, "sslserver", path("ca.crt"), path("server.crt"))
			verify(t, "sslclient", path("ca.crt"), path("client.crt"))

			ca, server, client := parseFile(t, path("ca.crt")), parseFile(t, path("server.crt")), parseFile(t, path("client.crt"))
			if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 || !bytes.Equal(ca.AuthorityKeyId, ca.SubjectKeyId) {
				t.Errorf("CA: IsCA %v, key usage %b, key ids %x %x", ca.IsCA, ca.KeyUsage, ca.SubjectKeyId, ca.AuthorityKeyId)
			}
			validFor(t, ca, 10*365*24*time.Hour)
			for _, c := range []*x509.Certificate{server, client} {
				if c.IsCA || c.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
					t.Errorf("%s: IsCA %v, key usage %b", c.Subject.CommonName, c.IsCA, c.KeyUsage)
				}
				if len(ca.SubjectKeyId) == 0 || !bytes.Equal(c.AuthorityKeyId, ca.SubjectKeyId) || bytes.Equal(c.SubjectKeyId, ca.SubjectKeyId) {
					t.Errorf("%s: authority key id %x, subject key id %x; the CA's %x", c.Subject.CommonName, c.AuthorityKeyId, c.SubjectKeyId, ca.SubjectKeyId)
				}
				validFor(t, c, 365*24*time.Hour)
			}
			if strings.Join(server.DNSNames, ",") != "localhost" || len(server.IPAddresses) != 2 ||
				!server.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || !server.IPAddresses[1].Equal(net.IPv6loopback) {
				t.Errorf("server names: %v %v", server.DNSNames, server.IPAddresses)
			}
			if len(server.ExtKeyUsage) != 1 || server.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth ||
				len(client.ExtKeyUsage) != 1 || client.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
				t.Errorf("extended key usages: server %v, client %v", server.ExtKeyUsage, client.ExtKeyUsage)
			}
			for _, name := range []string{"ca", "server", "client"} {
				checkKeyFile(t, path(name+".key"))
			}

			roots := x509.NewCertPool()
			roots.AddCert(ca)
			if err := tlsHandshake(t, path("server"), path("client"), roots); err != nil {
				t.Fatalf("TLS handshake: %v", err)
			}
		})
	}
}

// keygen overwrites nothing without -force: it names the file and the flag, exits 2 and
// leaves every file as it was. With -force it makes new server and client files, still
// issued by the CA that is there.
func TestKeygenRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	mustKeygen(t, "-dir", dir, "-key", "ecdsa-p256")
	before := snapshot(t, dir)

	code, stdout, stderr := keygen(t, "-dir", dir, "-key", "ecdsa-p256")
	if code != 2 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, filepath.Join(dir, "server.crt")+" exists") ||
		!strings.Contains(stderr, "-force") || stdout != "" {
		t.Fatalf("second run: exit %d, stdout %q, stderr %q; want 2 and one line naming server.crt and -force", code, stdout, stderr)
	}
	if after := snapshot(t, dir); !equalFiles(before, after) {
		t.Fatal("the refused run changed files")
	}

	os.Chmod(filepath.Join(dir, "server.key"), 0o644)
	out := mustKeygen(t, "-dir", dir, "-key", "ecdsa-p256", "-force")
	if !strings.Contains(out, "using the CA in "+filepath.Join(dir, "ca.crt")) {
		t.Errorf("stdout:\n%s", out)
	}
	after := snapshot(t, dir)
	for name, b := range before {
		if changed := !bytes.Equal(after[name], b); changed != (name != "ca.crt" && name != "ca.key") {
			t.Errorf("%s: changed %v", name, changed)
		}
	}
	checkKeyFile(t, filepath.Join(dir, "server.key"))
	verify(t, "sslserver", filepath.Join(dir, "ca.crt"), filepath.Join(dir, "server.crt"))
}

// One half of a CA is not reused: without -force keygen refuses to replace it.
func TestKeygenHalfACA(t *testing.T) {
	dir := t.TempDir()
	caKey := filepath.Join(dir, "ca.key")
	os.WriteFile(caKey, []byte("something\n"), 0o600)
	code, _, stderr := keygen(t, "-dir", dir, "-key", "ecdsa-p256")
	if code != 2 || !strings.Contains(stderr, caKey+" exists") || !strings.Contains(stderr, "-force") {
		t.Fatalf("exit %d, %q", code, stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("the refused run wrote files: %v", entries)
	}
	mustKeygen(t, "-dir", dir, "-key", "ecdsa-p256", "-force")
	verify(t, "sslserver", filepath.Join(dir, "ca.crt"), filepath.Join(dir, "server.crt"))
}

// A CA that is already there, even one go-openssl made (the repository's fixture, with a
// traditional-format key), issues the new certificates.
func TestKeygenReusesTheCA(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"ca.crt", "ca.key"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "certs", name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name), b, 0o600)
	}
	out := mustKeygen(t, "-dir", dir, "-hosts", "example.test, 192.0.2.1", "-years", "2")
	if !strings.Contains(out, "using the CA") {
		t.Errorf("stdout:\n%s", out)
	}
	verify(t, "sslserver", filepath.Join(dir, "ca.crt"), filepath.Join(dir, "server.crt"))
	server := parseFile(t, filepath.Join(dir, "server.crt"))
	if server.Subject.CommonName != "example.test" || strings.Join(server.DNSNames, ",") != "example.test" ||
		len(server.IPAddresses) != 1 || server.IPAddresses[0].String() != "192.0.2.1" {
		t.Errorf("server: %q %v %v", server.Subject.CommonName, server.DNSNames, server.IPAddresses)
	}
	validFor(t, server, 2*365*24*time.Hour)
}

// Each new CA has a name of its own.
func TestKeygenCANamesDiffer(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	mustKeygen(t, "-dir", a, "-key", "ecdsa-p256")
	mustKeygen(t, "-dir", b, "-key", "ecdsa-p256", "-ca-years", "3")
	ca, cb := parseFile(t, filepath.Join(a, "ca.crt")), parseFile(t, filepath.Join(b, "ca.crt"))
	form := regexp.MustCompile(`^tlszmq CA [A-Za-z0-9_-]+ \d{4}-\d\d-\d\d [0-9a-f]{4}$`)
	for _, c := range []*x509.Certificate{ca, cb} {
		if !form.MatchString(c.Subject.CommonName) || len(c.Subject.CommonName) > 64 {
			t.Errorf("CA name %q", c.Subject.CommonName)
		}
	}
	if ca.Subject.CommonName == cb.Subject.CommonName {
		t.Errorf("two CAs named %q", ca.Subject.CommonName)
	}
	validFor(t, cb, 3*365*24*time.Hour)
}

func TestKeygenBadFlags(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"-years", "0"}, {"-ca-years", "0"}, {"-hosts", "a b"}, {"-hosts", ","}, {"-key", "rsa1024"}, {"-force=maybe"}} {
		code, _, stderr := keygen(t, append([]string{"-dir", dir}, args...)...)
		if code != 2 || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line", args, code, stderr)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("bad flags wrote files: %v", entries)
	}
}

// ---- helpers ----

// verify runs `openssl verify` on cert for purpose (sslserver, sslclient).
func verify(t *testing.T, purpose, caFile, cert string) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("the openssl command is needed (make deps installs it): %v", err)
	}
	out, err := exec.Command("openssl", "verify", "-x509_strict", "-purpose", purpose, "-CAfile", caFile, cert).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != cert+": OK" {
		t.Fatalf("openssl verify %s: %v\n%s", cert, err, out)
	}
}

func parseFile(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func validFor(t *testing.T, c *x509.Certificate, want time.Duration) {
	t.Helper()
	if got := c.NotAfter.Sub(c.NotBefore); got < want-time.Minute || got > want+time.Minute {
		t.Errorf("%s: valid for %v, want %v", c.Subject.CommonName, got, want)
	}
	if d := time.Since(c.NotBefore); d < -time.Minute || d > time.Hour {
		t.Errorf("%s: not before %v", c.Subject.CommonName, c.NotBefore)
	}
}

// checkKeyFile: mode 0600, one unencrypted PKCS#8 block.
func checkKeyFile(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v; want mode 0600", path, fi, err)
	}
	b, _ := os.ReadFile(path)
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("%s: not one PKCS#8 PEM block", path)
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

func equalFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for name, x := range a {
		if !bytes.Equal(x, b[name]) {
			return false
		}
	}
	return true
}

// tlsHandshake runs Go's crypto/tls over a pipe with serverBase.crt/.key and
// clientBase.crt/.key, each side verifying the other against roots, and one message each way.
func tlsHandshake(t *testing.T, serverBase, clientBase string, roots *x509.CertPool) error {
	t.Helper()
	sc, err := tls.LoadX509KeyPair(serverBase+".crt", serverBase+".key")
	if err != nil {
		t.Fatal(err)
	}
	cc, err := tls.LoadX509KeyPair(clientBase+".crt", clientBase+".key")
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	// The pipe is closed under the TLS connections (their Close would wait for the peer to
	// read a close_notify), and no session tickets are sent (the server would write them
	// while the client, on this unbuffered pipe, writes its message).
	defer a.Close()
	defer b.Close()
	deadline := time.Now().Add(20 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	srv := tls.Server(a, &tls.Config{Certificates: []tls.Certificate{sc}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: roots, SessionTicketsDisabled: true})
	cli := tls.Client(b, &tls.Config{Certificates: []tls.Certificate{cc}, RootCAs: roots, ServerName: "localhost"})
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 4)
		if _, err := io.ReadFull(srv, buf); err != nil {
			done <- err
			return
		}
		_, err := srv.Write(buf)
		done <- err
	}()
	if err := cli.Handshake(); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := cli.Write([]byte("ping")); err != nil {
		return errors.Join(err, <-done)
	}
	if _, err := io.ReadFull(cli, buf); err != nil {
		return errors.Join(err, <-done)
	}
	if err := <-done; err != nil {
		return err
	}
	if string(buf) != "ping" {
		return errors.New("the echo came back as " + string(buf))
	}
	if got := srv.ConnectionState().PeerCertificates; len(got) == 0 || got[0].Subject.CommonName != "tlszmq client" {
		return errors.New("the server did not see the client certificate")
	}
	return nil
}
