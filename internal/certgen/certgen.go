// Package certgen makes keys and X.509 certificates through OpenSSL 3, with the small C shim
// in certgen.c: the OpenSSL the tlszmq library uses, in its default library context, so that
// a FIPS provider configured through OPENSSL_CONF makes the keys and signs the certificates.
// It serves `tlszmq keygen`, the generator of testdata/certs and internal/perf's fixture.
//
// Keys and certificates are held in Go as DER bytes (keys as PKCS#8); each call into C turns
// them into OpenSSL objects and frees those before it returns.
package certgen

/*
#cgo pkg-config: libcrypto
#include <stdlib.h>
#include "certgen.h"
*/
import "C"

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unsafe"
)

// KeyType names a key algorithm and size.
type KeyType string

const (
	RSA2048   KeyType = "rsa2048"    // RSA, 2048 bits (the default)
	RSA3072   KeyType = "rsa3072"    // RSA, 3072 bits
	RSA4096   KeyType = "rsa4096"    // RSA, 4096 bits
	ECDSAP256 KeyType = "ecdsa-p256" // ECDSA on P-256
)

// KeyTypes returns the key types there are, the default first.
func KeyTypes() []KeyType { return []KeyType{RSA2048, RSA3072, RSA4096, ECDSAP256} }

// params returns the OpenSSL parameters of t: a curve name, or an RSA size.
func (t KeyType) params() (curve string, rsaBits int, err error) {
	switch t {
	case RSA2048, "":
		return "", 2048, nil
	case RSA3072:
		return "", 3072, nil
	case RSA4096:
		return "", 4096, nil
	case ECDSAP256:
		return "P-256", 0, nil
	}
	names := make([]string, 0, 4)
	for _, k := range KeyTypes() {
		names = append(names, string(k))
	}
	return "", 0, fmt.Errorf("certgen: unknown key type %q (want %s)", string(t), strings.Join(names, ", "))
}

// The validity of a certificate whose Spec leaves NotAfter 0: 10 and 1 years (see Years).
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultLeafValidity = 365 * 24 * time.Hour
)

// Spec describes one certificate.
type Spec struct {
	CommonName string
	// Hosts become subjectAltName entries: DNS names, or IP addresses.
	Hosts []string
	Key   KeyType // "" is RSA2048
	// IsCA makes a CA certificate (basicConstraints CA:TRUE, keyCertSign).
	IsCA bool
	// Client and Server set the extended key usages clientAuth and serverAuth.
	Client, Server bool
	// NotBefore and NotAfter are offsets from now; NotAfter 0 means DefaultCAValidity for a
	// CA and DefaultLeafValidity for other certificates.
	NotBefore, NotAfter time.Duration
	// Issuer signs the certificate; nil makes it self-signed.
	Issuer *Pair
}

// Certificate is an X.509 certificate.
type Certificate struct{ der []byte }

// DER returns the certificate's DER encoding.
func (c *Certificate) DER() []byte { return bytes.Clone(c.der) }

// MarshalPEM returns the certificate as a PEM "CERTIFICATE" block.
func (c *Certificate) MarshalPEM() ([]byte, error) {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.der}), nil
}

// PrivateKey is a private key (with its public key).
type PrivateKey struct{ pkcs8 []byte }

// MarshalPEM returns the key unencrypted, as a PKCS#8 "PRIVATE KEY" PEM block.
func (k *PrivateKey) MarshalPEM() ([]byte, error) {
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k.pkcs8}), nil
}

// MarshalPKCS1PrivateKeyPEM returns the key unencrypted in the traditional PEM format of its
// type, as go-openssl's method of that name did: "RSA PRIVATE KEY" (PKCS#1) for RSA, "EC
// PRIVATE KEY" (SEC 1) for ECDSA. MarshalPEM's PKCS#8 is the format to prefer.
func (k *PrivateKey) MarshalPKCS1PrivateKeyPEM() ([]byte, error) {
	var out C.cg_buf
	var cerr C.cg_err
	p, n := cbytes(k.pkcs8)
	if C.cg_key_traditional_pem(p, n, &out, &cerr) != 1 {
		return nil, fmt.Errorf("certgen: %s", errText(&cerr))
	}
	return take(&out), nil
}

