package certgen

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A CRL made by CRL is what crypto/x509 and the openssl command read: signed by its CA, with
// the revoked serial numbers, its dates, number and authority key identifier; and `openssl
// verify -crl_check` refuses the revoked certificate and accepts the other.
func TestCRL(t *testing.T) {
	dir := t.TempDir()
	ca := issue(t, Spec{CommonName: "CRL CA", IsCA: true, Key: ECDSAP256})
	revoked := issue(t, Spec{CommonName: "revoked", Key: ECDSAP256, Client: true, Issuer: ca})
	good := issue(t, Spec{CommonName: "good", Key: ECDSAP256, Client: true, Issuer: ca})
	writePair(t, ca, dir, "ca")
	writePair(t, revoked, dir, "revoked")
	writePair(t, good, dir, "good")
	crlPEM, err := CRL(CRLSpec{Issuer: ca, Revoked: []*Certificate{revoked.Cert}, ThisUpdate: -time.Hour, Number: 7})
	if err != nil {
		t.Fatal(err)
	}
	crlFile := filepath.Join(dir, "ca.crl")
	if err := os.WriteFile(crlFile, crlPEM, 0o644); err != nil {
		t.Fatal(err)
	}

	block, _ := pem.Decode(crlPEM)
	if block == nil || block.Type != "X509 CRL" {
		t.Fatalf("not a PEM X509 CRL:\n%s", crlPEM)
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	caCert := parse(t, ca.Cert)
	if err := crl.CheckSignatureFrom(caCert); err != nil {
		t.Errorf("signature: %v", err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(parse(t, revoked.Cert).SerialNumber) != 0 {
		t.Errorf("revoked entries %+v, want the serial of %q", crl.RevokedCertificateEntries, "revoked")
	}
	if crl.Number == nil || crl.Number.Int64() != 7 {
		t.Errorf("CRL number %v, want 7", crl.Number)
	}
	if string(crl.AuthorityKeyId) != string(caCert.SubjectKeyId) {
		t.Errorf("authority key id %x, want the CA's %x", crl.AuthorityKeyId, caCert.SubjectKeyId)
	}
	if d := time.Until(crl.ThisUpdate); d > -59*time.Minute || d < -61*time.Minute {
		t.Errorf("this update %v, want an hour ago", crl.ThisUpdate)
	}
	if d := time.Until(crl.NextUpdate); d < DefaultCRLValidity-time.Minute || d > DefaultCRLValidity {
		t.Errorf("next update %v, want in %v", crl.NextUpdate, DefaultCRLValidity)
	}

	openssl(t, "crl", "-in", crlFile, "-noout", "-CAfile", filepath.Join(dir, "ca.crt"))
	openssl(t, "verify", "-crl_check", "-CAfile", filepath.Join(dir, "ca.crt"), "-CRLfile", crlFile, filepath.Join(dir, "good.crt"))
	out, err := exec.Command("openssl", "verify", "-crl_check", "-CAfile", filepath.Join(dir, "ca.crt"), "-CRLfile", crlFile,
		filepath.Join(dir, "revoked.crt")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "certificate revoked") {
		t.Errorf("openssl verify of the revoked certificate: %v\n%s", err, out)
	}
}

// A CRL with nothing revoked is still a CRL; bad specs are refused.
func TestCRLSpecs(t *testing.T) {
	ca := issue(t, Spec{CommonName: "CRL CA", IsCA: true, Key: ECDSAP256})
	leaf := issue(t, Spec{CommonName: "leaf", Key: ECDSAP256, Issuer: ca})
	crlPEM, err := CRL(CRLSpec{Issuer: ca})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(crlPEM)
	if crl, err := x509.ParseRevocationList(block.Bytes); err != nil || len(crl.RevokedCertificateEntries) != 0 {
		t.Errorf("empty CRL: %v, %d entries", err, len(crl.RevokedCertificateEntries))
	}
	for name, spec := range map[string]CRLSpec{
		"no issuer":          {Revoked: []*Certificate{leaf.Cert}},
		"issuer without key": {Issuer: &Pair{Cert: ca.Cert}},
		"next before this":   {Issuer: ca, ThisUpdate: time.Hour, NextUpdate: time.Minute},
		"negative number":    {Issuer: ca, Number: -1},
		"empty certificate":  {Issuer: ca, Revoked: []*Certificate{{}}},
		"key of another":     {Issuer: &Pair{Cert: ca.Cert, Key: leaf.Key}},
	} {
		if _, err := CRL(spec); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
