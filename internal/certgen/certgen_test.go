package certgen

import (
	"bytes"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var hosts = []string{"localhost", "127.0.0.1", "::1"}

// A chain of each key type verifies with the openssl command and with Go's crypto/x509, and
// carries the extensions asked for, with key identifiers that chain.
func TestIssueChainVerifies(t *testing.T) {
	dir := t.TempDir()
	ca := issue(t, Spec{CommonName: "test CA", IsCA: true})
	writePair(t, ca, dir, "ca")
	caCert := parse(t, ca.Cert)
	checkCA(t, caCert)
	roots := x509.NewCertPool()
	roots.AddCert(caCert)

	for _, key := range KeyTypes() {
		if key == RSA4096 && testing.Short() {
			continue // some seconds of key generation
		}
		t.Run(string(key), func(t *testing.T) {
			server := issue(t, Spec{CommonName: "localhost", Hosts: hosts, Key: key, Server: true, Issuer: ca})
			client := issue(t, Spec{CommonName: "client " + string(key), Key: key, Client: true, Issuer: ca})
			writePair(t, server, dir, "server-"+string(key))
			writePair(t, client, dir, "client-"+string(key))
			openssl(t, "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", filepath.Join(dir, "ca.crt"),
				filepath.Join(dir, "server-"+string(key)+".crt"))
			openssl(t, "verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", filepath.Join(dir, "ca.crt"),
				filepath.Join(dir, "client-"+string(key)+".crt"))

			sc, cc := parse(t, server.Cert), parse(t, client.Cert)
			checkLeaf(t, sc, caCert, key)
			checkLeaf(t, cc, caCert, key)
			if got := strings.Join(sc.DNSNames, ","); got != "localhost" {
				t.Errorf("DNS names %q", got)
			}
			if len(sc.IPAddresses) != 2 || !sc.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || !sc.IPAddresses[1].Equal(net.IPv6loopback) {
				t.Errorf("IP addresses %v", sc.IPAddresses)
			}
			if len(sc.ExtKeyUsage) != 1 || sc.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
				t.Errorf("server extended key usage %v", sc.ExtKeyUsage)
			}
			if len(cc.ExtKeyUsage) != 1 || cc.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || len(cc.DNSNames)+len(cc.IPAddresses) != 0 {
				t.Errorf("client extended key usage %v, names %v %v", cc.ExtKeyUsage, cc.DNSNames, cc.IPAddresses)
			}
			for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
				if _, err := sc.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
					t.Errorf("Go's verification for %s: %v", name, err)
				}
			}
			if _, err := cc.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("Go's verification of the client certificate: %v", err)
			}
			if err := handshake(tlsCert(t, server), tlsCert(t, client), roots, "localhost"); err != nil {
				t.Fatalf("TLS handshake: %v", err)
			}
		})
	}
}

func checkCA(t *testing.T, c *x509.Certificate) {
	t.Helper()
	if !c.IsCA || !c.BasicConstraintsValid || c.KeyUsage&x509.KeyUsageCertSign == 0 || c.KeyUsage&x509.KeyUsageCRLSign == 0 {
		t.Errorf("CA: IsCA %v, basic constraints %v, key usage %b", c.IsCA, c.BasicConstraintsValid, c.KeyUsage)
	}
	if !critical(c, "2.5.29.19") {
		t.Error("CA: basicConstraints is not critical")
	}
	if len(c.SubjectKeyId) == 0 || !bytes.Equal(c.AuthorityKeyId, c.SubjectKeyId) {
		t.Errorf("self-signed CA: subject key id %x, authority key id %x", c.SubjectKeyId, c.AuthorityKeyId)
	}
	checkCommon(t, c, DefaultCAValidity)
}

