package cli

import (
	"crypto/x509"
	"fmt"
	"io"
	"time"

	"github.com/tlszmq/tlszmq"
)

// expiryWarning is how close to its expiry a served certificate earns a warning at start-up.
const expiryWarning = 30 * 24 * time.Hour

// Startup is the start-up line of a command that serves TLS (tlsserver, tlsdevice in
// terminate mode), on stderr: what it listens on, its TLS versions, FIPS on or off, and the
// subject and expiry of its certificate (the Context's, tlszmq.Context.Certificate); then a
// warning line if the certificate expires within 30 days (or has expired). what is the
// command's own description of its endpoints.
func Startup(stderr io.Writer, name, what string, cfg *tlszmq.Config, cert *x509.Certificate) {
	fips := "off"
	if cfg.FIPS {
		fips = "on"
	}
	line := fmt.Sprintf("%s: %s; %s; FIPS %s", name, what, versions(cfg), fips)
	if cert == nil {
		fmt.Fprintf(stderr, "%s; no certificate\n", line)
		return
	}
	fmt.Fprintf(stderr, "%s; certificate %s, expires %s\n", line, cert.Subject, cert.NotAfter.UTC().Format(time.DateOnly))
	switch left := time.Until(cert.NotAfter); {
	case left <= 0:
		fmt.Fprintf(stderr, "%s: warning: the certificate %s expired on %s\n", name, cert.Subject, cert.NotAfter.UTC().Format(time.DateOnly))
	case left < expiryWarning:
		fmt.Fprintf(stderr, "%s: warning: the certificate %s expires in %d days (%s)\n", name, cert.Subject,
			int(left.Hours()/24), cert.NotAfter.UTC().Format(time.DateOnly))
	}
}

// versions names the TLS versions a configuration allows.
func versions(cfg *tlszmq.Config) string {
	lo, hi := cfg.VersionRange()
	if lo == hi {
		return tlszmq.VersionName(lo)
	}
	return tlszmq.VersionName(lo) + " to " + tlszmq.VersionName(hi)
}
