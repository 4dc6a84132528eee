package tlszmq

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"testing"
)

// A server whose private key is on a SoftHSM2 token, named by KeyURI, completes handshakes
// (RSA and ECDSA keys, TLS 1.2 and 1.3) with a client that trusts its certificate. The key made
// for the token exists nowhere else: its import file was deleted before the Context was made.
func TestPKCS11KeyHandshake(t *testing.T) {
	h := needSoftHSM(t)
	if _, err := os.Stat(h.freshFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the imported key file %s is still there (%v)", h.freshFile, err)
	}
	cases := []struct {
		name       string
		scfg, ccfg *Config
	}{
		{"rsa", h.serverConfig(hsmRSAKey), clientConfig()},
		{"ecdsa", h.serverConfig(hsmECKey), clientConfig()},
		{"fresh", &Config{CertPEM: h.freshCert, KeyURI: h.URI(hsmToken, hsmFreshKey), KeyPassword: hsmPIN},
			&Config{CAPEM: h.freshCert, ServerName: "localhost"}},
	}
	for _, tc := range cases {
		for _, ver := range []uint16{VersionTLS12, VersionTLS13} {
			t.Run(tc.name+"/"+VersionName(ver), func(t *testing.T) {
				ccfg := tc.ccfg.Clone()
				ccfg.MinVersion, ccfg.MaxVersion = ver, ver
				c, s := newPair(t, ccfg, tc.scfg)
				if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
					t.Fatalf("handshake: client %v, server %v", cerr, serr)
				}
				if got := roundTrip(t, c, s, []byte("hello")); string(got) != "hello" {
					t.Fatalf("server read %q", got)
				}
				if got := roundTrip(t, s, c, []byte("world")); string(got) != "world" {
					t.Fatalf("client read %q", got)
				}
			})
		}
	}
}

// Go's crypto/tls, a client that shares no code with tlszmq, verifies the signature made on
// the token.
func TestPKCS11KeyGoTLS(t *testing.T) {
	h := needSoftHSM(t)
	sctx := mustContext(t, RoleServer, &Config{CertPEM: h.freshCert, KeyURI: h.URI(hsmToken, hsmFreshKey), KeyPassword: hsmPIN})
	l := listenEngines(t, sctx)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(h.freshCert)
	for _, ver := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		if _, err := goTLSExchange(l.ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost",
			MinVersion: ver, MaxVersion: ver}); err != nil {
			t.Errorf("crypto/tls %x: %v", ver, err)
		}
	}
	// And a pool without the certificate is refused: the exchange above proved something.
	if _, err := goTLSExchange(l.ln.Addr().String(), &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "localhost"}); err == nil {
		t.Error("crypto/tls trusted a certificate it has no CA for")
	}
}

// The failures name their cause: a wrong PIN, no PIN, a key or token that is not there, a
// certificate that is not the key's, a module that does not exist; the PIN never shows.
func TestPKCS11KeyErrors(t *testing.T) {
	h := needSoftHSM(t)
	cases := []struct {
		name string
		cfg  *Config
		want []string // each must appear in the error
	}{
		// hsmPINToken is never logged into with the right PIN: PKCS#11 keeps a process's login.
		{"wrong PIN", &Config{CertFile: cert("server.crt"), KeyURI: h.URI(hsmPINToken, hsmRSAKey), KeyPassword: "wrong-PIN-9"},
			[]string{"PIN incorrect", "refused the PIN"}},
		{"wrong pin-value", &Config{CertFile: cert("server.crt"), KeyURI: strings.Replace(h.URI(hsmPINToken, hsmRSAKey), "?", "?pin-value=wrong-PIN-4&", 1)},
			[]string{"PIN incorrect", "pin-value=***"}},
		{"wrong pin-value after &", &Config{CertFile: cert("server.crt"), KeyURI: strings.Replace(h.URI(hsmPINToken, hsmRSAKey), ";type=private?", ";type=private&pin-value=wrong-PIN-4?", 1)},
			[]string{"PIN incorrect", "refused the PIN", "pin-value=***"}},
		{"no PIN", &Config{CertFile: cert("server.crt"), KeyURI: h.URI(hsmPINToken, hsmRSAKey)},
			[]string{"no PIN was given"}},
		{"no such object", &Config{CertFile: cert("server.crt"), KeyURI: h.URI(hsmToken, "nope"), KeyPassword: hsmPIN},
			[]string{"object not found", "object=nope"}},
		{"no such token", &Config{CertFile: cert("server.crt"), KeyURI: h.URI("nope", hsmRSAKey), KeyPassword: hsmPIN},
			[]string{"object not found", "token=nope"}},
		{"certificate of another key", &Config{CertFile: cert("wronghost.crt"), KeyURI: h.URI(hsmToken, hsmRSAKey), KeyPassword: hsmPIN},
			[]string{"key values mismatch"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, err := NewContext(RoleServer, tc.cfg)
			if err == nil {
				ctx.Close()
				t.Fatal("NewContext succeeded")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v is not an *Error", err, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if strings.Contains(err.Error(), "wrong-PIN-4") || strings.Contains(err.Error(), "wrong-PIN-9") {
				t.Errorf("the error shows the PIN: %v", err)
			}
			t.Logf("%v", err)
		})
	}
}