func checkLeaf(t *testing.T, c, ca *x509.Certificate, key KeyType) {
	t.Helper()
	if c.IsCA || !c.BasicConstraintsValid {
		t.Errorf("%s: IsCA %v, basic constraints %v", c.Subject.CommonName, c.IsCA, c.BasicConstraintsValid)
	}
	want := x509.KeyUsageDigitalSignature
	if key != ECDSAP256 {
		want |= x509.KeyUsageKeyEncipherment
	}
	if c.KeyUsage != want || !critical(c, "2.5.29.15") {
		t.Errorf("%s: key usage %b (critical %v), want %b", c.Subject.CommonName, c.KeyUsage, critical(c, "2.5.29.15"), want)
	}
	// The key identifiers: the leaf's own (RFC 5280 method 1), and its issuer's.
	if len(ca.SubjectKeyId) == 0 || !bytes.Equal(c.AuthorityKeyId, ca.SubjectKeyId) {
		t.Errorf("%s: authority key id %x, the CA's subject key id %x", c.Subject.CommonName, c.AuthorityKeyId, ca.SubjectKeyId)
	}
	if want := keyID(t, c); !bytes.Equal(c.SubjectKeyId, want) {
		t.Errorf("%s: subject key id %x, the hash of its key is %x", c.Subject.CommonName, c.SubjectKeyId, want)
	}
	if c.Issuer.String() != ca.Subject.String() {
		t.Errorf("%s: issuer %q, the CA is %q", c.Subject.CommonName, c.Issuer, ca.Subject)
	}
	checkCommon(t, c, DefaultLeafValidity)
}

func checkCommon(t *testing.T, c *x509.Certificate, validity time.Duration) {
	t.Helper()
	if c.Version != 3 {
		t.Errorf("%s: version %d", c.Subject.CommonName, c.Version)
	}
	if c.SignatureAlgorithm != x509.SHA256WithRSA && c.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("%s: signature algorithm %v", c.Subject.CommonName, c.SignatureAlgorithm)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() != 128 {
		t.Errorf("%s: serial %x (%d bits)", c.Subject.CommonName, c.SerialNumber, c.SerialNumber.BitLen())
	}
	if got := c.NotAfter.Sub(c.NotBefore); got < validity-time.Minute || got > validity+time.Minute {
		t.Errorf("%s: valid for %v, want %v", c.Subject.CommonName, got, validity)
	}
	if d := time.Since(c.NotBefore); d < -time.Minute || d > time.Hour {
		t.Errorf("%s: not before %v", c.Subject.CommonName, c.NotBefore)
	}
	if len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != "tlszmq" {
		t.Errorf("subject %q", c.Subject)
	}
}

// A chain through an intermediate CA, written with the leaf: identifiers chain at each link.
func TestIntermediateChain(t *testing.T) {
	dir := t.TempDir()
	root := issue(t, Spec{CommonName: "root CA", IsCA: true, Key: ECDSAP256})
	inter := issue(t, Spec{CommonName: "intermediate CA", IsCA: true, Issuer: root})
	leaf := issue(t, Spec{CommonName: "localhost", Hosts: hosts, Server: true, Issuer: inter})
	writePair(t, root, dir, "root")
	if err := leaf.Write(dir, "leaf", inter); err != nil {
		t.Fatal(err)
	}
	chain := filepath.Join(dir, "leaf.crt")
	openssl(t, "verify", "-x509_strict", "-CAfile", filepath.Join(dir, "root.crt"), "-untrusted", chain, chain)
	r, i, l := parse(t, root.Cert), parse(t, inter.Cert), parse(t, leaf.Cert)
	if !bytes.Equal(i.AuthorityKeyId, r.SubjectKeyId) || !bytes.Equal(l.AuthorityKeyId, i.SubjectKeyId) || bytes.Equal(i.SubjectKeyId, r.SubjectKeyId) {
		t.Errorf("key ids: root %x; intermediate %x by %x; leaf by %x", r.SubjectKeyId, i.SubjectKeyId, i.AuthorityKeyId, l.AuthorityKeyId)
	}
	if !i.IsCA || i.Issuer.CommonName != "root CA" {
		t.Errorf("intermediate: CA %v, issuer %q", i.IsCA, i.Issuer)
	}
}

