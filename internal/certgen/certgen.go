// Package certgen makes keys and X.509 certificates through OpenSSL, using
// github.com/libp2p/go-openssl (the maintained, API-compatible successor of
// spacemonkeygo/openssl). It serves `tlszmq keygen` and the generator of testdata/certs.
package certgen

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	openssl "github.com/libp2p/go-openssl"
)

// KeyType names a key algorithm and size.
type KeyType string

const (
	RSA2048   KeyType = "rsa2048"    // RSA, 2048 bits
	ECDSAP256 KeyType = "ecdsa-p256" // ECDSA on P-256
)

// Spec describes one certificate.
type Spec struct {
	CommonName string
	// Hosts become subjectAltName entries: DNS names, or IP addresses.
	Hosts []string
	Key   KeyType
	// IsCA makes a CA certificate (basicConstraints CA:TRUE, keyCertSign).
	IsCA bool
	// Client and Server set the extended key usages clientAuth and serverAuth.
	Client, Server bool
	// NotBefore and NotAfter are offsets from now; NotAfter 0 means 60 years.
	NotBefore, NotAfter time.Duration
	// Issuer signs the certificate; nil makes it self-signed.
	Issuer *Pair
}

// Pair is a certificate with its private key.
type Pair struct {
	Cert *openssl.Certificate
	Key  openssl.PrivateKey
}

// Years is a duration of n years of 365 days.
func Years(n int) time.Duration { return time.Duration(n) * 365 * 24 * time.Hour }

// Issue makes a key and a certificate as spec says, signed with SHA-256.
func Issue(spec Spec) (*Pair, error) {
	if spec.CommonName == "" {
		return nil, errors.New("certgen: a certificate needs a common name")
	}
	var key openssl.PrivateKey
	var err error
	switch spec.Key {
	case RSA2048, "":
		key, err = openssl.GenerateRSAKey(2048)
	case ECDSAP256:
		key, err = openssl.GenerateECKey(openssl.Prime256v1)
	default:
		return nil, fmt.Errorf("certgen: unknown key type %q (%s or %s)", spec.Key, RSA2048, ECDSAP256)
	}
	if err != nil {
		return nil, fmt.Errorf("certgen: generating the %s key: %w", spec.Key, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	notAfter := spec.NotAfter
	if notAfter == 0 {
		notAfter = Years(60)
	}
	cert, err := openssl.NewCertificate(&openssl.CertificateInfo{
		Serial:       serial,
		Issued:       spec.NotBefore,
		Expires:      notAfter,
		Country:      "ZZ", // go-openssl sets C, O and CN; ZZ is a user-assigned code
		Organization: "tlszmq",
		CommonName:   spec.CommonName,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("certgen: %s: %w", spec.CommonName, err)
	}
	if err := cert.SetVersion(openssl.X509_V3); err != nil {
		return nil, err
	}
	signer := key
	if spec.Issuer != nil {
		if err := cert.SetIssuer(spec.Issuer.Cert); err != nil {
			return nil, fmt.Errorf("certgen: %s: %w", spec.CommonName, err)
		}
		signer = spec.Issuer.Key
	}
	// go-openssl's AddExtension hands OpenSSL the subject and issuer the wrong way round, so
	// "hash" would name the issuer's key: the key identifier is computed here instead, and no
	// authority key identifier is added (chains are built by name).
	skid, err := keyID(key)
	if err != nil {
		return nil, fmt.Errorf("certgen: %s: %w", spec.CommonName, err)
	}
	exts := map[openssl.NID]string{
		openssl.NID_subject_key_identifier: skid,
	}
	if spec.IsCA {
		exts[openssl.NID_basic_constraints] = "critical,CA:TRUE"
		exts[openssl.NID_key_usage] = "critical,keyCertSign,cRLSign,digitalSignature"
	} else {
		exts[openssl.NID_basic_constraints] = "critical,CA:FALSE"
		exts[openssl.NID_key_usage] = "critical,digitalSignature,keyEncipherment"
		var eku []string
		if spec.Server {
			eku = append(eku, "serverAuth")
		}
		if spec.Client {
			eku = append(eku, "clientAuth")
		}
		if len(eku) > 0 {
			exts[openssl.NID_ext_key_usage] = strings.Join(eku, ",")
		}
	}
	if len(spec.Hosts) > 0 {
		var san []string
		for _, h := range spec.Hosts {
			if isIP(h) {
				san = append(san, "IP:"+h)
			} else {
				san = append(san, "DNS:"+h)
			}
		}
		exts[openssl.NID_subject_alt_name] = strings.Join(san, ",")
	}
	if err := cert.AddExtensions(exts); err != nil {
		return nil, fmt.Errorf("certgen: %s: extensions: %w", spec.CommonName, err)
	}
	if err := cert.Sign(signer, openssl.EVP_SHA256); err != nil {
		return nil, fmt.Errorf("certgen: signing %s: %w", spec.CommonName, err)
	}
	return &Pair{Cert: cert, Key: key}, nil
}

// keyID is RFC 5280's method 1 key identifier, the SHA-1 of the subjectPublicKey bits, in
// the colon-separated hex that OpenSSL's extension syntax takes.
func keyID(key openssl.PrivateKey) (string, error) {
	der, err := key.MarshalPKIXPublicKeyDER()
	if err != nil {
		return "", err
	}
	var spki struct {
		Algorithm asn1.RawValue
		Key       asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return "", err
	}
	sum := sha1.Sum(spki.Key.Bytes)
	hex := make([]string, len(sum))
	for i, b := range sum {
		hex[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(hex, ":"), nil
}

func isIP(h string) bool {
	return strings.Count(h, ".") == 3 && strings.Trim(h, "0123456789.") == "" || strings.Contains(h, ":")
}

// Write stores p as dir/name.crt (the certificate, followed by chain, if given) and dir/name.key
// (the private key, created with mode 0600: readable by its owner only).
func (p *Pair) Write(dir, name string, chain ...*Pair) error {
	certPEM, err := p.Cert.MarshalPEM()
	if err != nil {
		return fmt.Errorf("certgen: %s: %w", name, err)
	}
	for _, c := range chain {
		b, err := c.Cert.MarshalPEM()
		if err != nil {
			return fmt.Errorf("certgen: %s chain: %w", name, err)
		}
		certPEM = append(certPEM, b...)
	}
	keyPEM, err := p.Key.MarshalPKCS1PrivateKeyPEM()
	if err != nil {
		return fmt.Errorf("certgen: %s key: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), certPEM, 0o644); err != nil {
		return err
	}
	keyPath := filepath.Join(dir, name+".key")
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return os.Chmod(keyPath, 0o600) // WriteFile keeps the mode of a file that existed
}
