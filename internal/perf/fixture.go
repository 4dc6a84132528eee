package perf

import (
	"os"
	"path/filepath"

	"github.com/tlszmq/tlszmq/internal/certgen"
)

// Fixture holds the certificates the measurements use, made through OpenSSL at start-up: a
// CA, and a server certificate for "localhost" with an RSA-2048 key and with an ECDSA P-256
// key, all PEM.
type Fixture struct {
	CACert          []byte
	RSACert, RSAKey []byte
	ECCert, ECKey   []byte
}

// NewFixture makes the certificates.
func NewFixture() (*Fixture, error) {
	ca, err := certgen.Issue(certgen.Spec{CommonName: "tlszmq bench CA", IsCA: true, Key: certgen.ECDSAP256})
	if err != nil {
		return nil, err
	}
	f := &Fixture{}
	if f.CACert, err = ca.Cert.MarshalPEM(); err != nil {
		return nil, err
	}
	for _, k := range []struct {
		typ      certgen.KeyType
		crt, key *[]byte
	}{{certgen.RSA2048, &f.RSACert, &f.RSAKey}, {certgen.ECDSAP256, &f.ECCert, &f.ECKey}} {
		p, err := certgen.Issue(certgen.Spec{CommonName: "localhost", Hosts: []string{"localhost", "127.0.0.1"},
			Key: k.typ, Server: true, Issuer: ca})
		if err != nil {
			return nil, err
		}
		if *k.crt, err = p.Cert.MarshalPEM(); err != nil {
			return nil, err
		}
		if *k.key, err = p.Key.MarshalPKCS1PrivateKeyPEM(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// writeFiles writes the server's certificate and key of one type into dir, for the C limit,
// which loads files.
func (f *Fixture) writeFiles(dir string, ecdsa bool) (crt, key string, err error) {
	c, k := f.RSACert, f.RSAKey
	if ecdsa {
		c, k = f.ECCert, f.ECKey
	}
	crt, key = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err = os.WriteFile(crt, c, 0o644); err == nil {
		err = os.WriteFile(key, k, 0o600)
	}
	return crt, key, err
}
