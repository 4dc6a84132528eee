package tlszmq

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq/internal/certgen"
)

// pki is a CA of the test's own, in a temporary folder, issuing certificates and CRLs on
// demand (ECDSA P-256 keys: quick to make). testdata/certs is left alone.
type pki struct {
	t      testing.TB
	dir    string
	ca     *certgen.Pair
	caFile string
}

func newPKI(t testing.TB, name string) *pki {
	t.Helper()
	p := &pki{t: t, dir: t.TempDir()}
	p.ca = p.pair(certgen.Spec{CommonName: name, IsCA: true})
	p.caFile = p.write(name, p.ca)
	return p
}

// pair issues a certificate, by the CA unless spec names another issuer.
func (p *pki) pair(spec certgen.Spec) *certgen.Pair {
	p.t.Helper()
	spec.Key = certgen.ECDSAP256
	if !spec.IsCA && spec.Issuer == nil {
		spec.Issuer = p.ca
	}
	pair, err := certgen.Issue(spec)
	if err != nil {
		p.t.Fatal(err)
	}
	return pair
}

// write stores a pair as name.crt and name.key (chain after the certificate) and returns the
// certificate's path.
func (p *pki) write(name string, pair *certgen.Pair, chain ...*certgen.Pair) string {
	p.t.Helper()
	if err := pair.Write(p.dir, name, chain...); err != nil {
		p.t.Fatal(err)
	}
	crt, _ := certgen.Paths(p.dir, name)
	return crt
}

// server issues a server certificate for localhost and 127.0.0.1, and returns its files.
func (p *pki) server(name string) (crt, key string) {
	p.write(name, p.pair(certgen.Spec{CommonName: "localhost", Hosts: []string{"localhost", "127.0.0.1"}, Server: true}))
	return certgen.Paths(p.dir, name)
}

// client issues a client certificate whose common name is name, and returns it with its files.
func (p *pki) client(name string) (pair *certgen.Pair, crt, key string) {
	pair = p.pair(certgen.Spec{CommonName: name, Client: true})
	p.write(name, pair)
	crt, key = certgen.Paths(p.dir, name)
	return pair, crt, key
}

// crl writes issuer's CRL revoking the given certificates as file (in the PKI's folder unless
// file is absolute) and returns its path.
func (p *pki) crl(file string, spec certgen.CRLSpec) string {
	p.t.Helper()
	if spec.Issuer == nil {
		spec.Issuer = p.ca
	}
	pem, err := certgen.CRL(spec)
	if err != nil {
		p.t.Fatal(err)
	}
	if !filepath.IsAbs(file) {
		file = filepath.Join(p.dir, file)
	}
	if err := os.WriteFile(file, pem, 0o644); err != nil {
		p.t.Fatal(err)
	}
	return file
}

// revoking is a CRLSpec of the PKI's CA listing pairs.
func revoking(pairs ...*certgen.Pair) certgen.CRLSpec {
	spec := certgen.CRLSpec{ThisUpdate: -time.Minute}
	for _, p := range pairs {
		spec.Revoked = append(spec.Revoked, p.Cert)
	}
	return spec
}

// checkRevoked fails unless err is a verification failure "certificate revoked" (23).
func checkRevoked(t *testing.T, side string, err error) {
	t.Helper()
	var v *CertificateVerificationError
	if err == nil || !errors.As(err, &v) || v.Code != 23 || !strings.Contains(err.Error(), "certificate revoked") {
		t.Errorf("%s: %v, want certificate verify failed: certificate revoked (23)", side, err)
	}
}

// checkAlert fails unless err carries the alert text, received (sent false) or sent.
func checkAlert(t *testing.T, side string, err error, text string, sent bool) {
	t.Helper()
	var a *AlertError
	if !errors.As(err, &a) || a.Text != text || a.Sent != sent {
		t.Errorf("%s: %v, want the alert %q (sent %v)", side, err, text, sent)
	}
}

var bothVersions = []struct {
	name string
	v    uint16
}{{"TLS1.2", VersionTLS12}, {"TLS1.3", VersionTLS13}}

