package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tlszmq/tlszmq/internal/certgen"
	"github.com/tlszmq/tlszmq/internal/cli"
)

// runKeygen makes ca.crt/ca.key (or reuses them), server.crt/server.key and
// client.crt/client.key in a folder, through OpenSSL (internal/certgen). Private keys are
// unencrypted PKCS#8 with mode 0600. It overwrites no file unless -force says so.
func runKeygen(args []string, stdout, stderr io.Writer) error {
	flags := newFlags("keygen")
	dir := flags.String("dir", ".", "folder to write the files in (a CA already there, ca.crt and ca.key, is reused)")
	hosts := flags.String("hosts", "localhost,127.0.0.1,::1", "comma-separated host names and IP addresses of the server certificate")
	var names []string
	for _, k := range certgen.KeyTypes() {
		names = append(names, string(k))
	}
	key := flags.String("key", string(certgen.RSA2048), "key type: "+strings.Join(names, ", "))
	years := flags.Int("years", 1, "validity of the server and client certificates, in years")
	caYears := flags.Int("ca-years", 10, "validity of a new CA, in years")
	force := flags.Bool("force", false, "overwrite server and client files that exist (and a ca.crt or ca.key without its other half)")
	if err := cli.Parse(flags, args, stderr); err != nil {
		return err
	}
	kt := certgen.KeyType(*key)
	if !slices.Contains(certgen.KeyTypes(), kt) {
		return cli.Usagef("-key %q: want %s", *key, strings.Join(names, ", "))
	}
	if *years < 1 || *years > 100 {
		return cli.Usagef("-years %d: want 1 to 100", *years)
	}
	if *caYears < 1 || *caYears > 100 {
		return cli.Usagef("-ca-years %d: want 1 to 100", *caYears)
	}
	var hostList []string
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			if err := certgen.CheckHost(h); err != nil {
				return cli.Usagef("-hosts: %v", err)
			}
			hostList = append(hostList, h)
		}
	}
	if len(hostList) == 0 {
		return cli.Usagef("-hosts names no host")
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}

	// Every file is checked before anything is made, so that a refusal leaves the folder as
	// it was.
	caCrt, caKey := certgen.Paths(*dir, "ca")
	reuseCA := exists(caCrt) && exists(caKey)
	check := []string{"server", "client"}
	if !reuseCA {
		check = append([]string{"ca"}, check...)
	}
	if !*force {
		for _, name := range check {
			crt, key := certgen.Paths(*dir, name)
			for _, f := range []string{crt, key} {
				if exists(f) {
					return cli.Usagef("%s exists: -force overwrites it", f)
				}
			}
		}
	}

	var ca *certgen.Pair
	var err error
	var caCN string
	if reuseCA {
		ca, err = certgen.Load(caCrt, caKey)
	} else {
		caCN = caName()
		ca, err = certgen.Issue(certgen.Spec{CommonName: caCN, IsCA: true, Key: kt, NotAfter: certgen.Years(*caYears)})
	}
	if err != nil {
		return err
	}
	leaves := []struct {
		name string
		spec certgen.Spec
	}{
		{"server", certgen.Spec{CommonName: hostList[0], Hosts: hostList, Server: true}},
		{"client", certgen.Spec{CommonName: "tlszmq client", Client: true}},
	}
	pairs := make([]*certgen.Pair, len(leaves))
	for i := range leaves {
		s := &leaves[i].spec
		s.Key, s.Issuer, s.NotAfter = kt, ca, certgen.Years(*years)
		if pairs[i], err = certgen.Issue(*s); err != nil {
			return err
		}
	}

	write := (*certgen.Pair).Create
	if *force {
		write = (*certgen.Pair).Write
	}
	if reuseCA {
		fmt.Fprintf(stdout, "using the CA in %s\n", caCrt)
	} else {
		if err := write(ca, *dir, "ca"); err != nil {
			return overwriteError(err)
		}
		fmt.Fprintf(stdout, "wrote %s and %s: %q, valid for %s\n", caCrt, caKey, caCN, yearsText(*caYears))
	}
	for i, l := range leaves {
		if err := write(pairs[i], *dir, l.name); err != nil {
			return overwriteError(err)
		}
		crt, key := certgen.Paths(*dir, l.name)
		fmt.Fprintf(stdout, "wrote %s and %s, valid for %s\n", crt, key, yearsText(*years))
	}
	return nil
}

// caName returns a name that tells one CA from another: "tlszmq CA HOST YYYY-MM-DD XXXX",
// with this machine's name, today's date and four random hexadecimal digits, within the 64
// characters a common name may have.
func caName() string {
	host, _ := os.Hostname()
	host, _, _ = strings.Cut(host, ".")
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return -1
	}, host)
	if host == "" {
		host = "localhost"
	}
	var b [2]byte
	rand.Read(b[:])
	const fixed = len("tlszmq CA  2006-01-02 abcd")
	if len(host) > 64-fixed {
		host = host[:64-fixed]
	}
	return fmt.Sprintf("tlszmq CA %s %s %s", host, time.Now().UTC().Format("2006-01-02"), hex.EncodeToString(b[:]))
}

// overwriteError turns Create's refusal (a file that appeared since the check) into the
// usage error the check gives.
func overwriteError(err error) error {
	if errors.Is(err, fs.ErrExist) {
		return cli.Usagef("%s (-force overwrites it)", strings.TrimPrefix(err.Error(), "certgen: "))
	}
	return err
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func yearsText(n int) string {
	if n == 1 {
		return "1 year"
	}
	return fmt.Sprintf("%d years", n)
}
