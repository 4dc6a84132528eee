package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tlszmq/tlszmq"
)

// keyLogFlags parses args as the TLS flags of a command named name.
func keyLogFlags(t *testing.T, name string, role tlszmq.Role, args ...string) *TLSFlags {
	t.Helper()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	cert, key := "", ""
	if role == tlszmq.RoleServer {
		cert, key = testCert("server.crt"), testCert("server.key")
	}
	tf := AddTLSFlags(fs, role, cert, key)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return tf
}

// testCert is a fixture of the module's testdata/certs.
func testCert(name string) string { return filepath.Join("..", "..", "testdata", "certs", name) }

// $SSLKEYLOGFILE gives the Config a KeyLogWriter that appends to the file (created 0600), with
// a warning on stderr; without it there is none and nothing is said.
func TestKeyLogFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.log")
	t.Setenv(KeyLogEnv, path)
	for _, c := range []struct {
		name string
		role tlszmq.Role
	}{{"tlsserver", tlszmq.RoleServer}, {"tlsclient", tlszmq.RoleClient}} {
		var stderr bytes.Buffer
		cfg, err := keyLogFlags(t, c.name, c.role, "-ca", testCert("ca.crt")).Config("localhost", &stderr)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if cfg.KeyLogWriter == nil {
			t.Fatalf("%s: no KeyLogWriter with $SSLKEYLOGFILE set", c.name)
		}
		want := c.name + ": warning: writing TLS secrets to $SSLKEYLOGFILE=" + path + ": anyone who reads it can decrypt the traffic\n"
		if stderr.String() != want {
			t.Errorf("%s: stderr %q, want %q", c.name, stderr.String(), want)
		}
		if _, err := cfg.KeyLogWriter.Write([]byte(c.name + " line\n")); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("the key log's mode is %v, want 0600", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(path); string(b) != "tlsserver line\ntlsclient line\n" {
		t.Errorf("the key log holds %q: each writer appends", b)
	}

	// Writers on several goroutines (a server's sessions) append whole writes.
	w := &keyLogFile{path: path}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				w.Write([]byte(strings.Repeat("x", 199) + "\n"))
			}
		}()
	}
	wg.Wait()
	b, _ := os.ReadFile(path)
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")[2:] {
		if len(line) != 199 {
			t.Fatalf("a line of %d bytes: writes interleaved", len(line))
		}
	}

	t.Setenv(KeyLogEnv, "")
	var stderr bytes.Buffer
	cfg, err := keyLogFlags(t, "tlsserver", tlszmq.RoleServer).Config("", &stderr)
	if err != nil || cfg.KeyLogWriter != nil || stderr.Len() != 0 {
		t.Errorf("without $SSLKEYLOGFILE: %v, KeyLogWriter %v, stderr %q", err, cfg.KeyLogWriter, stderr.String())
	}
}

// $SSLKEYLOGFILE with -fips is a usage error naming both, and the file is not made; a file
// that cannot be opened is a usage error naming it.
func TestKeyLogFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.log")
	t.Setenv(KeyLogEnv, path)
	var stderr bytes.Buffer
	_, err := keyLogFlags(t, "tlsserver", tlszmq.RoleServer, "-fips").Config("", &stderr)
	if Status(err) != ExitUsage || !strings.Contains(err.Error(), "$SSLKEYLOGFILE="+path) || !strings.Contains(err.Error(), "-fips") ||
		!strings.Contains(err.Error(), "FIPS mode forbids") {
		t.Errorf("-fips with $SSLKEYLOGFILE: %v (status %d), want a usage error naming both", err, Status(err))
	}
	if _, serr := os.Stat(path); serr == nil || stderr.Len() != 0 {
		t.Errorf("refused, yet the key log was made or a warning printed: %q", stderr.String())
	}

	t.Setenv(KeyLogEnv, filepath.Join(t.TempDir(), "missing", "keys.log"))
	_, err = keyLogFlags(t, "tlsclient", tlszmq.RoleClient).Config("localhost", &stderr)
	if Status(err) != ExitUsage || !strings.Contains(err.Error(), "$SSLKEYLOGFILE=") || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("an unwritable key log: %v (status %d), want a usage error naming it", err, Status(err))
	}
}