// A server with a CRL refuses a client whose certificate it lists, with "certificate revoked"
// and the alert certificate_revoked, and takes a client it does not list.
func TestCRLRevokedClientRefused(t *testing.T) {
	p := newPKI(t, "CRL test CA")
	scrt, skey := p.server("server")
	revoked, rcrt, rkey := p.client("revoked client")
	_, gcrt, gkey := p.client("good client")
	crl := p.crl("ca.crl", revoking(revoked))
	for _, ver := range bothVersions {
		t.Run(ver.name, func(t *testing.T) {
			scfg := &Config{CertFile: scrt, KeyFile: skey, CAFile: p.caFile, ClientAuth: RequireAndVerifyClientCert,
				CRLFile: crl, MaxVersion: ver.v}
			client := func(crt, key string) *Config {
				return &Config{CertFile: crt, KeyFile: key, CAFile: p.caFile, ServerName: "localhost", MaxVersion: ver.v}
			}
			c, s := newPair(t, client(rcrt, rkey), scfg)
			cerr, serr := handshake(c, s)
			checkRevoked(t, "server", serr)
			checkAlert(t, "server", serr, "certificate revoked", true)
			checkAlert(t, "client", cerr, "certificate revoked", false)

			c, s = newPair(t, client(gcrt, gkey), scfg)
			if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
				t.Fatalf("a client the CRL does not list: %v / %v", cerr, serr)
			}
			if !bytesEqual(roundTrip(t, c, s, []byte("ping")), "ping") {
				t.Error("no data after the handshake")
			}
		})
	}
}

func bytesEqual(b []byte, s string) bool { return string(b) == s }

// A client with a CRL refuses a server whose certificate it lists; the server is told with the
// alert certificate_revoked.
func TestCRLRevokedServerRefused(t *testing.T) {
	p := newPKI(t, "CRL test CA")
	revoked := p.pair(certgen.Spec{CommonName: "localhost", Hosts: []string{"localhost"}, Server: true})
	p.write("revoked-server", revoked)
	rcrt, rkey := certgen.Paths(p.dir, "revoked-server")
	gcrt, gkey := p.server("good-server")
	crl := p.crl("ca.crl", revoking(revoked))
	for _, ver := range bothVersions {
		t.Run(ver.name, func(t *testing.T) {
			ccfg := &Config{CAFile: p.caFile, CRLFile: crl, ServerName: "localhost", MaxVersion: ver.v}
			c, s := newPair(t, ccfg, &Config{CertFile: rcrt, KeyFile: rkey})
			cerr, serr := handshake(c, s)
			checkRevoked(t, "client", cerr)
			checkAlert(t, "client", cerr, "certificate revoked", true)
			checkAlert(t, "server", serr, "certificate revoked", false)

			c, s = newPair(t, ccfg, &Config{CertFile: gcrt, KeyFile: gkey})
			if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
				t.Fatalf("a server the CRL does not list: %v / %v", cerr, serr)
			}
		})
	}
}