// Pair is a certificate with its private key.
type Pair struct {
	Cert *Certificate
	Key  *PrivateKey
}

// Years is a duration of n years of 365 days.
func Years(n int) time.Duration { return time.Duration(n) * 365 * 24 * time.Hour }

// GenerateKey makes a key of type t ("" is RSA2048).
func GenerateKey(t KeyType) (*PrivateKey, error) {
	curve, bits, err := t.params()
	if err != nil {
		return nil, err
	}
	var ccurve *C.char
	if curve != "" {
		ccurve = C.CString(curve)
		defer C.free(unsafe.Pointer(ccurve))
	}
	var out C.cg_buf
	var cerr C.cg_err
	if C.cg_keygen(ccurve, C.int(bits), &out, &cerr) != 1 {
		return nil, fmt.Errorf("certgen: %s key: %s", t, errText(&cerr))
	}
	return &PrivateKey{pkcs8: take(&out)}, nil
}

// Provider returns the name of the OpenSSL provider that makes keys of type t: "default",
// or "fips" when OPENSSL_CONF configures the FIPS provider as the default library context's.
func Provider(t KeyType) (string, error) {
	curve, _, err := t.params()
	if err != nil {
		return "", err
	}
	name := "RSA"
	if curve != "" {
		name = "EC"
	}
	alg := C.CString(name)
	defer C.free(unsafe.Pointer(alg))
	var prov [64]C.char
	var cerr C.cg_err
	if C.cg_keygen_provider(alg, &prov[0], C.size_t(len(prov)), &cerr) != 1 {
		return "", fmt.Errorf("certgen: %s", errText(&cerr))
	}
	return C.GoString(&prov[0]), nil
}

// Issue makes a key and a certificate as spec says, signed with SHA-256: a random 128-bit
// serial number, subject O=tlszmq, CN=spec.CommonName, and the extensions basicConstraints,
// keyUsage, extendedKeyUsage (leaves), subjectAltName (with Hosts), subjectKeyIdentifier and
// authorityKeyIdentifier.
func Issue(spec Spec) (*Pair, error) {
	if spec.CommonName == "" {
		return nil, errors.New("certgen: a certificate needs a common name")
	}
	if strings.ContainsRune(spec.CommonName, 0) {
		return nil, fmt.Errorf("certgen: common name %q holds a NUL byte", spec.CommonName)
	}
	if spec.Issuer != nil && (spec.Issuer.Cert == nil || spec.Issuer.Key == nil) {
		return nil, fmt.Errorf("certgen: %s: the issuer lacks its certificate or its key", spec.CommonName)
	}
	notAfter := spec.NotAfter
	if notAfter == 0 {
		notAfter = DefaultLeafValidity
		if spec.IsCA {
			notAfter = DefaultCAValidity
		}
	}
	if notAfter <= spec.NotBefore {
		return nil, fmt.Errorf("certgen: %s: NotAfter %v is not after NotBefore %v", spec.CommonName, notAfter, spec.NotBefore)
	}
	exts, err := extensions(spec)
	if err != nil {
		return nil, fmt.Errorf("certgen: %s: %w", spec.CommonName, err)
	}
	key, err := GenerateKey(spec.Key)
	if err != nil {
		return nil, err
	}
	der, err := sign(key, spec.Issuer, "tlszmq", spec.CommonName, spec.NotBefore, notAfter, exts)
	if err != nil {
		return nil, fmt.Errorf("certgen: %s: %w", spec.CommonName, err)
	}
	return &Pair{Cert: &Certificate{der: der}, Key: key}, nil
}