// A Config's KeyURI is checked before OpenSSL is asked anything.
func TestPKCS11KeyConfigChecks(t *testing.T) {
	cases := map[string]*Config{
		"not a pkcs11 URI":     {CertFile: cert("server.crt"), KeyURI: "file:server.key"},
		"KeyURI and KeyFile":   {CertFile: cert("server.crt"), KeyFile: cert("server.key"), KeyURI: "pkcs11:object=k"},
		"KeyURI and KeyPEM":    {CertFile: cert("server.crt"), KeyPEM: []byte("x"), KeyURI: "pkcs11:object=k"},
		"KeyURI without cert":  {KeyURI: "pkcs11:object=k"},
		"module-name":          {CertFile: cert("server.crt"), KeyURI: "pkcs11:object=k?module-name=softhsm2"},
		"bad module-path":      {CertFile: cert("server.crt"), KeyURI: "pkcs11:object=k?module-path=%zz"},
		"module-path twice":    {CertFile: cert("server.crt"), KeyURI: "pkcs11:object=k?module-path=/a.so&module-path=/b.so"},
		"upper-case scheme":    {CertFile: cert("server.crt"), KeyURI: "PKCS11:object=k"},
		"client KeyURI no crt": {KeyURI: "pkcs11:object=k"},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			role := RoleServer
			if strings.HasPrefix(name, "client") {
				role = RoleClient
			}
			ctx, err := NewContext(role, cfg)
			if err == nil {
				ctx.Close()
				t.Fatal("NewContext succeeded")
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v is not ErrInvalidConfig", err)
			}
			t.Logf("%v", err)
		})
	}
	// pin-value is taken out of the URI the engine gets (libp11 prints that URI on its
	// standard error when a load fails), wherever it stands and whichever of ";", "?" and "&"
	// comes before it: libp11 splits on all three.
	for _, c := range []struct{ uri, engine, shown, pin, module string }{
		{"pkcs11:pin-value=1;token=a;object=b;type=private?module-path=/x%20y.so",
			"pkcs11:token=a;object=b;type=private", "pkcs11:token=a;object=b;type=private;pin-value=***?module-path=/x%20y.so", "1", "/x y.so"},
		{"pkcs11:token=a;object=b?pin-value=%32%33&module-path=/m.so",
			"pkcs11:token=a;object=b", "pkcs11:token=a;object=b;pin-value=***?module-path=/m.so", "23", "/m.so"},
		{"pkcs11:token=a;object=b;type=private&pin-value=4321",
			"pkcs11:token=a;object=b;type=private", "pkcs11:token=a;object=b;type=private;pin-value=***", "4321", ""},
		{"pkcs11:token=a;id=%01?type=private?pin-value=4321",
			"pkcs11:token=a;id=%01;type=private", "pkcs11:token=a;id=%01;type=private;pin-value=***", "4321", ""},
		{"pkcs11:object=b?pin-source=file:/run/pin",
			"pkcs11:object=b;pin-source=file:/run/pin", "pkcs11:object=b;pin-source=file:/run/pin", "", ""},
	} {
		k, err := parseKeyURI(c.uri)
		if err != nil {
			t.Fatalf("%s: %v", c.uri, err)
		}
		if k.engine != c.engine || k.shown != c.shown || k.pin != c.pin || k.module != c.module || !k.hasPIN {
			t.Errorf("%s: engine %q shown %q pin %q module %q hasPIN %v, want %q %q %q %q true",
				c.uri, k.engine, k.shown, k.pin, k.module, k.hasPIN, c.engine, c.shown, c.pin, c.module)
		}
	}
	// Refused, without quoting the PIN: what libp11 would read differently, or not at all.
	for _, uri := range []string{
		"pkcs11:pin-value=4321;object=a?pin-value=2",       // twice
		"pkcs11:object=a;pin-value=",                       // empty
		"pkcs11:object=a;pin-value=%004321",                // a NUL would cut it
		"pkcs11:object=a;PIN-VALUE=4321",                   // not an attribute libp11 reads
		"pkcs11:object=a;pin%2Dvalue=4321",                 // nor this
		"pkcs11:object=a;4321",                             // not name=value
		"pkcs11:object=a?module-path=./libsofthsm2.so",     // relative: the loader would search for it
		"pkcs11:object=a?module-path=/x.so&module-path=/y", // twice
		"pkcs11:",                       // no key named: libp11 takes the first one
		"pkcs11:token=a?pin-value=4321", // the same
	} {
		if _, err := parseKeyURI(uri); err == nil || strings.Contains(err.Error(), "4321") {
			t.Errorf("%s: %v, want an error without the PIN", uri, err)
		}
	}
}

