package cli

import (
	"bytes"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlszmq/tlszmq"
)

// The start-up line names the endpoints, the TLS versions, FIPS and the certificate; an expired
// certificate (and one that expires within 30 days) adds a warning line.
func TestStartupLine(t *testing.T) {
	certs := filepath.Join("..", "..", "testdata", "certs")
	served := func(name string) *x509.Certificate { // the certificate a Context loaded
		tctx, err := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{
			CertFile: filepath.Join(certs, name+".crt"), KeyFile: filepath.Join(certs, name+".key")})
		if err != nil {
			t.Fatal(err)
		}
		defer tctx.Close()
		return tctx.Certificate()
	}
	var b bytes.Buffer
	Startup(&b, "tlsserver", "serving tcp://127.0.0.1:5556", &tlszmq.Config{}, served("server"))
	line := b.String()
	for _, want := range []string{"tlsserver: serving tcp://127.0.0.1:5556; TLS 1.2 to TLS 1.3; FIPS off; certificate CN=localhost", "expires 20"} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
	if strings.Count(line, "\n") != 1 {
		t.Errorf("a valid certificate: %q, want one line", line)
	}
	b.Reset()
	Startup(&b, "tlsdevice", "TLS clients at x", &tlszmq.Config{MinVersion: tlszmq.VersionTLS13, FIPS: true}, served("expired"))
	out := b.String()
	if !strings.Contains(out, "TLS 1.3; FIPS on;") || !strings.Contains(out, "tlsdevice: warning: the certificate") || !strings.Contains(out, "expired on") {
		t.Errorf("an expired certificate: %q", out)
	}
}