// extensions returns the extensions of spec's certificate, as name and value pairs in
// OpenSSL's configuration syntax, in the order they are added.
func extensions(spec Spec) ([][2]string, error) {
	var ext [][2]string
	if spec.IsCA {
		ext = append(ext, [2]string{"basicConstraints", "critical,CA:TRUE"},
			[2]string{"keyUsage", "critical,keyCertSign,cRLSign,digitalSignature"})
	} else {
		usage := "critical,digitalSignature"
		if spec.Key != ECDSAP256 {
			usage += ",keyEncipherment" // TLS 1.2's RSA key exchange; EC keys encipher nothing
		}
		ext = append(ext, [2]string{"basicConstraints", "critical,CA:FALSE"}, [2]string{"keyUsage", usage})
		var eku []string
		if spec.Server {
			eku = append(eku, "serverAuth")
		}
		if spec.Client {
			eku = append(eku, "clientAuth")
		}
		if len(eku) > 0 {
			ext = append(ext, [2]string{"extendedKeyUsage", strings.Join(eku, ",")})
		}
	}
	if len(spec.Hosts) > 0 {
		san := make([]string, 0, len(spec.Hosts))
		for _, h := range spec.Hosts {
			if err := CheckHost(h); err != nil {
				return nil, err
			}
			if ip := net.ParseIP(h); ip != nil {
				san = append(san, "IP:"+ip.String())
			} else {
				san = append(san, "DNS:"+h)
			}
		}
		ext = append(ext, [2]string{"subjectAltName", strings.Join(san, ",")})
	}
	// The subject key identifier first: a self-signed certificate's authority key identifier
	// is its own subject key identifier. A certificate with an issuer takes the issuer's
	// subject key identifier, or, if that issuer has none, its name and serial number.
	ext = append(ext, [2]string{"subjectKeyIdentifier", "hash"})
	if spec.Issuer == nil {
		ext = append(ext, [2]string{"authorityKeyIdentifier", "keyid:always"})
	} else {
		ext = append(ext, [2]string{"authorityKeyIdentifier", "keyid,issuer"})
	}
	return ext, nil
}

// CheckHost returns an error unless h can be a Spec's host: an IP address, or a DNS name of
// letters, digits, '-', '_', '.' and '*' (wildcards), which leaves out anything that OpenSSL's
// extension syntax would read as a separator.
func CheckHost(h string) error {
	if net.ParseIP(h) != nil {
		return nil
	}
	ok := h != "" && len(h) <= 253
	for _, r := range h {
		ok = ok && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.*", r))
	}
	if !ok {
		return fmt.Errorf("host %q is neither a DNS name nor an IP address", h)
	}
	return nil
}

// sign makes the certificate of key, signed by issuer (nil: self-signed), through cg_issue.
func sign(key *PrivateKey, issuer *Pair, org, cn string, notBefore, notAfter time.Duration, ext [][2]string) ([]byte, error) {
	nbs, nas := int64(notBefore/time.Second), int64(notAfter/time.Second)
	nb, na := C.long(nbs), C.long(nas)
	if int64(nb) != nbs || int64(na) != nas {
		return nil, errors.New("validity out of range for this platform's C long")
	}
	var strs []*C.char // every C string, freed on return
	defer func() {
		for _, s := range strs {
			C.free(unsafe.Pointer(s))
		}
	}()
	cstr := func(s string) *C.char {
		p := C.CString(s)
		strs = append(strs, p)
		return p
	}
	cext := make([]*C.char, 0, 2*len(ext)) // Go memory holding C pointers only
	for _, e := range ext {
		cext = append(cext, cstr(e[0]), cstr(e[1]))
	}
	keyP, keyN := cbytes(key.pkcs8)
	var icP, ikP *C.uchar
	var icN, ikN C.size_t
	if issuer != nil {
		icP, icN = cbytes(issuer.Cert.der)
		ikP, ikN = cbytes(issuer.Key.pkcs8)
	}
	var out C.cg_buf
	var cerr C.cg_err
	if C.cg_issue(keyP, keyN, icP, icN, ikP, ikN, cstr(org), cstr(cn), nb, na,
		&cext[0], C.int(len(ext)), &out, &cerr) != 1 {
		return nil, errors.New(errText(&cerr))
	}
	return take(&out), nil
}

