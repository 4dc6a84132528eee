package tlszmq

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The SoftHSM2 token the PKCS#11 tests use. PKCS#11 initialises a module once per process
// (C_Initialize), and SoftHSM2 reads its configuration (SOFTHSM2_CONF) then; the shim keeps
// the module loaded for the life of the process. So the tokens are made once per test
// process, in a temporary folder that SOFTHSM2_CONF points to, before any test loads the
// module; no system configuration is read or changed.
const (
	hsmToken    = "tlszmq"     // holds the keys below, PIN hsmPIN
	hsmPIN      = "1234"       // the user PIN of both tokens
	hsmSOPIN    = "5678"       // the security officer's PIN
	hsmPINToken = "tlszmq-pin" // holds hsmRSAKey too; only ever given wrong PINs, so never logged in
	hsmRSAKey   = "server"     // testdata/certs/server.key
	hsmECKey    = "server-ec"  // testdata/certs/server-ec.key
	hsmFreshKey = "fresh"      // made by makeSoftHSM: no copy of it exists outside the token
)

// softHSMModules are where Debian's softhsm2 (libsofthsm2) puts the PKCS#11 module.
var softHSMModules = []string{"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"}

type softHSM struct {
	dir       string // the token folder and configuration, removed by TestMain
	module    string // the PKCS#11 module's path
	freshCert []byte // PEM: the self-signed certificate ("localhost") of hsmFreshKey
	freshFile string // where hsmFreshKey was written for the import, and deleted from
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
// test that made it has finished, until the process ends. Its keys are imported from PKCS#8
// files that are deleted once imported: the only copy of the key the tests' Contexts see is
// the token's.
func needSoftHSM(t testing.TB) *softHSM {
	t.Helper()
	hsmOnce.Do(func() { hsmState, hsmErr = makeSoftHSM() })
	if hsmErr != nil {
		t.Fatal(hsmErr)
	}
	return hsmState
}

func makeSoftHSM() (*softHSM, error) {
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		return nil, errors.New("softhsm2-util is not installed: make deps installs it (Debian softhsm2)")
	}
	h := &softHSM{}
	for _, m := range softHSMModules {
		if _, err := os.Stat(m); err == nil {
			h.module = m
			break
		}
	}
	if h.module == "" {
		return nil, fmt.Errorf("no SoftHSM2 module in %v: make deps installs it (Debian softhsm2)", softHSMModules)
	}
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so"); err != nil && isAMD64Debian() {
		return nil, errors.New("OpenSSL's pkcs11 engine is not installed: make deps installs it (Debian libengine-pkcs11-openssl)")
	}
	if h.dir, err = os.MkdirTemp("", "tlszmq-softhsm-"); err != nil {
		return nil, err
	}
	tokens := filepath.Join(h.dir, "tokens")
	conf := filepath.Join(h.dir, "softhsm2.conf")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(conf, fmt.Appendf(nil, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", tokens), 0o600); err != nil {
		return nil, err
	}
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil { // read by the module when it loads
		return nil, err
	}
	run := func(args ...string) error {
		cmd := exec.Command(util, args...)
		cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("softhsm2-util %v: %v\n%s", args, err, out)
		}
		return nil
	}
	for _, tok := range []string{hsmToken, hsmPINToken} {
		if err := run("--init-token", "--free", "--label", tok, "--pin", hsmPIN, "--so-pin", hsmSOPIN); err != nil {
			return nil, err
		}
	}
	imports := []struct{ token, label, id, file string }{
		{hsmToken, hsmRSAKey, "01", cert("server.key")},
		{hsmToken, hsmECKey, "02", cert("server-ec.key")},
		{hsmPINToken, hsmRSAKey, "01", cert("server.key")},
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
	h.freshFile = filepath.Join(h.dir, hsmFreshKey+".pk8")
	imports = append(imports, struct{ token, label, id, file string }{hsmToken, hsmFreshKey, "03", ""})
	for _, k := range imports {
		pk8 := filepath.Join(h.dir, k.label+".pk8")
		if k.file == "" {
			if err := writeKey(fresh, pk8); err != nil {
				return nil, err
			}
		} else if err := writePKCS8(k.file, pk8); err != nil {
			return nil, err
		}
		err := run("--import", pk8, "--token", k.token, "--label", k.label, "--id", k.id, "--pin", hsmPIN)
		// The key is on the token now, and nowhere else in the folder.
		if rerr := os.Remove(pk8); err == nil {
			err = rerr
		}
		if err != nil {
			return nil, err
		}
	}
	return h, nil
}

func isAMD64Debian() bool {
	_, err := os.Stat("/usr/lib/x86_64-linux-gnu")
	return err == nil
}

// writePKCS8 writes the PEM private key in file to out as unencrypted PKCS#8, the form
// softhsm2-util imports.
func writePKCS8(file, out string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return fmt.Errorf("%s: no PEM block", file)
	}
	var key any
	if key, err = x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		if key, err = x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
			if key, err = x509.ParseECPrivateKey(block.Bytes); err != nil {
				return fmt.Errorf("%s: not a private key", file)
			}
		}
	}
	return writeKey(key, out)
}

func writeKey(key any, out string) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// uri returns the PKCS#11 URI of a key on a token, with the module as its module-path.
func (h *softHSM) uri(token, label string) string {
	return fmt.Sprintf("pkcs11:token=%s;object=%s;type=private?module-path=%s", token, label, h.module)
}

// serverConfig returns a server Config whose key is on the token (the PIN in KeyPassword) and
// whose certificate is the fixture of the same name.
func (h *softHSM) serverConfig(label string) *Config {
	return &Config{CertFile: cert(label + ".crt"), KeyURI: h.uri(hsmToken, label), KeyPassword: hsmPIN}
}
