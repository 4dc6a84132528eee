package cli

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/tlszmq/tlszmq"
)

// FuzzTLSFlags feeds arbitrary command lines to the TLS flags of both roles. Whatever comes
// in, parsing and building the Config end in a Config or an error, never a panic; a Config
// that comes out is one the engine accepts as to versions and client policy, and every
// weakening of security in it was asked for and warned about.
func FuzzTLSFlags(f *testing.F) {
	for _, seed := range []string{
		"", "-ca\x00ca.crt", "-min\x001.3", "-max\x001.2\x00-min\x001.3", "-seclevel\x000", "-seclevel\x00-1",
		"-verify\x00require", "-verify\x00require\x00-ca\x00/dev/null", "-cert\x00x", "-suites\x00TLS_AES_128_GCM_SHA256",
		"-fips\x00-fips-config\x00/nonexistent", "-no-tickets", "-crl\x00/dev/null", "-crldir\x00/", "-servername\x00\xff\x00", "--min=1.2", "-h",
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, line string, server bool) {
		role := tlszmq.RoleClient
		if server {
			role = tlszmq.RoleServer
		}
		fs := flag.NewFlagSet("fuzz", flag.ContinueOnError)
		tf := AddTLSFlags(fs, role, "", "")
		var args []string
		if line != "" {
			args = strings.Split(line, "\x00")
		}
		if err := Parse(fs, args, io.Discard); err != nil {
			if err.Error() == "" || strings.Contains(err.Error(), "\n") {
				t.Fatalf("not a one-line error: %q", err)
			}
			return
		}
		var warnings bytes.Buffer
		cfg, err := tf.Config("localhost", &warnings)
		if err != nil {
			// Bad values and unreadable files alike are one usage error naming the cause.
			if !errors.Is(err, ErrUsage) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("not a one-line usage error: %v", err)
			}
			return
		}
		if cfg.MinVersion < tlszmq.VersionTLS12 || cfg.MaxVersion > tlszmq.VersionTLS13 || cfg.MinVersion > cfg.MaxVersion {
			t.Fatalf("versions %x..%x from %q", cfg.MinVersion, cfg.MaxVersion, args)
		}
		if cfg.InsecureSkipVerify && !strings.Contains(warnings.String(), "not verified") {
			t.Fatalf("verification off without a warning, from %q", args)
		}
		if (cfg.SecurityLevel == tlszmq.SecurityLevelZero || cfg.SecurityLevel == 1) && !strings.Contains(warnings.String(), "security level lowered") {
			t.Fatalf("security level %d without a warning, from %q", cfg.SecurityLevel, args)
		}
		if cfg.ClientAuth != tlszmq.NoClientCert && cfg.CAFile == "" && cfg.CADir == "" {
			t.Fatalf("client certificates required with nothing to verify them against, from %q", args)
		}
		if (cfg.CRLFile != "" || cfg.CRLDir != "") && (cfg.InsecureSkipVerify || server && cfg.ClientAuth == tlszmq.NoClientCert) {
			t.Fatalf("CRLs where nothing is verified, from %q", args)
		}
	})
}
