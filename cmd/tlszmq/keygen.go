package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	openssl "github.com/libp2p/go-openssl"

	"github.com/tlszmq/tlszmq/internal/certgen"
	"github.com/tlszmq/tlszmq/internal/cli"
)

// runKeygen makes ca.crt/ca.key (or reuses them), server.crt/server.key and
// client.crt/client.key in a folder. Private keys are written with mode 0600.
func runKeygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("keygen")
	dir := fs.String("dir", ".", "folder to write the files in")
	hosts := fs.String("hosts", "localhost,127.0.0.1,::1", "comma-separated host names and IP addresses of the server certificate")
	key := fs.String("key", string(certgen.RSA2048), "key type: rsa2048 or ecdsa-p256")
	years := fs.Int("years", 60, "validity in years")
	if err := cli.Parse(fs, args, stderr); err != nil {
		return err
	}
	kt := certgen.KeyType(*key)
	if kt != certgen.RSA2048 && kt != certgen.ECDSAP256 {
		return cli.Usagef("-key %q: want rsa2048 or ecdsa-p256", *key)
	}
	if *years < 1 {
		return cli.Usagef("-years %d: want at least 1", *years)
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	validity := certgen.Years(*years)
	ca, reused, err := loadOrMakeCA(*dir, kt, validity)
	if err != nil {
		return err
	}
	if reused {
		fmt.Fprintf(stdout, "using the CA in %s\n", filepath.Join(*dir, "ca.crt"))
	} else {
		fmt.Fprintf(stdout, "wrote %s and %s\n", filepath.Join(*dir, "ca.crt"), filepath.Join(*dir, "ca.key"))
	}
	var hostList []string
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hostList = append(hostList, h)
		}
	}
	if len(hostList) == 0 {
		return cli.Usagef("-hosts names no host")
	}
	for _, s := range []struct {
		name string
		spec certgen.Spec
	}{
		{"server", certgen.Spec{CommonName: hostList[0], Hosts: hostList, Server: true}},
		{"client", certgen.Spec{CommonName: "tlszmq client", Client: true}},
	} {
		s.spec.Key, s.spec.Issuer, s.spec.NotAfter = kt, ca, validity
		p, err := certgen.Issue(s.spec)
		if err != nil {
			return err
		}
		if err := p.Write(*dir, s.name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s and %s\n", filepath.Join(*dir, s.name+".crt"), filepath.Join(*dir, s.name+".key"))
	}
	return nil
}

func loadOrMakeCA(dir string, kt certgen.KeyType, validity time.Duration) (*certgen.Pair, bool, error) {
	certPEM, cerr := os.ReadFile(filepath.Join(dir, "ca.crt"))
	keyPEM, kerr := os.ReadFile(filepath.Join(dir, "ca.key"))
	if cerr == nil && kerr == nil {
		cert, err := openssl.LoadCertificateFromPEM(certPEM)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", filepath.Join(dir, "ca.crt"), err)
		}
		key, err := openssl.LoadPrivateKeyFromPEM(keyPEM)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", filepath.Join(dir, "ca.key"), err)
		}
		return &certgen.Pair{Cert: cert, Key: key}, true, nil
	}
	ca, err := certgen.Issue(certgen.Spec{CommonName: "tlszmq CA", IsCA: true, Key: kt, NotAfter: validity})
	if err != nil {
		return nil, false, err
	}
	return ca, false, ca.Write(dir, "ca")
}
