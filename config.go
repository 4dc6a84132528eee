package tlszmq

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
)

// TLS versions, with the same values as crypto/tls uses.
const (
	VersionTLS12 uint16 = 0x0303
	VersionTLS13 uint16 = 0x0304
)

// VersionName returns "TLS 1.2", "TLS 1.3" or the version in hex.
func VersionName(v uint16) string {
	switch v {
	case VersionTLS12:
		return "TLS 1.2"
	case VersionTLS13:
		return "TLS 1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

// ClientAuthType is the server's policy for client certificates.
type ClientAuthType int

const (
	// NoClientCert asks for no client certificate (the C++ original's server).
	NoClientCert ClientAuthType = iota
	// VerifyClientCertIfGiven asks for a client certificate and verifies it if one is sent,
	// but lets a client without one in (the C++ fork's server).
	VerifyClientCertIfGiven
	// RequireAndVerifyClientCert refuses clients without a valid certificate (mutual TLS).
	RequireAndVerifyClientCert
)

// String returns the policy's name as the command-line flags spell it.
func (t ClientAuthType) String() string {
	switch t {
	case NoClientCert:
		return "none"
	case VerifyClientCertIfGiven:
		return "optional"
	case RequireAndVerifyClientCert:
		return "require"
	}
	return fmt.Sprintf("ClientAuthType(%d)", int(t))
}

// SecurityLevelZero asks for OpenSSL security level 0 in [Config.SecurityLevel]: everything is
// permitted, as the C++ fork's 1024-bit, SHA-1 certificates with a version-1 CA need. (The
// field's zero value means "OpenSSL's configured default", so level 0 needs its own name.)
const SecurityLevelZero = -1

// SessionTicketKeyLen is the length of Config.SessionTicketKey.
const SessionTicketKeyLen = 80

// ErrInvalidConfig is wrapped by every error about a Config that cannot work, before OpenSSL
// is asked anything.
var ErrInvalidConfig = errors.New("tlszmq: invalid configuration")

// Config configures a [Context]. It is shaped like crypto/tls.Config: a Config may be shared
// by several Contexts, and must not be modified once it has been passed to [NewContext]
// (NewContext takes a copy, so a later change has no effect on that Context).
//
// The zero value is a secure client configuration: TLS 1.2 and 1.3, the server verified
// against the system's CA certificates. A server needs a certificate and key.
type Config struct {
	// CertFile and KeyFile name PEM files: the certificate (leaf first, then its chain) and
	// its private key. CertPEM and KeyPEM give the same as bytes; a file and PEM bytes for the
	// same item cannot both be set.
	CertFile, KeyFile string
	CertPEM, KeyPEM   []byte

	// CAFile (a PEM bundle), CADir (an OpenSSL hashed directory) and CAPEM (PEM bytes) hold
	// the certificates that peers are verified against. A client with none of them uses the
	// system's CA certificates.
	CAFile, CADir string
	CAPEM         []byte

	// ServerName is sent as SNI by clients and checked against the server's certificate
	// (DNS names, or an IP address, which is checked but not sent). Empty: no SNI and no
	// host name check, only the chain is verified.
	ServerName string

	// InsecureSkipVerify makes a client accept any server certificate, as the C++ original
	// did. It is for drop-in use against legacy deployments only: anyone in the path can
	// then read and change the traffic.
	InsecureSkipVerify bool

	// ClientAuth is the server's policy for client certificates (default NoClientCert).
	ClientAuth ClientAuthType

	// MinVersion and MaxVersion bound the TLS versions; 0 means TLS 1.2 and TLS 1.3
	// respectively. Only VersionTLS12 and VersionTLS13 are accepted.
	MinVersion, MaxVersion uint16

	// CipherList is the TLS 1.2 cipher list in OpenSSL's syntax
	// ("ECDHE-RSA-AES128-GCM-SHA256:..."); empty keeps OpenSSL's default.
	CipherList string
	// CipherSuites is the TLS 1.3 suite list ("TLS_AES_128_GCM_SHA256:..."); empty keeps
	// OpenSSL's default.
	CipherSuites string
	// Groups lists the key exchange groups in order of preference ("X25519:P-256"); empty
	// keeps OpenSSL's default.
	Groups string

	// SecurityLevel is OpenSSL's security level, 1 to 5; 0 keeps the level OpenSSL is
	// configured with (2 on Debian), and SecurityLevelZero sets level 0. The C++ original's
	// 1024-bit certificate needs 1, the fork's certificates need SecurityLevelZero.
	SecurityLevel int

	// SessionTicketsDisabled turns session tickets off (a server then sends none).
	SessionTicketsDisabled bool
	// SessionTicketKey (servers, SessionTicketKeyLen bytes: OpenSSL's key name, HMAC key and
	// AES key) encrypts the session tickets. Servers given the same key, or a server
	// restarted with it, resume each other's sessions; empty: OpenSSL's random key, new in
	// every Context. Keep it as secret as a private key, and change it now and then: whoever
	// holds it can decrypt the sessions it protects.
	SessionTicketKey []byte

	// FIPS runs the Context on OpenSSL's FIPS provider with fips=yes as the default property,
	// in a library context of its own. If the provider cannot be loaded, NewContext fails
	// with ErrFIPSUnavailable: there is never a silent fallback to non-FIPS cryptography.
	FIPS bool
	// FIPSConfigFile is the OpenSSL configuration that sets the FIPS provider up (it includes
	// the fipsmodule.cnf written by `openssl fipsinstall`); empty uses OpenSSL's default
	// configuration file (OPENSSL_CONF).
	FIPSConfigFile string
	// FIPSModuleDir is the directory that holds fips.so; empty uses OpenSSL's default
	// (OPENSSL_MODULES).
	FIPSModuleDir string

	// Logger receives the Context's warnings: a client Context with InsecureSkipVerify says so
	// once, when it is made. Nil: slog.Default().
	Logger *slog.Logger

	// Debug, when set, receives the seed's trace of bytes through the BIOs from every engine
	// of the Context: "DEBUG: 95 written to BIO", "DEBUG: 627 read from BIO",
	// "DEBUG: 12 written to SSL" (-1 while the handshake holds the data back).
	Debug io.Writer
}

// Clone returns a copy of c (nil for nil). Byte slices are copied too.
func (c *Config) Clone() *Config {
	if c == nil {
		return nil
	}
	n := *c
	n.CertPEM = slices.Clone(c.CertPEM)
	n.KeyPEM = slices.Clone(c.KeyPEM)
	n.CAPEM = slices.Clone(c.CAPEM)
	n.SessionTicketKey = slices.Clone(c.SessionTicketKey)
	return &n
}

// check rejects settings that cannot work, naming the field.
func (c *Config) check(role Role) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	for _, v := range []struct {
		name string
		val  uint16
	}{{"MinVersion", c.MinVersion}, {"MaxVersion", c.MaxVersion}} {
		if v.val != 0 && v.val != VersionTLS12 && v.val != VersionTLS13 {
			return bad("%s %s is not supported (TLS 1.2 and TLS 1.3 only)", v.name, VersionName(v.val))
		}
	}
	if c.MinVersion != 0 && c.MaxVersion != 0 && c.MinVersion > c.MaxVersion {
		return bad("MinVersion %s is above MaxVersion %s", VersionName(c.MinVersion), VersionName(c.MaxVersion))
	}
	if c.CertFile != "" && c.CertPEM != nil {
		return bad("both CertFile and CertPEM are set")
	}
	if c.KeyFile != "" && c.KeyPEM != nil {
		return bad("both KeyFile and KeyPEM are set")
	}
	hasCert, hasKey := c.CertFile != "" || c.CertPEM != nil, c.KeyFile != "" || c.KeyPEM != nil
	if hasCert != hasKey {
		return bad("a certificate needs its private key and a key its certificate (CertFile/CertPEM with KeyFile/KeyPEM)")
	}
	if role == RoleServer && !hasCert {
		return bad("a server needs a certificate and a private key")
	}
	if c.SecurityLevel < SecurityLevelZero || c.SecurityLevel > 5 {
		return bad("SecurityLevel %d is out of range (1 to 5, 0 for the default, SecurityLevelZero for level 0)", c.SecurityLevel)
	}
	if n := len(c.SessionTicketKey); n != 0 && (n != SessionTicketKeyLen || role != RoleServer) {
		return bad("SessionTicketKey is for servers only and must have %d bytes (it has %d)", SessionTicketKeyLen, n)
	}
	if c.ClientAuth < NoClientCert || c.ClientAuth > RequireAndVerifyClientCert {
		return bad("ClientAuth %v is unknown", c.ClientAuth)
	}
	if role == RoleServer && c.ClientAuth != NoClientCert && c.CAFile == "" && c.CADir == "" && c.CAPEM == nil {
		return bad("ClientAuth %v needs CAFile, CADir or CAPEM to verify client certificates against", c.ClientAuth)
	}
	return nil
}