// CRLSpec describes a certificate revocation list.
type CRLSpec struct {
	// Issuer is the CA whose CRL it is, and signs it.
	Issuer *Pair
	// Revoked lists the certificates revoked (by their serial numbers), each as of ThisUpdate.
	Revoked []*Certificate
	// ThisUpdate and NextUpdate are offsets from now: when the CRL was issued (0: now) and
	// when the next one is due (0: in 30 days). A NextUpdate in the past makes a CRL that has
	// expired.
	ThisUpdate, NextUpdate time.Duration
	// Number is the CRL number (crlNumber extension), 0 or more.
	Number int64
}

// DefaultCRLValidity is the time to a CRL's next update when its CRLSpec leaves NextUpdate 0.
const DefaultCRLValidity = 30 * 24 * time.Hour

// CRL makes a version 2 CRL as spec says, signed with SHA-256 by spec.Issuer's key, and
// returns it as a PEM "X509 CRL" block: the format of `openssl ca -gencrl`, which Config.CRLFile
// reads.
func CRL(spec CRLSpec) ([]byte, error) {
	if spec.Issuer == nil || spec.Issuer.Cert == nil || spec.Issuer.Key == nil {
		return nil, errors.New("certgen: a CRL needs its issuer's certificate and key")
	}
	next := spec.NextUpdate
	if next == 0 {
		next = DefaultCRLValidity
	}
	if next <= spec.ThisUpdate {
		return nil, fmt.Errorf("certgen: CRL: NextUpdate %v is not after ThisUpdate %v", next, spec.ThisUpdate)
	}
	if spec.Number < 0 {
		return nil, fmt.Errorf("certgen: CRL: negative number %d", spec.Number)
	}
	lus, nus := int64(spec.ThisUpdate/time.Second), int64(next/time.Second)
	lu, nu, num := C.long(lus), C.long(nus), C.long(spec.Number)
	if int64(lu) != lus || int64(nu) != nus || int64(num) != spec.Number {
		return nil, errors.New("certgen: CRL: a time or number out of range for this platform's C long")
	}
	// The revoked certificates one after the other, and their lengths: Go memory without Go
	// pointers in it, as cgo allows.
	var revoked []byte
	lens := make([]C.size_t, 0, len(spec.Revoked)+1)
	for _, c := range spec.Revoked {
		if c == nil || len(c.der) == 0 {
			return nil, errors.New("certgen: CRL: an empty revoked certificate")
		}
		revoked = append(revoked, c.der...)
		lens = append(lens, C.size_t(len(c.der)))
	}
	lens = append(lens, 0) // never empty: &lens[0] is always there
	icP, icN := cbytes(spec.Issuer.Cert.der)
	ikP, ikN := cbytes(spec.Issuer.Key.pkcs8)
	rP, _ := cbytes(revoked)
	var out C.cg_buf
	var cerr C.cg_err
	if C.cg_crl(icP, icN, ikP, ikN, rP, &lens[0], C.int(len(spec.Revoked)), lu, nu, num, &out, &cerr) != 1 {
		return nil, fmt.Errorf("certgen: CRL: %s", errText(&cerr))
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: take(&out)}), nil
}

// Load reads a certificate (the first in certFile) and its private key (keyFile, PKCS#8 or
// traditional, unencrypted) with OpenSSL's PEM reader, and checks that they belong together.
func Load(certFile, keyFile string) (*Pair, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	p, input, err := parsePEM(certPEM, keyPEM)
	switch {
	case err == nil:
		return p, nil
	case input == 1:
		return nil, fmt.Errorf("certgen: %s: %w", certFile, err)
	case input == 2:
		return nil, fmt.Errorf("certgen: %s: %w", keyFile, err)
	}
	return nil, fmt.Errorf("certgen: %s and %s: %w", certFile, keyFile, err)
}