// Go's crypto/tls, as the client, sees a tlszmq server's refusal of its revoked certificate as
// the alert certificate_revoked; as the server, it receives that alert from a tlszmq client
// that finds the server's certificate revoked.
func TestCRLWithGoTLS(t *testing.T) {
	p := newPKI(t, "CRL test CA")
	scrt, skey := p.server("server")
	revokedClient, rcrt, rkey := p.client("revoked client")
	revokedServer := p.pair(certgen.Spec{CommonName: "localhost", Hosts: []string{"localhost"}, Server: true})
	p.write("revoked-server", revokedServer)
	crl := p.crl("ca.crl", revoking(revokedClient, revokedServer))
	roots := x509.NewCertPool()
	roots.AddCert(p.caCert())
	clientPair, err := tls.LoadX509KeyPair(rcrt, rkey)
	if err != nil {
		t.Fatal(err)
	}
	for _, ver := range bothVersions {
		t.Run("crypto/tls client/"+ver.name, func(t *testing.T) {
			sctx := mustContext(t, RoleServer, &Config{CertFile: scrt, KeyFile: skey, CAFile: p.caFile,
				ClientAuth: RequireAndVerifyClientCert, CRLFile: crl})
			l := listenEngines(t, sctx)
			_, err := goTLSExchange(l.ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "localhost",
				Certificates: []tls.Certificate{clientPair}, MinVersion: ver.v, MaxVersion: ver.v})
			if err == nil || !strings.Contains(err.Error(), "revoked certificate") {
				t.Errorf("crypto/tls: %v, want the alert certificate_revoked (tls: revoked certificate)", err)
			}
			checkRevoked(t, "engine", l.lastErr())
		})
	}
	serverPair, err := tls.LoadX509KeyPair(certgen.Paths(p.dir, "revoked-server"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ver := range bothVersions {
		t.Run("crypto/tls server/"+ver.name, func(t *testing.T) {
			c, err := NewClientEngine(mustContext(t, RoleClient, &Config{CAFile: p.caFile, CRLFile: crl, ServerName: "localhost", MaxVersion: ver.v}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			conn, result := engineOverPipe(t, c)
			ts := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{serverPair}, MinVersion: ver.v, MaxVersion: ver.v})
			ts.SetDeadline(time.Now().Add(10 * time.Second))
			herr := ts.Handshake()
			res := <-result
			checkRevoked(t, "engine", res.err)
			switch {
			case herr == nil:
				t.Error("crypto/tls server: the handshake succeeded")
			case ver.v == VersionTLS13:
				// OpenSSL 3.0's client sends this alert before it writes under its handshake
				// keys: in plaintext (15 03 03 00 02 02 2c), which crypto/tls, expecting
				// encrypted records by then, reads as a bad record. The alert itself is checked
				// between engines (TestCRLRevokedServerRefused).
				t.Logf("crypto/tls server: %v", herr)
			case !strings.Contains(herr.Error(), "revoked certificate"):
				t.Errorf("crypto/tls server: %v, want the alert certificate_revoked received", herr)
			}
		})
	}
}

// caCert returns the PKI's CA certificate, parsed by crypto/x509.
func (p *pki) caCert() *x509.Certificate {
	p.t.Helper()
	c, err := x509.ParseCertificate(p.ca.Cert.DER())
	if err != nil {
		p.t.Fatal(err)
	}
	return c
}

// With CRL checking on, the whole chain is checked: a chain whose intermediate's issuer (the
// root) has no CRL is refused with "unable to get certificate CRL"; with both CRLs it is
// taken, from CRLFile or from CRLDir (named by `openssl rehash`); an intermediate the root's CRL
// revokes is refused though the leaf is not revoked.
func TestCRLWholeChain(t *testing.T) {
	p := newPKI(t, "CRL root CA")
	inter := p.pair(certgen.Spec{CommonName: "CRL intermediate CA", IsCA: true, Issuer: p.ca})
	leaf := p.pair(certgen.Spec{CommonName: "localhost", Hosts: []string{"localhost"}, Server: true, Issuer: inter})
	scrt := p.write("leaf", leaf, inter)
	_, skey := certgen.Paths(p.dir, "leaf")
	interCRL := p.crl("inter.crl", certgen.CRLSpec{Issuer: inter})
	rootCRL := p.crl("root.crl", certgen.CRLSpec{})
	rootRevoking := p.crl("root-revoking.crl", revoking(inter))
	both := filepath.Join(p.dir, "both.crl")
	concat(t, both, interCRL, rootCRL)
	bothRevoking := filepath.Join(p.dir, "both-revoking.crl")
	concat(t, bothRevoking, interCRL, rootRevoking)

	crlDir := filepath.Join(p.dir, "crls")
	if err := os.Mkdir(crlDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{interCRL, rootCRL} {
		b, _ := os.ReadFile(f)
		if err := os.WriteFile(filepath.Join(crlDir, filepath.Base(f)+".pem"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("openssl", "rehash", crlDir).CombinedOutput(); err != nil {
		t.Fatalf("openssl rehash: %v\n%s", err, out)
	}

	try := func(f func(*Config)) error {
		ccfg := &Config{CAFile: p.caFile, ServerName: "localhost"}
		f(ccfg)
		c, s := newPair(t, ccfg, &Config{CertFile: scrt, KeyFile: skey})
		cerr, _ := handshake(c, s)
		return cerr
	}
	err := try(func(c *Config) { c.CRLFile = interCRL })
	var v *CertificateVerificationError
	if !errors.As(err, &v) || v.Code != 3 || !strings.Contains(err.Error(), "unable to get certificate CRL") {
		t.Errorf("the intermediate's CRL alone: %v, want unable to get certificate CRL (3)", err)
	}
	if err := try(func(c *Config) { c.CRLFile = both }); err != nil {
		t.Errorf("both CRLs in CRLFile: %v", err)
	}
	if err := try(func(c *Config) { c.CRLDir = crlDir }); err != nil {
		t.Errorf("both CRLs in CRLDir: %v", err)
	}
	err = try(func(c *Config) { c.CRLFile = bothRevoking })
	checkRevoked(t, "revoked intermediate", err)
	if errors.As(err, &v) && (len(v.UnverifiedChain) == 0 || v.UnverifiedChain[0].Subject.CommonName != "localhost") {
		t.Errorf("unverified chain %v", v.UnverifiedChain)
	}
}

func concat(t *testing.T, to string, from ...string) {
	t.Helper()
	var all []byte
	for _, f := range from {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	if err := os.WriteFile(to, all, 0o644); err != nil {
		t.Fatal(err)
	}
}

// CRLs that cannot be used are refused when the Context is made, the error naming the file;
// CRLs where nothing is verified are refused as a configuration that cannot work.
func TestCRLLoadErrors(t *testing.T) {
	p := newPKI(t, "CRL test CA")
	scrt, skey := p.server("server")
	expired := p.crl("expired.crl", certgen.CRLSpec{ThisUpdate: -48 * time.Hour, NextUpdate: -24 * time.Hour})
	future := p.crl("future.crl", certgen.CRLSpec{ThisUpdate: 24 * time.Hour, NextUpdate: 48 * time.Hour})
	good := p.crl("good.crl", certgen.CRLSpec{})
	garbled := filepath.Join(p.dir, "garbled.crl")
	b, _ := os.ReadFile(good)
	os.WriteFile(garbled, []byte(strings.Replace(string(b), "\n", "\n!!", 3)), 0o644)
	emptyDir := t.TempDir()
	os.WriteFile(filepath.Join(emptyDir, "not-a-hash.r0"), b, 0o644)
	badDir := t.TempDir()
	os.WriteFile(filepath.Join(badDir, "0123abcd.r0"), b, 0o644)
	os.WriteFile(filepath.Join(badDir, "89abcdef.r0"), []byte("not a CRL\n"), 0o644)
	missing := filepath.Join(p.dir, "missing.crl")

	server := func(f func(*Config)) *Config {
		c := &Config{CertFile: scrt, KeyFile: skey, CAFile: p.caFile, ClientAuth: RequireAndVerifyClientCert}
		f(c)
		return c
	}
	cases := []struct {
		name string
		cfg  *Config
		want []string
	}{
		{"missing file", server(func(c *Config) { c.CRLFile = missing }), []string{"loading the CRL file " + missing, "No such file or directory"}},
		{"a certificate, no CRL", server(func(c *Config) { c.CRLFile = scrt }), []string{"loading the CRL file " + scrt, "no CRL"}},
		{"garbled", server(func(c *Config) { c.CRLFile = garbled }), []string{"loading the CRL file " + garbled}},
		{"expired", server(func(c *Config) { c.CRLFile = expired }), []string{"loading the CRL file " + expired, "has expired", "CRL test CA"}},
		{"not valid yet", server(func(c *Config) { c.CRLFile = future }), []string{"loading the CRL file " + future, "not valid yet"}},
		{"missing folder", server(func(c *Config) { c.CRLDir = missing }), []string{"loading the CRL directory " + missing, "No such file or directory"}},
		{"folder without a hashed CRL", server(func(c *Config) { c.CRLDir = emptyDir }), []string{"loading the CRL directory " + emptyDir, "no CRL in the directory"}},
		{"folder with a bad CRL", server(func(c *Config) { c.CRLDir = badDir }), []string{"loading the CRL file " + filepath.Join(badDir, "89abcdef.r0")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewContext(RoleServer, tc.cfg)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%v, want an *Error", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
		})
	}
	for name, tc := range map[string]struct {
		role Role
		cfg  *Config
	}{
		"server without ClientAuth": {RoleServer, &Config{CertFile: scrt, KeyFile: skey, CRLFile: good}},
		"client verifying nothing":  {RoleClient, &Config{InsecureSkipVerify: true, CRLFile: good}},
	} {
		if _, err := NewContext(tc.role, tc.cfg); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "CRLFile") {
			t.Errorf("%s: %v, want ErrInvalidConfig naming CRLFile", name, err)
		}
	}
}

// The CRLs are part of the verification policy: a session made before a CRL is loaded does
// not resume on a server with it, so that a revoked client cannot skip its check with a ticket.
func TestCRLInSessionContext(t *testing.T) {
	p := newPKI(t, "CRL test CA")
	a := p.crl("a.crl", certgen.CRLSpec{})
	b := p.crl("b.crl", certgen.CRLSpec{Number: 2})
	base := &Config{ClientAuth: RequireAndVerifyClientCert, CAFile: p.caFile}
	ref := string(sessionContext(base))
	seen := map[string]string{ref: "none"}
	for name, f := range map[string]func(*Config){
		"CRLFile a": func(c *Config) { c.CRLFile = a },
		"CRLFile b": func(c *Config) { c.CRLFile = b },
		"CRLDir":    func(c *Config) { c.CRLDir = p.dir },
	} {
		c := base.Clone()
		f(c)
		sid := string(sessionContext(c))
		if other, ok := seen[sid]; ok {
			t.Errorf("%s: the same session context as %s", name, other)
		}
		seen[sid] = name
	}
}