// Load reads what Write wrote, keys in the traditional formats too, and the repository's
// fixtures (made by go-openssl); a CA loaded from them issues certificates that verify.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	for _, key := range []KeyType{RSA2048, ECDSAP256} {
		p := issue(t, Spec{CommonName: "x", Key: key})
		writePair(t, p, dir, "p")
		crt, keyFile := Paths(dir, "p")
		q, err := Load(crt, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(q.Cert.DER(), p.Cert.DER()) || !bytes.Equal(q.Key.pkcs8, p.Key.pkcs8) {
			t.Errorf("%s: Load gave back something else than was written", key)
		}
		trad, err := p.Key.MarshalPKCS1PrivateKeyPEM()
		if err != nil {
			t.Fatal(err)
		}
		want := map[KeyType]string{RSA2048: "RSA PRIVATE KEY", ECDSAP256: "EC PRIVATE KEY"}[key]
		if b, _ := pem.Decode(trad); b == nil || b.Type != want {
			t.Fatalf("%s: traditional PEM %q", key, trad)
		}
		certPEM, _ := p.Cert.MarshalPEM()
		if q, err := ParsePEM(certPEM, trad); err != nil || !bytes.Equal(q.Key.pkcs8, p.Key.pkcs8) {
			t.Errorf("%s: the traditional key: %v", key, err)
		}
	}

	fixtures := filepath.Join("..", "..", "testdata", "certs")
	ca, err := Load(filepath.Join(fixtures, "ca.crt"), filepath.Join(fixtures, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	leaf := issue(t, Spec{CommonName: "localhost", Hosts: hosts, Server: true, Issuer: ca})
	writePair(t, leaf, dir, "leaf")
	openssl(t, "verify", "-x509_strict", "-CAfile", filepath.Join(fixtures, "ca.crt"), filepath.Join(dir, "leaf.crt"))
	if l, c := parse(t, leaf.Cert), parse(t, ca.Cert); !bytes.Equal(l.AuthorityKeyId, c.SubjectKeyId) {
		t.Errorf("authority key id %x, the fixture CA's subject key id %x", l.AuthorityKeyId, c.SubjectKeyId)
	}
}

// Load's errors name the file at fault and carry OpenSSL's reason; an encrypted key is
// refused, not prompted for.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	a := issue(t, Spec{CommonName: "a", Key: ECDSAP256})
	b := issue(t, Spec{CommonName: "b", Key: ECDSAP256})
	writePair(t, a, dir, "a")
	writePair(t, b, dir, "b")
	aCrt, aKey := Paths(dir, "a")
	_, bKey := Paths(dir, "b")
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("not PEM\n"), 0o644)
	encrypted := filepath.Join(dir, "encrypted.key")
	openssl(t, "pkey", "-in", aKey, "-aes256", "-passout", "pass:secret", "-out", encrypted)

	for _, c := range []struct {
		crt, key string
		want     []string
	}{
		{aCrt, bKey, []string{bKey, "does not match"}},
		{garbage, aKey, []string{garbage, "reading the certificate", "no start line"}},
		{aCrt, garbage, []string{garbage, "reading the private key"}},
		{aCrt, encrypted, []string{encrypted, "reading the private key"}},
		{filepath.Join(dir, "missing"), aKey, []string{"missing", "no such file"}},
	} {
		_, err := Load(c.crt, c.key)
		if err == nil {
			t.Errorf("Load(%s, %s) succeeded", c.crt, c.key)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Load(%s, %s): %q lacks %q", c.crt, c.key, err, w)
			}
		}
	}
}

