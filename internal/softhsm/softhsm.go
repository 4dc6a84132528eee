// Package softhsm makes SoftHSM2 tokens (Debian's softhsm2) for the tests that load private
// keys through PKCS#11: a folder of tokens with its own configuration, so that no system
// configuration is read or changed, and keys imported from PKCS#8 files that are deleted at
// once, so that the token holds the only copy the tests' Contexts see.
package softhsm

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// modules are where Debian's softhsm2 puts the PKCS#11 module.
var modules = []string{"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"}

// Tokens is a folder of SoftHSM2 tokens. The PKCS#11 module reads Conf when it is loaded, from
// the SOFTHSM2_CONF environment variable, which the caller sets (os.Setenv for a module this
// process loads, or the environment of the command that loads it).
type Tokens struct {
	Dir    string // the folder: the tokens and the configuration
	Conf   string // the configuration file, for SOFTHSM2_CONF
	Module string // the PKCS#11 module's path
	util   string // softhsm2-util
}

// New makes an empty token folder in dir. It fails, naming `make deps`, when softhsm2 is not
// installed: the tests never skip for want of it.
func New(dir string) (*Tokens, error) {
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		return nil, errors.New("softhsm2-util is not installed: make deps installs it (Debian softhsm2)")
	}
	tk := &Tokens{Dir: dir, Conf: filepath.Join(dir, "softhsm2.conf"), util: util}
	for _, m := range modules {
		if _, err := os.Stat(m); err == nil {
			tk.Module = m
			break
		}
	}
	if tk.Module == "" {
		return nil, fmt.Errorf("no SoftHSM2 module in %v: make deps installs it (Debian softhsm2)", modules)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		return nil, err
	}
	conf := fmt.Appendf(nil, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", tokens)
	if err := os.WriteFile(tk.Conf, conf, 0o600); err != nil {
		return nil, err
	}
	return tk, nil
}

// InitToken makes a token with its user and security officer PINs.
func (tk *Tokens) InitToken(label, pin, soPIN string) error {
	return tk.run("--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", soPIN)
}

// Import puts key (a Go private key) on token under label and id (hex), through a PKCS#8 file
// that is deleted once imported.
func (tk *Tokens) Import(token, label, id, pin string, key any) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	pk8 := filepath.Join(tk.Dir, label+".pk8")
	if err := os.WriteFile(pk8, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	err = tk.run("--import", pk8, "--token", token, "--label", label, "--id", id, "--pin", pin)
	if rerr := os.Remove(pk8); err == nil { // the key is on the token now, and nowhere else here
		err = rerr
	}
	return err
}

// URI returns the PKCS#11 URI of a key on a token, with the module as its module-path.
func (tk *Tokens) URI(token, label string) string {
	return fmt.Sprintf("pkcs11:token=%s;object=%s;type=private?module-path=%s", token, label, tk.Module)
}

func (tk *Tokens) run(args ...string) error {
	cmd := exec.Command(tk.util, args...)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+tk.Conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("softhsm2-util %v: %v\n%s", args, err, out)
	}
	return nil
}

// ReadKey reads a PEM private key file: PKCS#8, PKCS#1 (RSA) or SEC 1 (EC).
func ReadKey(file string) (any, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", file)
	}
	if key, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		return key, nil
	}
	if key, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return key, nil
	}
	if key, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return key, nil
	}
	return nil, fmt.Errorf("%s: not a private key", file)
}
