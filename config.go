package tlszmq

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
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

// DefaultCipherList is the TLS 1.2 cipher list of a Config whose CipherList is empty: only
// forward-secret AEAD suites, ECDHE with ECDSA or RSA certificates and AES-GCM or
// ChaCha20-Poly1305, then finite-field DHE with RSA and AES-GCM (a server picks Diffie-Hellman
// parameters to match its certificate's strength, as `openssl s_server` does). No CBC, no RSA
// key exchange, no SHA-1 MACs. TLS 1.3 has its own list, CipherSuites.
const DefaultCipherList = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" +
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:" +
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" +
	"DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256"

// DefaultMaxKeyUpdates is the default of Config.MaxKeyUpdates.
const DefaultMaxKeyUpdates = 32

// DefaultMaxRecordsPerPump is the default of Config.MaxRecordsPerPump for a server Context.
const DefaultMaxRecordsPerPump = 8192

// The bounds of Config.NextProtos: a name's length is one byte, the list's two (RFC 7301).
const (
	maxALPNName = 255
	maxALPNList = 65535
)

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
	// KeyPassword decrypts an encrypted private key. Without it such a key fails with an
	// error that says so; OpenSSL never asks for a password on the terminal. With KeyURI it
	// is the token's PIN.
	KeyPassword string

	// KeyURI names a private key kept in a hardware security module (HSM) or token, by its
	// PKCS#11 URI (RFC 7512), in place of KeyFile or KeyPEM:
	// "pkcs11:token=tlszmq;object=server;type=private". The key never leaves the module: it
	// is loaded, and signs the handshakes, through OpenSSL's pkcs11 ENGINE (libp11, Debian's
	// libengine-pkcs11-openssl), which must be installed. The certificate comes from
	// CertFile or CertPEM, and must match the key: the module gives the key's public half,
	// which is checked against the certificate when the Context is made (or reloaded).
	//
	// The PIN is KeyPassword; a pin-value attribute in the URI ("...;type=private?pin-value=
	// 1234") overrides it. Keeping it in KeyPassword keeps it out of the URI, which errors
	// quote (with pin-value hidden). Without a PIN the login fails: OpenSSL never asks on the
	// terminal. PKCS#11 logs a process into a token once: after one key of a token has loaded,
	// the token is not asked for the PIN again by that process.
	//
	// The PKCS#11 module, the HSM vendor's library, is named in the URI by the module-path
	// query attribute, which RFC 7512 defines for this ("...?module-path=/usr/lib/softhsm/
	// libsofthsm2.so", percent-encoded where needed): one string says everything, in a
	// Config as on a command line (-key pkcs11:...). Without it, libp11 takes the
	// PKCS11_MODULE_PATH environment variable, else p11-kit-proxy (the modules p11-kit is
	// configured with). A process loads one PKCS#11 module: once a key has been loaded from
	// one, a Context that names another is refused. The URI must name its key (object= or
	// id=); module-path must be absolute; module-name is refused (name the module with
	// module-path), and so is any attribute libp11 does not read. libp11 separates
	// attributes with any of ";", "?" and "&", and so does the check.
	//
	// With FIPS, the Context's TLS cryptography runs on the FIPS provider as usual, while the
	// operations with the private key (the handshake's signatures) run in the module, which a
	// FIPS shop has validated itself (FIPS 140 level 2 or 3 HSMs are): see docs/FIPS.md.
	KeyURI string

	// CAFile (a PEM bundle), CADir (an OpenSSL hashed directory) and CAPEM (PEM bytes) hold
	// the certificates that peers are verified against. A client with none of them uses the
	// system's CA certificates.
	CAFile, CADir string
	CAPEM         []byte

	// CRLFile (PEM, one or more CRLs) and CRLDir (an OpenSSL hashed directory, whose CRLs are
	// the files named <hash>.r0, <hash>.r1, ..., as `openssl rehash` names them) turn
	// revocation checking on: a peer whose certificate a CRL lists is refused with "certificate
	// revoked" (X509_V_ERR_CERT_REVOKED, 23, in a CertificateVerificationError; the alert
	// certificate_revoked). They are for a server that verifies clients (ClientAuth) and a
	// client that verifies servers; set elsewhere, they are refused. Without either, nothing
	// is checked for revocation.
	//
	// The whole chain is checked (OpenSSL's X509_V_FLAG_CRL_CHECK_ALL), so that a revoked
	// intermediate CA is refused too: every CA in the peer's chain, the root included, needs
	// its CRL here (one CRL from a root that issued the peer's certificate itself covers
	// both). A chain with a certificate whose issuer has no CRL here is refused with "unable
	// to get certificate CRL" (3), as nginx's ssl_crl does.
	//
	// The CRLs are read when the Context is made (or reloaded: CRLDir too, unlike CADir,
	// which OpenSSL reads on demand). A file that cannot be read, holds no CRL, holds a CRL
	// past its next update or not valid yet, is refused then, the error naming it; other
	// files in CRLDir are ignored. A CRL's signature is checked when a handshake uses it. A
	// CRL that expires while the Context is in use makes the handshakes it applies to fail
	// with "CRL has expired" (12): load the new one with [Context.Reload].
	CRLFile, CRLDir string

	// ServerName is sent as SNI by clients and checked against the server's certificate
	// (DNS names, or an IP address, which is checked but not sent). A wildcard matches a
	// whole left-most label only: "*.example.com" matches "www.example.com", "w*.example.com"
	// matches nothing. A client that verifies needs a name to check: when ServerName is
	// empty, NewClient takes the host of a tcp:// endpoint, and an engine made without one
	// (NewClientEngine) fails with ErrNoServerName, unless VerifyChainOnly is set.
	ServerName string

	// InsecureSkipVerify makes a client accept any server certificate, as the C++ original
	// did. It is for drop-in use against legacy deployments only: anyone in the path can
	// then read and change the traffic.
	InsecureSkipVerify bool

	// VerifyChainOnly makes a client verify the server's certificate chain against its CAs
	// but not the server's name, as the C++ fork's client did (its server's certificate
	// names "*.fish-test.com" in its CN, with no subject alternative name). It is
	// dangerous: any certificate those CAs issued, to anyone, is then accepted, so that
	// whoever holds one can read and change the traffic. Use it only with a private CA
	// that issues certificates to your own servers alone. A ServerName, if set, is still
	// sent as SNI. A client Context with it logs a warning once, when it is made.
	VerifyChainOnly bool

	// ClientAuth is the server's policy for client certificates (default NoClientCert).
	ClientAuth ClientAuthType

	// NextProtos is the list of supported application-level protocols (ALPN), in order of
	// preference, as in crypto/tls: a client offers them, and a server selects the first of
	// its own that the client offers (the server's preference). A client that offers none, as
	// the C++ peers do, gets none. A client that offers protocols, none of them the server's,
	// is refused with a no_application_protocol alert, as crypto/tls does since Go 1.17
	// (without crypto/tls's exception for an "h2" server and an "http/1.1" client). A client
	// whose server selects none goes on without ALPN. ConnectionState.NegotiatedProtocol is
	// the protocol agreed on.
	//
	// The ZeroMQ layer adds ProtocolFramed before these: a Client offers it first (unless
	// ClientOptions.Raw), and a Server accepts it first, from any client that offers it. The
	// framed protocol alone never makes a handshake fail: a Server whose NextProtos is empty
	// takes a client that offers other protocols without ALPN, in the C++ peers' format, as
	// it takes one that offers none. A session that agrees on any other protocol uses that
	// format too.
	//
	// Each name has 1 to 255 bytes, and the list at most 65,535 bytes in ALPN's encoding (each
	// name after a length byte).
	NextProtos []string

	// MinVersion and MaxVersion bound the TLS versions; 0 means TLS 1.2 and TLS 1.3
	// respectively. Only VersionTLS12 and VersionTLS13 are accepted.
	MinVersion, MaxVersion uint16

	// CipherList is the TLS 1.2 cipher list in OpenSSL's syntax
	// ("ECDHE-RSA-AES128-GCM-SHA256:..."); empty means DefaultCipherList (forward-secret
	// AEAD suites only).
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
	//
	// A session resumes only on a server with the same verification policy as the one that
	// made it: the session id context is a hash of ClientAuth, the CA certificates (the bytes
	// of CAFile and CAPEM, the names and bytes of the files in CADir when the Context is
	// made), the CRLs (CRLFile's bytes, CRLDir's files' names and bytes), MinVersion,
	// MaxVersion and SecurityLevel. So a ticket issued where clients need
	// no certificate never lets a client skip the certificate where one is required, even
	// with the same key. Changing any of these, rotating the CAs included, changes the
	// context: sessions made before stop resuming (their clients make a full handshake,
	// verified under the new policy). That is the intent. A CRL that changes does the same,
	// so that a client revoked since its session began cannot resume it.
	//
	// Context.Reload keeps the ticket key of the context it replaces (this one, or OpenSSL's
	// random one) unless the new Config sets one.
	SessionTicketKey []byte

	// MaxKeyUpdates bounds the TLS 1.3 KeyUpdate messages an engine reads: in one frame (one
	// pump: a PutData and what it takes to read it), and over the session beyond one per 64
	// KiB of application data received. A KeyUpdate costs about 10 µs of CPU and OpenSSL 3.0
	// reads any number of them; a peer rekeys rarely (OpenSSL and Go never do by themselves).
	// Past the bound the session fails with ErrTooManyKeyUpdates, the rest of the frame
	// unread, and the peer is sent an unexpected_message alert where the bound falls on a
	// record boundary. 0 means DefaultMaxKeyUpdates (32); negative values are refused.
	MaxKeyUpdates int

	// MaxRecordsPerPump bounds the TLS records an engine reads from one frame (one pump)
	// beyond one per 16 KiB of the frame: a frame of full records never reaches it, whatever
	// its size, while a frame of tiny records (under a microsecond of CPU each, 3 million in
	// a 64 MiB frame: seconds) is cut short. Past the bound the session fails with
	// ErrTooManyRecords, the rest of the frame unread; over TLS 1.3 the peer is sent an
	// unexpected_message alert (over TLS 1.2 OpenSSL can send no alert that says so, and
	// none is sent). 0 means DefaultMaxRecordsPerPump (8192, a few ms of CPU) for a server
	// Context and no bound for a client Context: a tlszmq server answers every message of a
	// batch with a record of its own, so one reply frame may carry as many records as the
	// batch had messages (65,536 empty ones in 64 KiB). Negative: no bound.
	MaxRecordsPerPump int

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

	// Logger receives the Context's warnings: a client Context with InsecureSkipVerify or
	// VerifyChainOnly says so once, when it is made. Nil: the library logs nothing.
	Logger *slog.Logger

	// KeyLogWriter, when set, receives the secrets of every session of the Context in NSS
	// key-log format, the SSLKEYLOGFILE format of crypto/tls, Wireshark and tshark: one
	// CLIENT_RANDOM line for TLS 1.2; CLIENT_HANDSHAKE_TRAFFIC_SECRET,
	// SERVER_HANDSHAKE_TRAFFIC_SECRET, CLIENT_TRAFFIC_SECRET_0, SERVER_TRAFFIC_SECRET_0 and
	// EXPORTER_SECRET lines for TLS 1.3. It is for debugging a capture: whoever reads it can
	// decrypt the traffic.
	//
	// OpenSSL's keylog callback gathers the lines in C; an engine hands them to the writer, in
	// whole lines, at the end of the call that made them (PutData, Write, Update, ...), before
	// the bytes of that call leave through GetData, on the goroutine that made the call: in a
	// Server, the session's worker; with a Client, the goroutine whose Request, Send or Recv
	// runs the handshake. The engines of one Context, and the sessions of a Server, run on
	// several goroutines: as with crypto/tls, a writer shared by them must be safe for
	// concurrent use, and should be quick. Errors from Write are ignored: a key log never
	// fails a session. One call gathers at most 4 KiB of lines (a handshake makes under 1
	// KiB); past that, lines are dropped and a comment line ("# tlszmq: ...") says how many.
	//
	// With FIPS set, or with OpenSSL's default library context in FIPS mode (FIPSMode),
	// NewContext refuses a KeyLogWriter with ErrInvalidConfig: a key log exports the session
	// secrets, which FIPS mode forbids.
	KeyLogWriter io.Writer

	// VerifyConnection, when set, is called after each handshake, full or resumed, once the
	// peer's certificate chain has been verified as the Context asks (and when nothing is
	// verified too, as crypto/tls calls it), with the session's ConnectionState: the peer's
	// certificates, the version, the cipher, the ALPN protocol. It may refuse the session for
	// a policy of its own (a pinned key, allowed subjects) by returning an error; the session
	// then ends before any application data is handed out or sent, and the engine's error
	// wraps the hook's (errors.Is finds it): a Server ends the session and logs the reason, a
	// Client's call fails with it.
	//
	// It runs in Go, on the goroutine that completes the handshake (a Server's worker: keep
	// it quick; a Client's caller), after OpenSSL has finished the handshake: so, unlike
	// crypto/tls, which sends bad_certificate, the peer gets close_notify (OpenSSL has no call
	// that sends a chosen alert once the handshake is over), and a TLS 1.3 server has already
	// sent its session tickets; a client that resumes with one meets the hook again.
	VerifyConnection func(ConnectionState) error

	// Debug, when set, receives the original's trace of bytes through the BIOs from every engine
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
	n.NextProtos = slices.Clone(c.NextProtos)
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
	for _, v := range []struct {
		name string
		pem  []byte
	}{{"CertPEM", c.CertPEM}, {"KeyPEM", c.KeyPEM}, {"CAPEM", c.CAPEM}} {
		if len(v.pem) > math.MaxInt32 {
			return bad("%s is %d bytes long, more than OpenSSL takes (%d, INT_MAX)", v.name, len(v.pem), math.MaxInt32)
		}
	}
	if c.CertFile != "" && c.CertPEM != nil {
		return bad("both CertFile and CertPEM are set")
	}
	if c.KeyFile != "" && c.KeyPEM != nil {
		return bad("both KeyFile and KeyPEM are set")
	}
	if c.KeyURI != "" {
		if c.KeyFile != "" || c.KeyPEM != nil {
			return bad("KeyURI and KeyFile or KeyPEM are set: the private key comes from one of them")
		}
		if _, err := parseKeyURI(c.KeyURI); err != nil {
			return bad("KeyURI: %v", err)
		}
		if c.CertFile == "" && c.CertPEM == nil {
			return bad("KeyURI needs its certificate in CertFile or CertPEM")
		}
	}
	hasCert, hasKey := c.CertFile != "" || c.CertPEM != nil, c.KeyFile != "" || c.KeyPEM != nil || c.KeyURI != ""
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
	if c.VerifyChainOnly && role != RoleClient {
		return bad("VerifyChainOnly is for clients only")
	}
	if c.VerifyChainOnly && c.InsecureSkipVerify {
		return bad("VerifyChainOnly and InsecureSkipVerify are both set: a client verifies the chain only, or nothing")
	}
	if c.KeyLogWriter != nil && c.FIPS {
		return bad("KeyLogWriter and FIPS are both set: a key log exports the session secrets, which FIPS mode forbids")
	}
	if c.MaxKeyUpdates < 0 {
		return bad("MaxKeyUpdates %d is negative (0 for the default, %d)", c.MaxKeyUpdates, DefaultMaxKeyUpdates)
	}
	if err := checkProtos("NextProtos", c.NextProtos); err != nil {
		return bad("%v", err)
	}
	if c.ClientAuth < NoClientCert || c.ClientAuth > RequireAndVerifyClientCert {
		return bad("ClientAuth %v is unknown", c.ClientAuth)
	}
	if role == RoleServer && c.ClientAuth != NoClientCert && c.CAFile == "" && c.CADir == "" && c.CAPEM == nil {
		return bad("ClientAuth %v needs CAFile, CADir or CAPEM to verify client certificates against", c.ClientAuth)
	}
	if c.CRLFile != "" || c.CRLDir != "" {
		switch {
		case role == RoleServer && c.ClientAuth == NoClientCert:
			return bad("CRLFile and CRLDir check the certificates of clients, and ClientAuth %v asks for none", c.ClientAuth)
		case role == RoleClient && c.InsecureSkipVerify:
			return bad("CRLFile and CRLDir check the server's certificate, and InsecureSkipVerify verifies nothing")
		}
	}
	return nil
}