// Create refuses to replace files and writes nothing then; Write replaces them with fresh
// files (mode 0600 for a key whose old file was 0644) and replaces a symbolic link rather
// than writing through it.
func TestWriteAndCreate(t *testing.T) {
	dir := t.TempDir()
	p := issue(t, Spec{CommonName: "x", Key: ECDSAP256})
	crt, key := Paths(dir, "x")
	if err := p.Create(dir, "x"); err != nil {
		t.Fatal(err)
	}
	checkMode(t, key, 0o600)
	if b, _ := os.ReadFile(key); !bytes.HasPrefix(b, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Errorf("the key file is not PKCS#8 PEM: %.40q", b)
	}
	if err := p.Create(dir, "x"); !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), crt) {
		t.Errorf("Create over existing files: %v", err)
	}
	os.Remove(key)
	if err := p.Create(dir, "x"); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create over an existing certificate: %v", err)
	}
	if _, err := os.Lstat(key); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Create failed but wrote the key: %v", err)
	}

	os.WriteFile(key, []byte("old"), 0o644)
	os.Chmod(key, 0o644)
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("keep"), 0o644)
	os.Remove(crt)
	if err := os.Symlink(target, crt); err != nil {
		t.Fatal(err)
	}
	if err := p.Write(dir, "x"); err != nil {
		t.Fatal(err)
	}
	checkMode(t, key, 0o600)
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("Write wrote through a symbolic link: %q", b)
	}
	if fi, err := os.Lstat(crt); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("the certificate: %v %v", fi, err)
	}
	if q, err := Load(crt, key); err != nil || !bytes.Equal(q.Cert.DER(), p.Cert.DER()) {
		t.Errorf("Load after Write: %v", err)
	}
}

func TestBadSpecs(t *testing.T) {
	ca := issue(t, Spec{CommonName: "ca", IsCA: true, Key: ECDSAP256})
	for name, spec := range map[string]Spec{
		"unknown key type":       {CommonName: "x", Key: "dsa"},
		"no common name":         {Key: ECDSAP256},
		"host with a comma":      {CommonName: "x", Key: ECDSAP256, Hosts: []string{"a,DNS:b"}},
		"host with a space":      {CommonName: "x", Key: ECDSAP256, Hosts: []string{"a b"}},
		"ends before it begins":  {CommonName: "x", Key: ECDSAP256, NotBefore: time.Hour, NotAfter: time.Minute},
		"issuer without its key": {CommonName: "x", Key: ECDSAP256, Issuer: &Pair{Cert: ca.Cert}},
		"common name too long":   {CommonName: strings.Repeat("x", 65), Key: ECDSAP256},
	} {
		if _, err := Issue(spec); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	// An issuer whose key is not its certificate's.
	other := issue(t, Spec{CommonName: "other", Key: ECDSAP256})
	_, err := Issue(Spec{CommonName: "x", Key: ECDSAP256, Issuer: &Pair{Cert: ca.Cert, Key: other.Key}})
	if err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched issuer: %v", err)
	}
}

// Serial numbers are random: twenty certificates, twenty serials.
func TestSerialsDiffer(t *testing.T) {
	ca := issue(t, Spec{CommonName: "ca", IsCA: true, Key: ECDSAP256})
	seen := map[string]bool{}
	for range 20 {
		c := parse(t, issue(t, Spec{CommonName: "x", Key: ECDSAP256, Issuer: ca}).Cert)
		if seen[c.SerialNumber.String()] {
			t.Fatalf("serial %x twice", c.SerialNumber)
		}
		seen[c.SerialNumber.String()] = true
	}
}

// Under the FIPS provider (OPENSSL_CONF naming testdata/fips/build.sh's configuration), keys
// are made by the fips provider and the chain still verifies. The work runs in a child
// process: OpenSSL reads its configuration once per process.
func TestFIPS(t *testing.T) {
	if os.Getenv("OPENSSL_CONF") == "" {
		for _, k := range []KeyType{RSA2048, ECDSAP256} {
			if prov, err := Provider(k); err != nil || prov != "default" {
				t.Errorf("%s: provider %q, %v; want default", k, prov, err)
			}
		}
	}
	fips := os.Getenv("TLSZMQ_FIPS_DIR")
	if fips == "" {
		if os.Getenv("TLSZMQ_REQUIRE_FIPS") == "1" {
			t.Fatal("TLSZMQ_REQUIRE_FIPS=1 but TLSZMQ_FIPS_DIR is not set: run testdata/fips/build.sh")
		}
		t.Skip("TLSZMQ_FIPS_DIR not set: the FIPS provider was not built (make test builds it)")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFIPSChild$", "-test.v")
	cmd.Env = append(os.Environ(), "CERTGEN_FIPS_CHILD="+dir,
		"OPENSSL_CONF="+filepath.Join(fips, "openssl-fips.cnf"), "OPENSSL_MODULES="+fips)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestFIPSChild") {
		t.Fatalf("the FIPS child: %v\n%s", err, out)
	}
	for _, name := range []string{"server-rsa", "server-ec"} {
		openssl(t, "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", filepath.Join(dir, "ca.crt"), filepath.Join(dir, name+".crt"))
	}
}

