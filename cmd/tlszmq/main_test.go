package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq/internal/cli"
	"github.com/tlszmq/tlszmq/internal/cmdtest"
	"github.com/tlszmq/tlszmq/internal/syncbuf"
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
		{"bench", "-patterns", "nope"}, {"bench", "-transports", "rot13"}, {"bench", "-sizes", "1G"}, {"bench", "-rounds", "0"},
		{"bench", "-workers", "0"}, {"bench", "-workers", "1,two"}, {"bench", "-workers", ","},
		{"demo", "-certs", "../../testdata/certs", "-endpoint", "tcp://127.0.0.1:99999"}, {"demo", "-certs", "../../testdata/certs", "-endpoint", "foo"},
		{"bridge", "-listen", "127.0.0.1:0", "-to", "tcp://localhost:99999"}, {"bridge", "-bind", "tcp://localhost", "-connect", "localhost:4433"},
		{"bridge", "-bind", "pgm://eth0;239.1.1.1:5555", "-connect", "localhost:4433"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line", args, code, stderr.String())
		}
	}
}

// benchRow is a line of tlszmq bench -json.
type benchRow struct {
	Pattern, Transport, Suite, Impl, Connections string
	Size, Round, Workers, Clients, Count         int
	MsgsPerS                                     float64  `json:"msgs_per_s"`
	MBPerS                                       float64  `json:"mb_per_s"`
	BytesPerSession                              *float64 `json:"bytes_per_session"`
	P50                                          float64  `json:"p50_us"`
	P99                                          float64  `json:"p99_us"`
	ServerCPU                                    float64  `json:"server_cpu_s"`
	CPUEach                                      float64  `json:"server_cpu_us_per_handshake"`
}

// benchJSON runs tlszmq bench with args and returns its rows and what it said on stderr.
func benchJSON(t *testing.T, args ...string) ([]benchRow, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(append([]string{"bench", "-json"}, args...), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var rows []benchRow
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var r benchRow
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if (r.Impl == "tlszmq") != (r.Workers > 0) {
			t.Errorf("workers %d in %s", r.Workers, line)
		}
		rows = append(rows, r)
	}
	return rows, stderr.String()
}

// tlszmq bench -json prints one JSON object per case and round with the documented fields:
// the tlszmq cases once per worker count, round trips with their latency percentiles.
func TestBenchJSON(t *testing.T) {
	rows, _ := benchJSON(t, "-q", "-rounds", "2", "-time", "20ms", "-patterns", "roundtrip,stream",
		"-transports", "plain,curve,aes128", "-sizes", "64,1K", "-workers", "1,2")
	if want := 2 * 2 * (2 + 2) * 2; len(rows) != want {
		t.Fatalf("%d lines, want %d: %+v", len(rows), want, rows)
	}
	for _, r := range rows {
		if r.Pattern == "" || r.Transport == "" || r.Size == 0 || r.Round == 0 || r.MsgsPerS <= 0 || r.MBPerS <= 0 || r.BytesPerSession == nil {
			t.Errorf("incomplete: %+v", r)
		}
		if (r.Transport == "tls") != (r.Suite != "") || (r.Transport == "tls") != (r.Workers == 1 || r.Workers == 2) {
			t.Errorf("suite, transport and workers disagree: %+v", r)
		}
		if (r.Pattern == "roundtrip") != (r.P50 > 0 && r.P99 >= r.P50) {
			t.Errorf("latency percentiles: %+v", r)
		}
	}
}

// tlszmq bench measures handshakes and bulk streams with clients in a copy of itself (here
// the test binary, which bench.go's init turns into the client process), once per worker
// count, and reports its progress as "case k of n".
func TestBenchHandshakesAndStreams(t *testing.T) {
	rows, stderr := benchJSON(t, "-rounds", "1", "-time", "200ms", "-patterns", "handshake,streams",
		"-transports", "plain,aes128", "-sizes", "16K", "-workers", "1,2", "-clients", "4")
	// 2 keys × (2 worker counts × 2 connection kinds + 2 C limit rows), then streams: plain
	// once, aes128 once per worker count.
	if want := 2*(2*2+2) + 1 + 2; len(rows) != want {
		t.Fatalf("%d lines, want %d: %+v", len(rows), want, rows)
	}
	workers := map[string]int{}
	for _, r := range rows {
		switch {
		case r.Pattern == "handshake" && r.Impl == "tlszmq":
			if r.Clients != 4 || r.Count <= 0 || r.MsgsPerS <= 0 || r.ServerCPU <= 0 || r.CPUEach <= 0 {
				t.Errorf("handshakes: %+v", r)
			}
		case r.Pattern == "streams":
			if r.Clients != 4 || r.Size != 16<<10 || r.MBPerS <= 0 || r.ServerCPU <= 0 {
				t.Errorf("streams: %+v", r)
			}
		}
		workers[r.Pattern+" "+r.Transport+" "+r.Impl] |= 1 << r.Workers
	}
	if workers["streams tls tlszmq"] != 1<<1|1<<2 || workers["streams plain "] != 1 || workers["handshake tls tlszmq"] != 1<<1|1<<2 {
		t.Errorf("the worker counts measured: %v", workers)
	}
	if n := strings.Count(stderr, "tlszmq bench: case "); n != 2*(2*2+1)+3 || !regexp.MustCompile(`(?m)^tlszmq bench: case 13 of 13, round 1: streams tls1.3 aes128 16 KiB, 4 clients in another process, 2 workers \((about \d+s|under a second) left\)$`).MatchString(stderr) {
		t.Errorf("progress:\n%s", stderr)
	}
	if !strings.Contains(stderr, "tlszmq bench: case 1 of 13, round 1: handshake") || !strings.Contains(stderr, "(about 3s left)") {
		t.Errorf("the first estimate is not 13 cases of 200ms:\n%s", stderr)
	}
}

