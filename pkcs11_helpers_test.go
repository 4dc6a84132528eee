package tlszmq

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq/internal/softhsm"
)

// The SoftHSM2 token the PKCS#11 tests use (package internal/softhsm). PKCS#11 initialises a
// module once per process (C_Initialize), and SoftHSM2 reads its configuration
// (SOFTHSM2_CONF) then; the shim keeps the module loaded for the life of the process. So the
// tokens are made once per test process, before any test loads the module.
const (
	hsmToken    = "tlszmq"     // holds the keys below, PIN hsmPIN
	hsmPIN      = "1234"       // the user PIN of both tokens
	hsmSOPIN    = "5678"       // the security officer's PIN
	hsmPINToken = "tlszmq-pin" // holds hsmRSAKey too; only ever given wrong PINs, so never logged in
	hsmRSAKey   = "server"     // testdata/certs/server.key
	hsmECKey    = "server-ec"  // testdata/certs/server-ec.key
	hsmFreshKey = "fresh"      // made by makeSoftHSM: no copy of it exists outside the token
)

type softHSM struct {
	*softhsm.Tokens        // in a folder removed by TestMain
	freshCert       []byte // PEM: the self-signed certificate ("localhost") of hsmFreshKey
	freshFile       string // where hsmFreshKey was written for the import, and deleted from
}

var (
	hsmOnce  sync.Once
	hsmState *softHSM
	hsmErr   error
)

// needSoftHSM returns the process's SoftHSM2 tokens, making them the first time. A missing
// package fails the test, naming `make deps`: the tests never skip for want of it.
//
// The folder is under os.TempDir, not a test's t.TempDir: the module keeps reading it after the
// test that made it has finished, until the process ends.
func needSoftHSM(t testing.TB) *softHSM {
	t.Helper()
	hsmOnce.Do(func() { hsmState, hsmErr = makeSoftHSM() })
	if hsmErr != nil {
		t.Fatal(hsmErr)
	}
	return hsmState
}

func makeSoftHSM() (*softHSM, error) {
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so"); err != nil && isAMD64Debian() {
		return nil, errors.New("OpenSSL's pkcs11 engine is not installed: make deps installs it (Debian libengine-pkcs11-openssl)")
	}
	dir, err := os.MkdirTemp("", "tlszmq-softhsm-")
	if err != nil {
		return nil, err
	}
	h := &softHSM{}
	if h.Tokens, err = softhsm.New(dir); err != nil {
		return nil, err
	}
	if err := os.Setenv("SOFTHSM2_CONF", h.Conf); err != nil { // read by the module when it loads
		return nil, err
	}
	for _, tok := range []string{hsmToken, hsmPINToken} {
		if err := h.InitToken(tok, hsmPIN, hsmSOPIN); err != nil {
			return nil, err
		}
	}
	// A key made here, written only for the import.
	fresh, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tlszmq hsm"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &fresh.PublicKey, fresh)
	if err != nil {
		return nil, err
	}
	h.freshCert = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	h.freshFile = filepath.Join(dir, hsmFreshKey+".pk8") // softhsm.Import's name for it
	for _, k := range []struct {
		token, label, id string
		file             string // "" for fresh
	}{
		{hsmToken, hsmRSAKey, "01", cert("server.key")},
		{hsmToken, hsmECKey, "02", cert("server-ec.key")},
		{hsmPINToken, hsmRSAKey, "01", cert("server.key")},
		{hsmToken, hsmFreshKey, "03", ""},
	} {
		var key any = fresh
		if k.file != "" {
			if key, err = softhsm.ReadKey(k.file); err != nil {
				return nil, err
			}
		}
		if err := h.Import(k.token, k.label, k.id, hsmPIN, key); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func isAMD64Debian() bool {
	_, err := os.Stat("/usr/lib/x86_64-linux-gnu")
	return err == nil
}

// serverConfig returns a server Config whose key is on the token (the PIN in KeyPassword) and
// whose certificate is the fixture of the same name.
func (h *softHSM) serverConfig(label string) *Config {
	return &Config{CertFile: cert(label + ".crt"), KeyURI: h.URI(hsmToken, label), KeyPassword: hsmPIN}
}