// ParsePEM is Load for PEM bytes.
func ParsePEM(certPEM, keyPEM []byte) (*Pair, error) {
	p, _, err := parsePEM(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certgen: %w", err)
	}
	return p, nil
}

// parsePEM also returns which input was at fault: 1 the certificate, 2 the key, 0 neither.
func parsePEM(certPEM, keyPEM []byte) (*Pair, int, error) {
	if len(certPEM) == 0 {
		return nil, 1, errors.New("no certificate: empty")
	}
	if len(keyPEM) == 0 {
		return nil, 2, errors.New("no private key: empty")
	}
	cP, cN := cbytes(certPEM)
	kP, kN := cbytes(keyPEM)
	var cert, key C.cg_buf
	var cerr C.cg_err
	if C.cg_read_pem(cP, cN, kP, kN, &cert, &key, &cerr) != 1 {
		return nil, int(cerr.input), errors.New(errText(&cerr))
	}
	return &Pair{Cert: &Certificate{der: take(&cert)}, Key: &PrivateKey{pkcs8: take(&key)}}, 0, nil
}

// Paths returns the files that Write and Create store a pair named name in.
func Paths(dir, name string) (crt, key string) {
	return filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
}

// Write stores p as dir/name.crt (the certificate, followed by chain's certificates, PEM, mode
// 0644) and dir/name.key (the private key, unencrypted PKCS#8 PEM, mode 0600: readable by its
// owner only). A file that exists is removed and made anew, so that the key is never readable
// by others whatever the mode of the file it replaces, and a symbolic link is replaced, not
// followed.
func (p *Pair) Write(dir, name string, chain ...*Pair) error { return p.write(dir, name, chain, true) }

// Create is Write that writes nothing and fails with an error wrapping fs.ErrExist when
// either file exists.
func (p *Pair) Create(dir, name string, chain ...*Pair) error {
	return p.write(dir, name, chain, false)
}

func (p *Pair) write(dir, name string, chain []*Pair, replace bool) error {
	crtPath, keyPath := Paths(dir, name)
	certPEM, _ := p.Cert.MarshalPEM()
	for _, c := range chain {
		b, _ := c.Cert.MarshalPEM()
		certPEM = append(certPEM, b...)
	}
	keyPEM, _ := p.Key.MarshalPEM()
	if !replace {
		for _, path := range []string{crtPath, keyPath} {
			if _, err := os.Lstat(path); err == nil {
				return fmt.Errorf("certgen: %s: %w", path, fs.ErrExist)
			}
		}
	}
	if err := writeFile(keyPath, keyPEM, 0o600, replace); err != nil {
		return err
	}
	if err := writeFile(crtPath, certPEM, 0o644, replace); err != nil {
		if !replace {
			os.Remove(keyPath) // made above: Create writes both or nothing
		}
		return err
	}
	return nil
}

// writeFile creates path with perm, failing if it exists unless replace, which removes it
// first. O_EXCL neither follows a symbolic link nor keeps an old file's mode.
func writeFile(path string, data []byte, perm os.FileMode, replace bool) error {
	if replace {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// cbytes returns b for a C call: a pointer to its first byte (nil when empty) and its length.
// C reads it during the call only.
func cbytes(b []byte) (*C.uchar, C.size_t) {
	if len(b) == 0 {
		return nil, 0
	}
	return (*C.uchar)(unsafe.Pointer(&b[0])), C.size_t(len(b))
}

// take copies what C allocated into Go memory and frees it.
func take(b *C.cg_buf) []byte {
	defer C.cg_buf_free(b)
	return C.GoBytes(unsafe.Pointer(b.data), C.int(b.len))
}

func errText(e *C.cg_err) string { return C.GoString(&e.text[0]) }
