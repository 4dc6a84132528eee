package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/tlszmq/tlszmq"
)

// TLSFlags are the TLS settings every command takes, turned into a tlszmq.Config by Config.
type TLSFlags struct {
	fs                      *flag.FlagSet
	role                    tlszmq.Role
	cert, key, ca, caDir    string
	crl, crlDir             string
	serverName, verify      string
	minV, maxV              string
	ciphers, suites, groups string
	secLevel                string
	fips                    bool
	fipsConfig, fipsModules string
	noTickets               bool
	ticketKey               string
	chainOnly               bool
}

// pkcs11Help is the -key flag's help for a key in a hardware module (tlszmq.Config.KeyURI).
const pkcs11Help = `pkcs11:token=T;object=K;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin ` +
	`(PIN from pin-source or pin-value; module from module-path, else $PKCS11_MODULE_PATH; needs libengine-pkcs11-openssl)`

// AddTLSFlags defines the TLS flags on fs. cert and key are the defaults of -cert and -key
// (the C++ server reads server.crt and server.key from its working directory).
func AddTLSFlags(fs *flag.FlagSet, role tlszmq.Role, cert, key string) *TLSFlags {
	f := &TLSFlags{fs: fs, role: role}
	if role == tlszmq.RoleServer {
		fs.StringVar(&f.cert, "cert", cert, "certificate file (PEM, leaf first, then its chain)")
		fs.StringVar(&f.key, "key", key, "private key file (PEM), or a key in a hardware module by its PKCS#11 URI: "+pkcs11Help)
		fs.StringVar(&f.ca, "ca", "", "CA file to verify client certificates against")
		fs.StringVar(&f.verify, "verify", "none", "client certificates: none, optional or require")
		fs.StringVar(&f.ticketKey, "ticket-key", "", "file holding the 80-byte session ticket key (e.g. head -c 80 /dev/urandom): "+
			"servers sharing it, or restarted with it, resume each other's sessions (default: a random key per run)")
	} else {
		fs.StringVar(&f.cert, "cert", cert, "client certificate file (PEM), for mutual TLS")
		fs.StringVar(&f.key, "key", key, "the client certificate's private key (PEM), or its PKCS#11 URI: "+pkcs11Help)
		fs.StringVar(&f.ca, "ca", "", "CA file: verify the server's chain and host name against it "+
			"(without -ca or -cadir nothing is verified, as the C++ client did)")
		fs.StringVar(&f.serverName, "servername", "", "server name for SNI and the host name check (default: the endpoint's host)")
		fs.BoolVar(&f.chainOnly, "verify-chain-only", false, "with -ca or -cadir, verify the server's chain but not its host name, as the C++ fork's client did "+
			"(its server's certificate names *.fish-test.com, with no alternative name): dangerous, any certificate the CA issued is accepted")
	}
	fs.StringVar(&f.caDir, "cadir", "", "OpenSSL hashed directory of CA certificates")
	peer := "client certificates (with -verify optional or require)"
	if role == tlszmq.RoleClient {
		peer = "the server's certificate (with -ca or -cadir)"
	}
	fs.StringVar(&f.crl, "crl", "", "CRL file (PEM, one or more CRLs): refuse "+peer+" if revoked; every CA in the chain needs its CRL")
	fs.StringVar(&f.crlDir, "crldir", "", "OpenSSL hashed directory of CRLs (files <hash>.r0, as openssl rehash names them), read at start and on reload")
	fs.StringVar(&f.minV, "min", "1.2", "minimum TLS version: 1.2 or 1.3")
	fs.StringVar(&f.maxV, "max", "1.3", "maximum TLS version: 1.2 or 1.3")
	fs.StringVar(&f.ciphers, "ciphers", "", "TLS 1.2 cipher list, OpenSSL syntax (default: forward-secret AEAD suites only, tlszmq.DefaultCipherList)")
	fs.StringVar(&f.suites, "suites", "", "TLS 1.3 cipher suites (default: OpenSSL's)")
	fs.StringVar(&f.groups, "groups", "", "key exchange groups, e.g. X25519:P-256 (default: OpenSSL's)")
	fs.StringVar(&f.secLevel, "seclevel", "default", "OpenSSL security level 0 to 5; the C++ original's certificate needs 1, the fork's 0")
	fs.BoolVar(&f.fips, "fips", false, "run on OpenSSL's FIPS provider (fails if it is not installed)")
	fs.StringVar(&f.fipsConfig, "fips-config", "", "OpenSSL configuration that sets the FIPS provider up (default: OPENSSL_CONF)")
	fs.StringVar(&f.fipsModules, "fips-modules", "", "folder holding fips.so (default: OPENSSL_MODULES)")
	fs.BoolVar(&f.noTickets, "no-tickets", false, "disable session tickets")
	return f
}