// Reload loads the key from the token again: a Context whose certificate and key move from a
// file to the token, and back, serves with each.
func TestPKCS11KeyReload(t *testing.T) {
	h := needSoftHSM(t)
	sctx := mustContext(t, RoleServer, serverConfig("server"))
	cctx := mustContext(t, RoleClient, clientConfig())
	for i, cfg := range []*Config{h.serverConfig(hsmECKey), h.serverConfig(hsmRSAKey), serverConfig("server-ec"), h.serverConfig(hsmRSAKey)} {
		if err := sctx.Reload(cfg); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		c, s, cerr, serr := connect(t, cctx, sctx)
		if cerr != nil || serr != nil {
			t.Fatalf("reload %d: handshake: client %v, server %v", i, cerr, serr)
		}
		if got, want := peerSerial(t, c), serialOf(t, cfg.CertFile); got.Cmp(want) != 0 {
			t.Errorf("reload %d: the server presented serial %v, want %v", i, got, want)
		}
		c.Close()
		s.Close()
	}
	// A reload whose key the token refuses leaves the Context as it was.
	bad := h.serverConfig(hsmRSAKey)
	bad.KeyURI = h.URI(hsmToken, "nope")
	if err := sctx.Reload(bad); err == nil {
		t.Fatal("a reload naming a missing key succeeded")
	}
	if _, _, cerr, serr := connect(t, cctx, sctx); cerr != nil || serr != nil {
		t.Fatalf("after a refused reload: client %v, server %v", cerr, serr)
	}
}

// A second PKCS#11 module in the same process is refused with a reason: libp11 loads one.
func TestPKCS11KeyOneModule(t *testing.T) {
	h := needSoftHSM(t)
	mustContext(t, RoleServer, h.serverConfig(hsmRSAKey)) // the module is loaded now
	cfg := h.serverConfig(hsmRSAKey)
	cfg.KeyURI = strings.Replace(cfg.KeyURI, "module-path="+h.Module, "module-path=/usr/lib/other-pkcs11.so", 1)
	_, err := NewContext(RoleServer, cfg)
	if err == nil || !strings.Contains(err.Error(), "one module per process") {
		t.Fatalf("a second module: %v, want a refusal naming one module per process", err)
	}
}

// FIPS mode with a key on a token: the Context's TLS cryptography runs on the FIPS provider
// and the key's signatures in the module. The Context must be in FIPS mode (never a silent
// fallback) and complete handshakes over TLS 1.2 and 1.3.
func TestPKCS11KeyFIPS(t *testing.T) {
	h := needSoftHSM(t)
	dir := fipsDir(t)
	scfg := fipsConfig(dir, h.serverConfig(hsmRSAKey))
	sctx, err := NewContext(RoleServer, scfg)
	if err != nil {
		t.Fatalf("FIPS server Context with a key on a token: %v", err)
	}
	defer sctx.Close()
	if !sctx.FIPS() {
		t.Fatal("the Context is not in FIPS mode")
	}
	for _, ver := range []uint16{VersionTLS12, VersionTLS13} {
		ccfg := fipsConfig(dir, clientConfig())
		ccfg.MinVersion, ccfg.MaxVersion = ver, ver
		cctx := mustContext(t, RoleClient, ccfg)
		if _, _, cerr, serr := connect(t, cctx, sctx); cerr != nil || serr != nil {
			t.Errorf("%s: handshake: client %v, server %v", VersionName(ver), cerr, serr)
		}
	}
}