func TestFIPSChild(t *testing.T) {
	dir := os.Getenv("CERTGEN_FIPS_CHILD")
	if dir == "" {
		t.Skip("run by TestFIPS")
	}
	for _, k := range []KeyType{RSA2048, ECDSAP256} {
		if prov, err := Provider(k); err != nil || prov != "fips" {
			t.Fatalf("%s: provider %q, %v; want fips", k, prov, err)
		}
	}
	ca := issue(t, Spec{CommonName: "FIPS CA", IsCA: true})
	writePair(t, ca, dir, "ca")
	loaded, err := Load(Paths(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]KeyType{"server-rsa": RSA2048, "server-ec": ECDSAP256} {
		writePair(t, issue(t, Spec{CommonName: "localhost", Hosts: hosts, Key: k, Server: true, Issuer: loaded}), dir, name)
	}
}

// ---- helpers ----

func issue(t *testing.T, spec Spec) *Pair {
	t.Helper()
	p, err := Issue(spec)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func writePair(t *testing.T, p *Pair, dir, name string) {
	t.Helper()
	if err := p.Write(dir, name); err != nil {
		t.Fatal(err)
	}
	_, key := Paths(dir, name)
	checkMode(t, key, 0o600)
}

func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
		t.Errorf("%s: mode %v, %v; want %v", path, fi.Mode().Perm(), err, want)
	}
}

func parse(t *testing.T, c *Certificate) *x509.Certificate {
	t.Helper()
	x, err := x509.ParseCertificate(c.DER())
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func critical(c *x509.Certificate, oid string) bool {
	for _, e := range c.Extensions {
		if e.Id.String() == oid {
			return e.Critical
		}
	}
	return false
}

// keyID is RFC 5280's method 1 key identifier: the SHA-1 of the subjectPublicKey bits.
func keyID(t *testing.T, c *x509.Certificate) []byte {
	var spki struct {
		Algorithm asn1.RawValue
		Key       asn1.BitString
	}
	if _, err := asn1.Unmarshal(c.RawSubjectPublicKeyInfo, &spki); err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(spki.Key.Bytes)
	return sum[:]
}

// openssl runs the openssl command and fails the test unless it succeeds.
func openssl(t *testing.T, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("the openssl command is needed (make deps installs it): %v", err)
	}
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if args[0] == "verify" && !strings.HasSuffix(strings.TrimSpace(string(out)), ": OK") {
		t.Fatalf("openssl %s:\n%s", strings.Join(args, " "), out)
	}
}

func tlsCert(t *testing.T, p *Pair) tls.Certificate {
	t.Helper()
	certPEM, _ := p.Cert.MarshalPEM()
	keyPEM, _ := p.Key.MarshalPEM()
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// handshake runs a TLS handshake with Go's crypto/tls over a pipe, each side verifying the
// other's certificate against roots, and one message each way.
func handshake(server, client tls.Certificate, roots *x509.CertPool, serverName string) error {
	a, b := net.Pipe()
	deadline := time.Now().Add(20 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	// No session tickets: the server would write them while the client, on an unbuffered pipe,
	// writes its message.
	srv := tls.Server(a, &tls.Config{Certificates: []tls.Certificate{server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots,
		SessionTicketsDisabled: true})
	// The pipe is closed under the TLS connections: their Close would wait, up to 5 s, for
	// the peer to read a close_notify alert.
	defer a.Close()
	defer b.Close()
	cli := tls.Client(b, &tls.Config{Certificates: []tls.Certificate{client}, RootCAs: roots, ServerName: serverName})
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
	if _, err := cli.Write([]byte("ping")); err != nil {
		return errors.Join(err, <-done)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(cli, buf); err != nil {
		return errors.Join(err, <-done)
	}
	if err := <-done; err != nil {
		return err
	}
	if string(buf) != "ping" {
		return errors.New("the echo came back as " + string(buf))
	}
	return nil
}
