package tlszmq

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"
)

// A client that verifies and was given no server name checks the certificate against the
// host of its tcp:// endpoint: a certificate for another host is refused, one for the
// endpoint's address accepted; with VerifyChainOnly the other host's certificate passes too,
// and the Context said so once.
func TestClientChecksEndpointHost(t *testing.T) {
	for _, c := range []struct {
		cert      string
		chainOnly bool
		ok        bool
	}{{"wronghost", false, false}, {"server", false, true}, {"wronghost", true, true}} {
		name := c.cert
		if c.chainOnly {
			name += "/VerifyChainOnly"
		}
		t.Run(name, func(t *testing.T) {
			srv := startServer(t, serverConfig(c.cert), "tcp://127.0.0.1:*", echo, nil)
			var logs bytes.Buffer
			cfg := &Config{CAFile: cert("ca.crt"), VerifyChainOnly: c.chainOnly, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			cctx := mustContext(t, RoleClient, cfg)
			for i := range 2 { // two clients, one warning
				cl, err := NewClient(cctx, srv.Endpoint(), &ClientOptions{Timeout: 5 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				_, err = cl.Request(ctxTimeout(t, 10*time.Second), []byte("hello"))
				cl.Close()
				if c.ok && err != nil {
					t.Fatalf("client %d: %v", i, err)
				}
				if !c.ok && (err == nil || !strings.Contains(err.Error(), "IP address mismatch")) {
					t.Fatalf("certificate for wrong.example at %s: %v, want an IP address mismatch", srv.Endpoint(), err)
				}
				if i == 0 {
					t.Logf("%s: %v", srv.Endpoint(), err)
				}
			}
			warnings := strings.Count(logs.String(), "level=WARN")
			if c.chainOnly && (warnings != 1 || !strings.Contains(logs.String(), "VerifyChainOnly")) {
				t.Errorf("VerifyChainOnly logged %q, want one warning", logs.String())
			}
			if !c.chainOnly && warnings != 0 {
				t.Errorf("logged %q", logs.String())
			}
		})
	}
}

// Without a host to check (ipc, inproc, a client that binds), a verifying client needs a name:
// NewClient and NewClientEngine say so and how, and VerifyChainOnly or a name lets them go on.
func TestVerifyingClientWithoutName(t *testing.T) {
	verifying := mustContext(t, RoleClient, &Config{CAFile: cert("ca.crt")})
	for _, c := range []struct {
		endpoint string
		opts     *ClientOptions
	}{
		{"ipc://" + t.TempDir() + "/s.ipc", nil},
		{"inproc://no-host", nil},
		{"tcp://127.0.0.1:5999", &ClientOptions{Bind: true}},
	} {
		_, err := NewClient(verifying, c.endpoint, c.opts)
		if !errors.Is(err, ErrNoServerName) || !strings.Contains(err.Error(), "ServerName") || !strings.Contains(err.Error(), c.endpoint) {
			t.Errorf("NewClient(%s): %v, want ErrNoServerName naming the endpoint and the fix", c.endpoint, err)
		}
	}
	_, err := NewClientEngine(verifying)
	if !errors.Is(err, ErrNoServerName) || !strings.Contains(err.Error(), "Config.ServerName") {
		t.Errorf("NewClientEngine: %v, want ErrNoServerName naming the fix", err)
	}
	cl, err := NewClient(verifying, "inproc://no-host", &ClientOptions{ServerName: "localhost"})
	if err != nil {
		t.Errorf("NewClient with ClientOptions.ServerName: %v", err)
	} else {
		cl.Close()
	}
	for _, cfg := range []*Config{{CAFile: cert("ca.crt"), VerifyChainOnly: true}, {InsecureSkipVerify: true}} {
		ctx := mustContext(t, RoleClient, cfg)
		e, err := NewClientEngine(ctx)
		if err != nil {
			t.Errorf("VerifyChainOnly %v, InsecureSkipVerify %v: %v", cfg.VerifyChainOnly, cfg.InsecureSkipVerify, err)
			continue
		}
		e.Close()
	}
	for _, bad := range []struct {
		role Role
		cfg  *Config
	}{
		{RoleClient, &Config{VerifyChainOnly: true, InsecureSkipVerify: true}},
		{RoleServer, &Config{CertFile: cert("server.crt"), KeyFile: cert("server.key"), VerifyChainOnly: true}},
	} {
		if _, err := NewContext(bad.role, bad.cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%v %+v: %v, want ErrInvalidConfig", bad.role, bad.cfg, err)
		}
	}
}

// testPKI is a CA made for a test (newTestPKI); leaf makes server certificates it signs, for a
// CN and DNS names (none: a CN-only certificate, as the C++ fork's).
type testPKI struct {
	caPEM []byte
	key   *ecdsa.PrivateKey
	ca    *x509.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "name test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return &testPKI{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key, ca: ca}
}

// leaf returns a server Config with a certificate for cn and dns.
func (p *testPKI) leaf(t *testing.T, cn string, dns ...string) *Config {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		DNSNames: dns, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return &Config{CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})}
}

// A wildcard is a whole label: "w*.example.com" matches no name (OpenSSL's default would match
// "www.example.com"), "*.example.com" matches "www.example.com" and not "example.com". A
// certificate with only a CN (no subject alternative name), as the C++ fork's
// "*.fish-test.com", is checked against its CN; VerifyChainOnly accepts it for any name.
func TestHostNameWildcards(t *testing.T) {
	pki := newTestPKI(t)
	for _, c := range []struct {
		cn        string
		dns       []string
		name      string
		chainOnly bool
		ok        bool
	}{
		{"partial", []string{"w*.example.com"}, "www.example.com", false, false},
		{"full", []string{"*.example.com"}, "www.example.com", false, true},
		{"full", []string{"*.example.com"}, "example.com", false, false},
		{"full", []string{"*.example.com"}, "a.b.example.com", false, false},
		{"*.fish-test.com", nil, "server1.fish-test.com", false, true},
		{"*.fish-test.com", nil, "localhost", false, false},
		{"*.fish-test.com", nil, "localhost", true, true},
	} {
		ccfg := &Config{CAPEM: pki.caPEM, ServerName: c.name, VerifyChainOnly: c.chainOnly}
		cl, s := newPair(t, ccfg, pki.leaf(t, c.cn, c.dns...))
		cerr, _ := handshake(cl, s)
		if c.ok != (cerr == nil) {
			t.Errorf("certificate CN %q DNS %q, name %q, VerifyChainOnly %v: %v", c.cn, c.dns, c.name, c.chainOnly, cerr)
		}
		if !c.ok {
			var v *CertificateVerificationError
			if !errors.As(cerr, &v) || !strings.Contains(v.Reason, "hostname mismatch") {
				t.Errorf("name %q against %q: %v, want a hostname mismatch", c.name, c.dns, cerr)
			}
		}
	}
}