func tlsVersion(flagName, v string) (uint16, error) {
	switch v {
	case "1.2":
		return tlszmq.VersionTLS12, nil
	case "1.3":
		return tlszmq.VersionTLS13, nil
	}
	return 0, Usagef("-%s %q: want 1.2 or 1.3", flagName, v)
}

// ClientConfig builds a client Config from server-role flags (tlsdevice's originate mode):
// -cert and -key name a client certificate only when given explicitly, -ca verifies the
// upstream server, and host is the upstream's host name.
func (f *TLSFlags) ClientConfig(host string, stderr io.Writer) (*tlszmq.Config, error) {
	c := *f
	c.role = tlszmq.RoleClient
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if !set["cert"] {
		c.cert = ""
	}
	if !set["key"] {
		c.key = ""
	}
	if set["verify"] {
		return nil, Usagef("-verify is for the server side; the upstream server is verified with -ca")
	}
	if (c.ca != "" || c.caDir != "") && host == "" {
		return nil, Usagef("-ca and -cadir verify the upstream server's host name, and the upstream endpoint has none: " +
			"connect to it by a tcp:// endpoint naming the host in its certificate")
	}
	return c.Config(host, stderr)
}

// Config builds the tlszmq.Config the flags describe, checking that the files exist. host is
// the endpoint's host, the client's default server name. Warnings about weakened security go
// to stderr. When $SSLKEYLOGFILE names a file (KeyLogEnv), the sessions' secrets are appended
// to it (Config.KeyLogWriter), with a warning; with -fips that is a usage error.
func (f *TLSFlags) Config(host string, stderr io.Writer) (*tlszmq.Config, error) {
	cfg, err := f.config(host, stderr)
	if err == nil {
		err = f.keyLog(cfg, stderr)
	}
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// config is Config without the key log.
func (f *TLSFlags) config(host string, stderr io.Writer) (*tlszmq.Config, error) {
	cfg := &tlszmq.Config{
		CertFile: f.cert, KeyFile: f.key, CAFile: f.ca, CADir: f.caDir, CRLFile: f.crl, CRLDir: f.crlDir,
		CipherList: f.ciphers, CipherSuites: f.suites, Groups: f.groups,
		SessionTicketsDisabled: f.noTickets,
		FIPS:                   f.fips, FIPSConfigFile: f.fipsConfig, FIPSModuleDir: f.fipsModules,
	}
	var err error
	if cfg.MinVersion, err = tlsVersion("min", f.minV); err != nil {
		return nil, err
	}
	if cfg.MaxVersion, err = tlsVersion("max", f.maxV); err != nil {
		return nil, err
	}
	if cfg.MinVersion > cfg.MaxVersion {
		return nil, Usagef("-min %s is above -max %s", f.minV, f.maxV)
	}
	if f.secLevel != "default" {
		n, err := strconv.Atoi(f.secLevel)
		if err != nil || n < 0 || n > 5 {
			return nil, Usagef("-seclevel %q: want 0 to 5 or default", f.secLevel)
		}
		cfg.SecurityLevel = n
		if n == 0 {
			cfg.SecurityLevel = tlszmq.SecurityLevelZero
		}
		if n < 2 {
			fmt.Fprintf(stderr, "%s: warning: OpenSSL security level lowered to %d for legacy certificates: weak keys and digests are accepted\n", f.fs.Name(), n)
		}
	}
	if (f.cert == "") != (f.key == "") {
		return nil, Usagef("-cert and -key go together")
	}
	// A -key that is a PKCS#11 URI names a key in a hardware module (Config.KeyURI), not a file.
	if IsKeyURI(f.key) {
		cfg.KeyFile, cfg.KeyURI = "", f.key
	}
	if err := f.needCertAndKey(); err != nil {
		return nil, err
	}
	if err := NeedFiles(f.ca, f.crl, f.crlDir, f.fipsConfig); err != nil {
		return nil, err
	}
	if f.role == tlszmq.RoleServer {
		if f.ticketKey != "" {
			key, err := os.ReadFile(f.ticketKey)
			if err != nil {
				return nil, Usagef("-ticket-key %s: %v", printable(f.ticketKey), err)
			}
			if len(key) != tlszmq.SessionTicketKeyLen {
				return nil, Usagef("-ticket-key %s: %d bytes, want %d", printable(f.ticketKey), len(key), tlszmq.SessionTicketKeyLen)
			}
			cfg.SessionTicketKey = key
		}
		switch f.verify {
		case "none":
		case "optional":
			cfg.ClientAuth = tlszmq.VerifyClientCertIfGiven
		case "require":
			cfg.ClientAuth = tlszmq.RequireAndVerifyClientCert
		default:
			return nil, Usagef("-verify %q: want none, optional or require", f.verify)
		}
		if cfg.ClientAuth != tlszmq.NoClientCert && f.ca == "" && f.caDir == "" {
			return nil, Usagef("-verify %s needs -ca or -cadir", f.verify)
		}
		if (f.crl != "" || f.crlDir != "") && cfg.ClientAuth == tlszmq.NoClientCert {
			return nil, Usagef("-crl and -crldir check client certificates: give -verify optional or require")
		}
		return cfg, nil
	}
	cfg.ServerName = f.serverName
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	verifies := f.ca != "" || f.caDir != ""
	if (f.crl != "" || f.crlDir != "") && !verifies {
		return nil, Usagef("-crl and -crldir check the server's certificate, which only -ca or -cadir verifies")
	}
	var warning string
	switch {
	case f.chainOnly && !verifies:
		return nil, Usagef("-verify-chain-only needs -ca or -cadir to verify the chain against")
	case f.chainOnly:
		cfg.VerifyChainOnly = true
		warning = "the server's host name is not checked (-verify-chain-only), as the C++ fork's client did: whoever holds any certificate from the CA can read and change the traffic"
	case !verifies:
		cfg.InsecureSkipVerify = true
		warning = "the server's certificate is not verified (no -ca), as the C++ client did: anyone in the path can read and change the traffic"
	case cfg.ServerName == "":
		return nil, Usagef("-ca and -cadir verify the server's host name, and the endpoint has none: give -servername NAME " +
			"(the name in the server's certificate), or -verify-chain-only to check the chain alone (dangerous)")
	}
	if warning != "" {
		fmt.Fprintf(stderr, "%s: warning: %s\n", f.fs.Name(), warning)
		cfg.Logger = slog.New(slog.DiscardHandler) // the line above says it, for the command's user
	}
	return cfg, nil
}

// KeyLogEnv names the environment variable that names a key log, as for curl, Firefox and
// Chrome: the commands that are TLS endpoints (tlsserver, tlsclient, tlsdevice) append their
// sessions' secrets to that file in NSS key-log format (Config.KeyLogWriter), for Wireshark or
// tshark to decrypt a capture with.
const KeyLogEnv = "SSLKEYLOGFILE"

// keyLog sets cfg.KeyLogWriter when $SSLKEYLOGFILE names a file, and says so on stderr; with
// -fips it refuses, FIPS mode forbids exporting the secrets. The file is created (mode 0600)
// or appended to.
func (f *TLSFlags) keyLog(cfg *tlszmq.Config, stderr io.Writer) error {
	path := os.Getenv(KeyLogEnv)
	if path == "" {
		return nil
	}
	if f.fips {
		return Usagef("$%s=%s and -fips: a key log exports the session secrets, which FIPS mode forbids "+
			"(unset %s, or leave -fips out)", KeyLogEnv, printable(path), KeyLogEnv)
	}
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return Usagef("$%s=%s: %v", KeyLogEnv, printable(path), pathErr(err))
	}
	file.Close()
	cfg.KeyLogWriter = &keyLogFile{path: path}
	fmt.Fprintf(stderr, "%s: warning: writing TLS secrets to $%s=%s: anyone who reads it can decrypt the traffic\n",
		f.fs.Name(), KeyLogEnv, printable(path))
	return nil
}

