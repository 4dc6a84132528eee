//go:build ignore

// gen makes the test certificates in this folder. Run it from the module root:
//
//	go run ./testdata/certs/gen.go
//
// Modern keys and certificates are made through OpenSSL with internal/certgen (its C shim);
// the C++ peers' kinds (1024-bit RSA, SHA-1, version-1 CA) are made with the openssl command,
// as the original article made them. Everything valid is valid for 60 years from the day it is
// made (set here: certgen's own defaults are 10 years for a CA and 1 year otherwise).
package main

import (
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/tlszmq/tlszmq/internal/certgen"
)

var hosts = []string{"localhost", "127.0.0.1", "::1"}

func main() {
	dir := filepath.Join("testdata", "certs")
	if _, err := os.Stat(filepath.Join(dir, "gen.go")); err != nil {
		log.Fatal("run from the module root: go run ./testdata/certs/gen.go")
	}
	must := func(p *certgen.Pair, err error) *certgen.Pair {
		if err != nil {
			log.Fatal(err)
		}
		return p
	}
	write := func(p *certgen.Pair, name string, chain ...*certgen.Pair) {
		if err := p.Write(dir, name, chain...); err != nil {
			log.Fatal(err)
		}
		fmt.Println("wrote", filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
	}

	life := certgen.Years(60)
	ca := must(certgen.Issue(certgen.Spec{CommonName: "tlszmq test CA", IsCA: true, NotAfter: life}))
	write(ca, "ca")
	other := must(certgen.Issue(certgen.Spec{CommonName: "tlszmq other CA", IsCA: true, NotAfter: life}))
	write(other, "other-ca")

	for _, k := range []struct {
		suffix string
		key    certgen.KeyType
	}{{"", certgen.RSA2048}, {"-ec", certgen.ECDSAP256}} {
		write(must(certgen.Issue(certgen.Spec{CommonName: "localhost", Hosts: hosts, Key: k.key, Server: true, Issuer: ca, NotAfter: life})), "server"+k.suffix)
		write(must(certgen.Issue(certgen.Spec{CommonName: "tlszmq client" + k.suffix, Key: k.key, Client: true, Issuer: ca, NotAfter: life})), "client"+k.suffix)
	}
	// A server certificate with its chain in the same file: leaf, then an intermediate CA.
	inter := must(certgen.Issue(certgen.Spec{CommonName: "tlszmq intermediate CA", IsCA: true, Issuer: ca, NotAfter: life}))
	write(must(certgen.Issue(certgen.Spec{CommonName: "localhost", Hosts: hosts, Server: true, Issuer: inter, NotAfter: life})), "server-chain", inter)

	// For the error tests.
	year := certgen.Years(1)
	write(must(certgen.Issue(certgen.Spec{CommonName: "localhost", Hosts: hosts, Server: true, Issuer: ca,
		NotBefore: -2 * year, NotAfter: -year})), "expired")
	write(must(certgen.Issue(certgen.Spec{CommonName: "tlszmq expired client", Client: true, Issuer: ca,
		NotBefore: -2 * year, NotAfter: -year})), "expired-client")
	write(must(certgen.Issue(certgen.Spec{CommonName: "wrong.example", Hosts: []string{"wrong.example"}, Server: true, Issuer: ca, NotAfter: life})), "wronghost")
	write(must(certgen.Issue(certgen.Spec{CommonName: "localhost", Hosts: hosts, Server: true, NotAfter: life})), "selfsigned")
	write(must(certgen.Issue(certgen.Spec{CommonName: "tlszmq other client", Client: true, Issuer: other, NotAfter: life})), "other-client")

	// The C++ fork's kind: a version-1 CA, a server and a client certificate, all 1024-bit RSA
	// with SHA-1 (they need security level 0).
	days := fmt.Sprint(int(life / (24 * time.Hour)))
	forkCSR := filepath.Join(os.TempDir(), fmt.Sprintf("tlszmq-fork-%d.csr", os.Getpid()))
	defer os.Remove(forkCSR)
	openssl := func(args ...string) {
		cmd := exec.Command("openssl", args...)
		cmd.Stderr = os.Stderr
		if out, err := cmd.Output(); err != nil {
			log.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	path := func(name string) string { return filepath.Join(dir, name) }
	openssl("req", "-new", "-newkey", "rsa:1024", "-nodes", "-keyout", path("fork-ca.key"), "-subj", "/O=tlszmq/CN=fork CA", "-out", forkCSR)
	openssl("x509", "-req", "-in", forkCSR, "-signkey", path("fork-ca.key"), "-sha1", "-days", days, "-out", path("fork-ca.crt"))
	for _, name := range []string{"fork-server", "fork-client"} {
		openssl("req", "-new", "-newkey", "rsa:1024", "-nodes", "-keyout", path(name+".key"), "-subj", "/O=tlszmq/CN="+name, "-out", forkCSR)
		openssl("x509", "-req", "-in", forkCSR, "-CA", path("fork-ca.crt"), "-CAkey", path("fork-ca.key"), "-set_serial", fmt.Sprint(len(name)),
			"-sha1", "-days", days, "-out", path(name+".crt"))
	}
	for _, name := range []string{"fork-ca", "fork-server", "fork-client"} {
		if err := os.Chmod(path(name+".key"), 0o600); err != nil {
			log.Fatal(err)
		}
		fmt.Println("wrote", path(name+".crt"), path(name+".key"))
	}

	// The C++ original's kind of certificate: self-signed, 1024-bit RSA, SHA-1.
	legacy := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:1024", "-sha1", "-nodes",
		"-days", days, "-subj", "/O=tlszmq/CN=localhost",
		"-keyout", filepath.Join(dir, "legacy.key"), "-out", filepath.Join(dir, "legacy.crt"))
	legacy.Stderr = os.Stderr
	if err := legacy.Run(); err != nil {
		log.Fatalf("openssl req (legacy certificate): %v", err)
	}
	if err := os.Chmod(filepath.Join(dir, "legacy.key"), 0o600); err != nil {
		log.Fatal(err)
	}
	fmt.Println("wrote", filepath.Join(dir, "legacy.crt"), filepath.Join(dir, "legacy.key"))
}