// tlszmq -version, and each command's, print the tool's version on stdout.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"-version"}, {"--version"}, {"demo", "-version"}, {"bench", "-version"}, {"bridge", "-version"}} {
		var stdout, stderr bytes.Buffer
		code := run(args, &stdout, &stderr)
		if code != 0 || stderr.Len() != 0 || !regexp.MustCompile(`^tlszmq 0\.9\.0 \(libzmq \d+\.\d+\.\d+, go1\.[^)]+\)\n$`).MatchString(stdout.String()) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout.String(), stderr.String())
		}
	}
}

// -h says what the tool and each command do first, and ends with the exit statuses.
func TestHelp(t *testing.T) {
	for args, want := range map[string]string{
		"-h":       "tlszmq: the TLSZMQ tool: ",
		"demo -h":  "tlszmq demo: run a server and a client over ZeroMQ on loopback and show the handshake\n\nusage of tlszmq demo:\n",
		"bench -h": "tlszmq bench: measure tlszmq beside plain ZeroMQ and CURVE",
	} {
		var stdout, stderr bytes.Buffer
		if code := run(strings.Fields(args), &stdout, &stderr); code != 0 {
			t.Fatalf("%s: exit %d", args, code)
		}
		if !strings.HasPrefix(stderr.String(), want) || !strings.Contains(stderr.String(), "\nexit status:\n  0    success\n") {
			t.Errorf("tlszmq %s:\n%s", args, stderr.String())
		}
		if args == "bench -h" && !strings.Contains(stderr.String(), "  130  interrupted by SIGINT or SIGTERM: the table of what was measured so far is printed\n") {
			t.Errorf("tlszmq bench -h does not tell of 130:\n%s", stderr.String())
		}
	}
}

// The demo's failures have their exit statuses: a server certificate from another CA than the
// demo's ca.crt is a TLS failure (3).
func TestDemoTLSFailure(t *testing.T) {
	dir := t.TempDir()
	certs := filepath.Join(cmdtest.Root(), "testdata", "certs")
	for dst, src := range map[string]string{"ca.crt": "other-ca.crt", "server.crt": "server.crt", "server.key": "server.key"} {
		b, err := os.ReadFile(filepath.Join(certs, src))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, dst), b, 0o600)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"demo", "-q", "-certs", dir}, &stdout, &stderr); code != cli.ExitTLS || !strings.HasPrefix(stderr.String(), "tlszmq demo: tlszmq: ") ||
		!strings.Contains(stderr.String(), "certificate verify failed") {
		t.Fatalf("exit %d, stderr %q: want 3 and the verification failure", code, stderr.String())
	}
}

// SIGINT stops tlszmq bench without waiting for the case being measured: the table shows the
// cases measured so far, stderr says how many, and the exit status is 130.
func TestBenchInterrupted(t *testing.T) {
	cmd := exec.Command(cmdtest.Build(t, "tlszmq"), "bench", "-rounds", "3", "-time", "300ms", "-patterns", "roundtrip",
		"-transports", "plain,aes128", "-sizes", "64", "-workers", "1")
	var stdout bytes.Buffer
	stderr := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(stderr.String(), "case 4 of 6"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no progress:\n%s", stderr.String())
		}
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != cli.ExitInterrupted || time.Since(start) > 2*time.Second {
		t.Fatalf("%v after %v, want exit status 130 at once\n%s", err, time.Since(start), stderr.String())
	}
	// The signal comes while case 4 is measured (300 ms), or, on a slow machine, just after.
	m := regexp.MustCompile(`tlszmq bench: interrupted by SIGINT before the end: ([34]) of 6 cases measured\n$`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("stderr does not end with the interruption:\n%s", stderr.String())
	}
	out := stdout.String()
	if !strings.HasPrefix(out, "tlszmq bench: 3 round(s) of 300ms per case") || !strings.Contains(out, "interrupted after "+m[1]+" of 6 cases") ||
		!regexp.MustCompile(`(?m)^\s+roundtrip\s+plain\s+64 B\s`).MatchString(out) || !regexp.MustCompile(`(?m)^\s+roundtrip\s+tls1.3 aes128\s+(1\s+)?64 B\s`).MatchString(out) {
		t.Errorf("the partial table:\n%s", out)
	}
	for _, line := range strings.SplitAfter(strings.TrimSuffix(stderr.String(), "\n"), "\n") {
		if !strings.HasPrefix(line, "tlszmq bench: ") {
			t.Errorf("a line on stderr without the prefix: %q", line)
		}
	}
}