// keyLogFile appends each Write to the file at path, opening and closing it every time: a
// handshake writes once or twice, and the command holds no file that it would have to close at
// exit. Each Write is one write(2) in append mode, so the lines of several sessions, or of
// several processes given the same $SSLKEYLOGFILE, never interleave within a line.
type keyLogFile struct {
	mu   sync.Mutex
	path string
}

// Write appends p to the file; it is safe for concurrent use.
func (k *keyLogFile) Write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	file, err := os.OpenFile(k.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := file.Write(p)
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// needCertAndKey returns a usage error naming the certificate or key file that cannot be read;
// one that does not exist gets a hint: the flags that name them, and tlszmq keygen.
func (f *TLSFlags) needCertAndKey() error {
	what := "the certificate and its key"
	if f.role == tlszmq.RoleClient {
		what = "the client certificate and its key"
	}
	for _, p := range []string{f.cert, f.key} {
		if p == "" || IsKeyURI(p) {
			continue
		}
		file, err := os.Open(p)
		if err == nil {
			file.Close()
			continue
		}
		if errors.Is(err, os.ErrNotExist) {
			return Usagef("%s: %v; give %s with -cert and -key, or make them with tlszmq keygen", printable(p), pathErr(err), what)
		}
		return Usagef("%s: %v", printable(p), pathErr(err))
	}
	return nil
}

// The OpenSSL reasons and X509_V_ERR_* codes of a certificate too weak for the security
// level: its key too small, or its signature's digest too weak.
var (
	weakReasons = []string{"ee key too small", "ca key too small", "ca md too weak", "ee md too weak"}
	weakCodes   = map[int]bool{66: true, 67: true, 68: true} // EE_KEY_TOO_SMALL, CA_KEY_TOO_SMALL, CA_MD_TOO_WEAK
)

// Explain returns err with a hint when the flags can fix it: a certificate too weak for the
// OpenSSL security level (OpenSSL's "ee key too small", "ca md too weak", in loading a
// certificate or verifying the peer's) names the -seclevel that accepts it. Other errors, and
// nil, come back as they are. The hint keeps err's type: errors.Is and errors.As see through.
func (f *TLSFlags) Explain(err error) error {
	if err == nil || !weakCertificate(err) {
		return err
	}
	switch f.secLevel {
	case "0":
		return err
	case "1":
		return &hinted{err, "-seclevel 0 accepts weaker certificates still, such as the C++ fork's: it weakens security further"}
	}
	return &hinted{err, "a legacy certificate: -seclevel 1 accepts 1024-bit RSA keys and SHA-1 signatures, as the C++ original's certificate has, " +
		"-seclevel 0 also the C++ fork's; either weakens security"}
}

// weakCertificate reports whether err is OpenSSL refusing a certificate for the security
// level.
func weakCertificate(err error) bool {
	var verr *tlszmq.CertificateVerificationError
	if errors.As(err, &verr) && weakCodes[verr.Code] {
		return true
	}
	var terr *tlszmq.Error
	if errors.As(err, &terr) {
		for _, r := range terr.Reasons {
			for _, w := range weakReasons {
				if strings.Contains(strings.ToLower(r), w) {
					return true
				}
			}
		}
	}
	return false
}

// hinted is an error with a hint of what to do about it.
type hinted struct {
	err  error
	hint string
}

// Error returns the error's text, then the hint in parentheses.
func (h *hinted) Error() string { return h.err.Error() + " (" + h.hint + ")" }

// Unwrap returns the error.
func (h *hinted) Unwrap() error { return h.err }

// IsKeyURI reports whether a -key value is a PKCS#11 URI ("pkcs11:..."), which names a private
// key in a hardware module (tlszmq.Config.KeyURI) rather than a file.
func IsKeyURI(key string) bool { return strings.HasPrefix(key, "pkcs11:") }
