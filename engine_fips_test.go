package tlszmq

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fipsDir returns the folder that testdata/fips/build.sh filled (TLSZMQ_FIPS_DIR). Without it
// the FIPS handshake tests cannot run: they skip, unless TLSZMQ_REQUIRE_FIPS=1 (make test and
// CI set it), when they fail.
func fipsDir(t *testing.T) string {
	dir := os.Getenv("TLSZMQ_FIPS_DIR")
	if dir == "" {
		if os.Getenv("TLSZMQ_REQUIRE_FIPS") == "1" {
			t.Fatal("TLSZMQ_REQUIRE_FIPS=1 but TLSZMQ_FIPS_DIR is not set: run testdata/fips/build.sh")
		}
		t.Skip("TLSZMQ_FIPS_DIR not set: the FIPS provider was not built (make test builds it)")
	}
	return dir
}

func fipsConfig(dir string, c *Config) *Config {
	c.FIPS = true
	c.FIPSConfigFile = filepath.Join(dir, "openssl-fips.cnf")
	c.FIPSModuleDir = dir
	return c
}

func TestFIPSUnavailable(t *testing.T) {
	empty := t.TempDir()
	// A configuration that activates a FIPS module which is not there: OpenSSL loads it
	// "successfully"; the Context must still refuse.
	missing := filepath.Join(empty, "openssl-fips.cnf")
	os.WriteFile(missing, []byte(`openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
fips = fips_sect
base = base_sect
[base_sect]
activate = 1
[fips_sect]
activate = 1
module-mac = 00:11
`), 0o644)
	cases := map[string]*Config{
		"no module, default configuration":      {FIPS: true, FIPSModuleDir: empty},
		"configuration naming a missing module": {FIPS: true, FIPSModuleDir: empty, FIPSConfigFile: missing},
		"missing configuration file":            {FIPS: true, FIPSModuleDir: empty, FIPSConfigFile: filepath.Join(empty, "nope.cnf")},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			ctx, err := NewContext(RoleClient, cfg)
			if err == nil {
				fips := ctx.FIPS()
				ctx.Close()
				t.Fatalf("NewContext succeeded (FIPS() = %v)", fips)
			}
			if !errors.Is(err, ErrFIPSUnavailable) {
				t.Errorf("error %q is not ErrFIPSUnavailable", err)
			}
			var e *Error
			if !errors.As(err, &e) || len(e.Reasons) == 0 {
				t.Errorf("error %q quotes no OpenSSL reason", err)
			}
			t.Logf("%v", err)
		})
	}
	if FIPSMode() {
		t.Error("the process's default library context reads as FIPS after failed FIPS contexts")
	}
}

func TestFIPSHandshakes(t *testing.T) {
	dir := fipsDir(t)
	t.Logf("FIPS provider from %s", dir)
	ok := []struct {
		name   string
		client *Config
		server string
	}{
		{"TLS1.3 AES-128-GCM P-256 RSA-2048", &Config{CipherSuites: "TLS_AES_128_GCM_SHA256", Groups: "P-256"}, "server"},
		{"TLS1.3 AES-256-GCM P-256 ECDSA-P-256", &Config{CipherSuites: "TLS_AES_256_GCM_SHA384", Groups: "P-256"}, "server-ec"},
		{"TLS1.2 ECDHE-RSA-AES128-GCM-SHA256", &Config{MaxVersion: VersionTLS12, CipherList: "ECDHE-RSA-AES128-GCM-SHA256", Groups: "P-256"}, "server"},
		{"TLS1.2 ECDHE-ECDSA-AES256-GCM-SHA384", &Config{MaxVersion: VersionTLS12, CipherList: "ECDHE-ECDSA-AES256-GCM-SHA384"}, "server-ec"},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			ccfg := tc.client
			ccfg.CAFile, ccfg.ServerName = cert("ca.crt"), "localhost"
			cctx := mustContext(t, RoleClient, fipsConfig(dir, ccfg))
			sctx := mustContext(t, RoleServer, fipsConfig(dir, serverConfig(tc.server)))
			if !cctx.FIPS() || !sctx.FIPS() {
				t.Fatalf("FIPS() = %v, %v", cctx.FIPS(), sctx.FIPS())
			}
			c, _ := NewClientEngine(cctx)
			s, _ := NewServerEngine(sctx)
			defer c.Close()
			defer s.Close()
			if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
				t.Fatalf("handshake: %v %v", cerr, serr)
			}
			if got := roundTrip(t, c, s, []byte("fips")); string(got) != "fips" {
				t.Fatalf("got %q", got)
			}
			t.Logf("FIPS mode: %s %s", c.ConnectionState().VersionName, c.ConnectionState().CipherSuite)
		})
	}
	if FIPSMode() {
		t.Error("FIPS contexts switched the process's default library context to FIPS")
	}

	t.Run("ChaCha20 only", func(t *testing.T) {
		ccfg := fipsConfig(dir, &Config{CAFile: cert("ca.crt"), ServerName: "localhost", CipherSuites: "TLS_CHACHA20_POLY1305_SHA256"})
		ctx, err := NewContext(RoleClient, ccfg)
		if err == nil {
			defer ctx.Close()
			sctx := mustContext(t, RoleServer, fipsConfig(dir, serverConfig("server")))
			c, _ := NewClientEngine(ctx)
			s, _ := NewServerEngine(sctx)
			defer c.Close()
			defer s.Close()
			cerr, _ := handshake(c, s)
			err = cerr
		}
		if err == nil || !strings.Contains(err.Error(), "cipher") {
			t.Fatalf("ChaCha20-only in FIPS mode: %v, want an error about ciphers", err)
		}
		t.Logf("%v", err)
	})
	t.Run("RSA-1024", func(t *testing.T) {
		scfg := fipsConfig(dir, serverConfig("legacy"))
		scfg.SecurityLevel = SecurityLevelZero
		ctx, err := NewContext(RoleServer, scfg)
		if err == nil {
			defer ctx.Close()
			cctx := mustContext(t, RoleClient, fipsConfig(dir, &Config{InsecureSkipVerify: true, SecurityLevel: SecurityLevelZero}))
			c, _ := NewClientEngine(cctx)
			s, _ := NewServerEngine(ctx)
			defer c.Close()
			defer s.Close()
			cerr, serr := handshake(c, s)
			err = errors.Join(cerr, serr)
		}
		if err == nil {
			t.Fatal("a 1024-bit RSA key worked in FIPS mode")
		}
		t.Logf("%v", err)
	})
}
