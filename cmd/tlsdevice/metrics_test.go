package main

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq/internal/cli"
	"github.com/tlszmq/tlszmq/internal/syncbuf"
)

// -metrics is for terminate mode, the one with a TLS server: pass and originate refuse it as
// bad use, saying why, before anything is bound; a malformed address is bad use too.
func TestMetricsFlagByMode(t *testing.T) {
	dir := t.TempDir()
	eps := []string{"-frontend", "ipc://" + filepath.Join(dir, "front.ipc"), "-backend", "ipc://" + filepath.Join(dir, "back.ipc"),
		"-upstream", "ipc://" + filepath.Join(dir, "up.ipc")}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-metrics", "127.0.0.1:0"}, "tlsdevice: -metrics: -mode pass has no TLS server to count (it forwards the TLS bytes untouched): -metrics is for -mode terminate"},
		{[]string{"-mode", "originate", "-metrics", "127.0.0.1:0"}, "tlsdevice: -metrics: -mode originate has no TLS server to count (it is a TLS client of -upstream)"},
		{[]string{"-mode", "terminate", "-metrics", "localhost"}, `tlsdevice: -metrics "localhost": not a host:port: want host:port, e.g. 127.0.0.1:9464`},
	} {
		var stdout, stderr bytes.Buffer
		code := cli.Exit("tlsdevice", run(context.Background(), append(c.args, eps...), &stdout, &stderr), &stdout, &stderr)
		if code != 2 || strings.Count(stderr.String(), "\n") != 1 || !strings.HasPrefix(stderr.String(), c.want) {
			t.Errorf("%q: exit %d, stderr %q: want 2 and %q", c.args, code, stderr.String(), c.want)
		}
	}
}

// In terminate mode the device's TLS server's metrics are at the address the start-up line
// names, for curl, until the device stops.
func TestMetricsTerminate(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is needed (make deps installs it): %v", err)
	}
	dir := t.TempDir()
	args := []string{"-mode", "terminate", "-frontend", "ipc://" + filepath.Join(dir, "front.ipc"), "-backend", "ipc://" + filepath.Join(dir, "back.ipc"),
		"-metrics", "127.0.0.1:0", "-cert", certFile("server.crt"), "-key", certFile("server.key")}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout bytes.Buffer
	stderr := &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, &stdout, stderr) }()
	startup := regexp.MustCompile(`tlsdevice: TLS clients at ipc://\S+, plaintext workers at ipc://\S+, metrics at (http://127\.0\.0\.1:\d+/metrics); `)
	var url string
	for deadline := time.Now().Add(5 * time.Second); url == ""; time.Sleep(10 * time.Millisecond) {
		if m := startup.FindStringSubmatch(stderr.String()); m != nil {
			url = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no start-up line naming the metrics: %q", stderr.String())
		}
	}
	out, err := exec.Command(curl, "--silent", "--show-error", "--fail", "--max-time", "5", url).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %s: %v: %s", url, err, out)
	}
	for _, want := range []string{"\ntlszmq_sessions 0\n", "\n" + `tlszmq_handshakes_total{result="done",version="TLS 1.3"} 0` + "\n", "\ngo_goroutines "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the scrape lacks %q:\n%s", want, out)
		}
	}
	cancel()
	if code := cli.Exit("tlsdevice", <-done, &stdout, stderr); code != 0 || stdout.Len() != 0 {
		t.Errorf("exit %d, stdout %q: want 0 and nothing", code, stdout.String())
	}
	if conn, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/metrics")); err == nil {
		conn.Close()
		t.Error("the metrics port is still open after the device stopped")
	}
}