// VersionRange returns the TLS versions c allows, MinVersion and MaxVersion with their zero
// values read as the defaults (TLS 1.2 and TLS 1.3).
func (c *Config) VersionRange() (lo, hi uint16) {
	lo, hi = c.MinVersion, c.MaxVersion
	if lo == 0 {
		lo = VersionTLS12
	}
	if hi == 0 {
		hi = VersionTLS13
	}
	return lo, hi
}

// keyURI is a Config.KeyURI taken apart for the engine.
type keyURI struct {
	engine string // the URI the pkcs11 engine is given: without module-path, which libp11 refuses, and without pin-value
	shown  string // the URI as errors quote it: pin-value hidden, module-path kept
	module string // module-path, percent-decoded; "" for libp11's default
	pin    string // pin-value, percent-decoded: given to the engine apart from the URI
	hasPIN bool   // the URI gives a PIN (pin-value or pin-source)
}

// keyURIAttrs are the attributes libp11 0.4.12 reads in a PKCS#11 URI, besides pin-value
// and module-path, which parseKeyURI takes out.
var keyURIAttrs = map[string]bool{"model": true, "manufacturer": true, "token": true, "serial": true,
	"object": true, "id": true, "pin-source": true, "type": true, "object-type": true}

// parseKeyURI takes a PKCS#11 URI apart. RFC 7512 separates the path's attributes with ";"
// and, after "?", the query's with "&"; libp11 0.4.12 splits on any of the three anywhere, and
// so does this, so that both read the same attributes. Two are taken out of the URI the
// engine gets: module-path, which libp11 refuses (it is set as the engine's MODULE_PATH), and
// pin-value, which libp11 would print with the URI on its standard error when a load fails
// (it is given to the engine as its PIN). pin-source stays: libp11 reads the file it names.
// Any other attribute, an empty one, or a URI that names no object (object= or id=) is
// refused: libp11 would take the first key of the first token. The errors name attributes,
// never their values.
func parseKeyURI(uri string) (keyURI, error) {
	var k keyURI
	rest, ok := strings.CutPrefix(uri, "pkcs11:")
	if !ok {
		return k, errors.New(`not a PKCS#11 URI: it must start with "pkcs11:" (RFC 7512), e.g. "pkcs11:token=t;object=k;type=private" (a key file goes in KeyFile)`)
	}
	var kept []string
	var rawModule string // as given, for the errors' copy of the URI
	named := false
	for _, a := range strings.FieldsFunc(rest, func(r rune) bool { return r == ';' || r == '?' || r == '&' }) {
		name, value, hasValue := strings.Cut(a, "=")
		if !hasValue || name == "" {
			return k, errors.New("an attribute is not name=value")
		}
		// decode reads pin-value's or module-path's value, given once.
		decode := func(seen bool) (string, error) {
			v, err := url.PathUnescape(value)
			switch {
			case seen:
				return "", fmt.Errorf("%s is given twice", name)
			case err != nil || v == "" || strings.ContainsRune(v, 0):
				return "", fmt.Errorf("%s is empty, not percent-encoded or holds a NUL", name)
			}
			return v, nil
		}
		switch {
		case name == "pin-value":
			pin, err := decode(k.pin != "")
			if err != nil {
				return k, err
			}
			k.pin, k.hasPIN = pin, true
		case name == "module-path":
			m, err := decode(k.module != "")
			if err != nil {
				return k, err
			}
			if !filepath.IsAbs(m) {
				return k, errors.New("module-path must be an absolute path: the dynamic loader searches its library path for a relative one")
			}
			k.module, rawModule = m, value
		case name == "module-name":
			return k, errors.New("module-name is not supported: name the PKCS#11 module with module-path=/path/to/module.so")
		case keyURIAttrs[name]:
			if name == "pin-source" {
				k.hasPIN = true
			}
			if name == "object" || name == "id" {
				named = true
			}
			kept = append(kept, a)
		default:
			return k, fmt.Errorf("attribute %.40q is not one libp11 reads (%s)", name, "model, manufacturer, token, serial, object, id, type, object-type, pin-value, pin-source, module-path")
		}
	}
	if !named {
		return k, errors.New("the URI names no key: give its object= or id= (else libp11 takes the first key of the first token)")
	}
	k.engine = "pkcs11:" + strings.Join(kept, ";")
	k.shown = k.engine
	if k.pin != "" {
		k.shown += ";pin-value=***"
	}
	if k.module != "" {
		k.shown += "?module-path=" + rawModule
	}
	return k, nil
}
