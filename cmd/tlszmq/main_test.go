package main

import (
	"bytes"
	"encoding/json"
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
	for _, args := range [][]string{{"nope"}, {"keygen", "-key", "dsa"}, {"demo", "-certs", "/nonexistent"}, {"demo", "-x"},
		{"bench", "-patterns", "nope"}, {"bench", "-transports", "rot13"}, {"bench", "-sizes", "1G"}, {"bench", "-rounds", "0"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line", args, code, stderr.String())
		}
	}
}

// tlszmq bench -json prints one JSON object per case and round with the documented fields.
func TestBenchJSON(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"bench", "-json", "-q", "-rounds", "2", "-time", "20ms", "-patterns", "roundtrip,stream",
		"-transports", "plain,curve,aes128", "-sizes", "64,1K"}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 2*2*3*2 {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), 2*2*3*2, stdout.String())
	}
	for _, line := range lines {
		var r struct {
			Pattern, Transport, Suite string
			Size, Round               int
			MsgsPerS                  float64  `json:"msgs_per_s"`
			MBPerS                    float64  `json:"mb_per_s"`
			BytesPerSession           *float64 `json:"bytes_per_session"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if r.Pattern == "" || r.Transport == "" || r.Size == 0 || r.Round == 0 || r.MsgsPerS <= 0 || r.MBPerS <= 0 || r.BytesPerSession == nil {
			t.Errorf("incomplete: %s", line)
		}
		if (r.Transport == "tls") != (r.Suite != "") {
			t.Errorf("suite and transport disagree: %s", line)
		}
	}
}
