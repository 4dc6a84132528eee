package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDemoPrintsTheExchange(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"demo", "-certs", "../../testdata/certs"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"client Sending - [hello world!]\n", "server Received: hello world!\n", "server sending data - [Got it!]\n",
		"client Received - [Got it!]\n", "read from BIO\n", "written to BIO\n",
		"server DEBUG: 9 written to SSL\n", "verified: true", "1 handshake(s), 1 message(s) in, 1 out"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
}

func TestKeygenWritesPrivateKeys(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"keygen", "-dir", dir, "-key", "ecdsa-p256"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, name := range []string{"ca", "server", "client"} {
		info, err := os.Stat(filepath.Join(dir, name+".key"))
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("%s.key: %v %v", name, info, err)
		}
		if _, err := os.Stat(filepath.Join(dir, name+".crt")); err != nil {
			t.Fatal(err)
		}
	}
	// The demo runs on what keygen made.
	stdout.Reset()
	if code := run([]string{"demo", "-q", "-certs", dir}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "Received - [Got it!]") {
		t.Fatalf("demo on keygen's certificates: exit %d, %s %s", code, stdout.String(), stderr.String())
	}
}

func TestBadUse(t *testing.T) {
	for _, args := range [][]string{{"nope"}, {"keygen", "-key", "dsa"}, {"demo", "-certs", "/nonexistent"}, {"demo", "-x"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line", args, code, stderr.String())
		}
	}
}
