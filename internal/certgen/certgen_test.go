package certgen

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestIssueChainVerifies(t *testing.T) {
	dir := t.TempDir()
	ca, err := Issue(Spec{CommonName: "test CA", IsCA: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []KeyType{RSA2048, ECDSAP256} {
		leaf, err := Issue(Spec{CommonName: "localhost", Hosts: []string{"localhost", "127.0.0.1"}, Key: key, Server: true, Issuer: ca})
		if err != nil {
			t.Fatal(err)
		}
		if err := leaf.Write(dir, string(key)); err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(filepath.Join(dir, string(key)+".key"))
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("key file mode %v, %v; want 0600", info.Mode().Perm(), err)
		}
		leafCert := parse(t, filepath.Join(dir, string(key)+".crt"))
		caPEM, _ := ca.Cert.MarshalPEM()
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(caPEM)
		if _, err := leafCert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "localhost"}); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if leafCert.NotAfter.Before(time.Now().Add(Years(50))) {
			t.Fatalf("%s: valid only until %v", key, leafCert.NotAfter)
		}
		caCert, _ := x509.ParseCertificate(derOf(t, caPEM))
		if string(leafCert.SubjectKeyId) == string(caCert.SubjectKeyId) {
			t.Fatalf("%s: the leaf carries its issuer's key identifier", key)
		}
	}
}

func TestUnknownKeyType(t *testing.T) {
	if _, err := Issue(Spec{CommonName: "x", Key: "dsa"}); err == nil {
		t.Fatal("an unknown key type was accepted")
	}
}

func parse(t *testing.T, path string) *x509.Certificate {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(derOf(t, b))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func derOf(t *testing.T, b []byte) []byte {
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("no PEM block")
	}
	return block.Bytes
}
