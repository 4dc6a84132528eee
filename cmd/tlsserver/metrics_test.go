package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cli"
	"github.com/tlszmq/tlszmq/internal/cmdtest"
	"github.com/tlszmq/tlszmq/internal/syncbuf"
)

// freePort returns a TCP port on 127.0.0.1 that nothing listens on (now).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// curl fetches url with the curl command, a client we did not write: its output and exit
// status (7: nothing listens).
func curl(t *testing.T, url string) (string, int) {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is needed (make deps installs it): %v", err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(path, "--silent", "--show-error", "--fail", "--max-time", "5", url)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return stderr.String(), exit.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), 0
}

// sample returns the value of one sample of the exposition text, and whether it is there.
func sample(text, series string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// The built tlsserver with -metrics serves Prometheus metrics at /metrics from before its
// first client: curl scrapes them after one request, finds the handshake and the live
// session, and finds the port closed once SIGINT has stopped the server.
func TestMetricsScrapedWithCurl(t *testing.T) {
	endpoint := "tcp://127.0.0.1:" + freePort(t)
	addr := "127.0.0.1:" + freePort(t)
	url := "http://" + addr + "/metrics"
	certs := filepath.Join(cmdtest.Root(), "testdata", "certs")
	srv := exec.Command(cmdtest.Build(t, "tlsserver"), "-endpoint", endpoint, "-q", "-metrics", addr,
		"-cert", filepath.Join(certs, "server.crt"), "-key", filepath.Join(certs, "server.key"))
	var stdout bytes.Buffer
	stderr := &syncbuf.Buffer{}
	srv.Stdout, srv.Stderr = &stdout, stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			srv.Process.Kill()
			srv.Wait()
		}
	}()

	// Up before any client, with every counter at zero.
	var before string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out, code := curl(t, url)
		if code == 0 {
			before = out
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metrics at %s (curl exit %d: %s); stderr:\n%s", url, code, out, stderr.String())
		}
	}
	if v, ok := sample(before, `tlszmq_handshakes_total{result="done",version="TLS 1.3"}`); !ok || v != 0 {
		t.Errorf("before any client: tlszmq_handshakes_total %v %v, want 0:\n%s", v, ok, before)
	}
	if !strings.Contains(stderr.String(), "tlsserver: time=") || !strings.Contains(stderr.String(), "url="+url) {
		t.Errorf("no log line names the metrics URL: %q", stderr.String())
	}

	cctx := cmdtest.Context(t, tlszmq.RoleClient, &tlszmq.Config{CAFile: filepath.Join(certs, "ca.crt"), ServerName: "localhost"})
	c, err := tlszmq.NewClient(cctx, endpoint, &tlszmq.ClientOptions{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if reply, err := c.Request(context.Background(), []byte("hello world!")); err != nil || string(reply[0]) != "Got it!\x00" {
		t.Fatalf("request: %q, %v", reply, err)
	}

	text, code := curl(t, url)
	if code != 0 {
		t.Fatalf("curl exit %d: %s", code, text)
	}
	for series, want := range map[string]float64{
		`tlszmq_handshakes_total{result="done",version="TLS 1.3"}`: 1,
		`tlszmq_handshakes_total{result="done",version="TLS 1.2"}`: 0,
		`tlszmq_handshakes_total{result="failed",version=""}`:      0,
		`tlszmq_sessions`:                                 1, // the client is still connected
		`tlszmq_messages_total{direction="in"}`:           1,
		`tlszmq_messages_total{direction="out"}`:          1,
		`tlszmq_handshake_duration_seconds_count`:         1,
		`tlszmq_sessions_removed_total{cause="idle"}`:     0,
		`tlszmq_budget_exceeded_total{kind="MaxParts"}`:   0,
		`tlszmq_dropped_messages_total`:                   0,
		`tlszmq_handshake_failures_total{cause="verify"}`: 0,
	} {
		if v, ok := sample(text, series); !ok || v != want {
			t.Errorf("%s = %v (found %v), want %v", series, v, ok, want)
		}
	}
	// The start-up figures: the certificate's expiry as openssl reads it, TLS versions, FIPS.
	out, err := exec.Command("openssl", "x509", "-in", filepath.Join(certs, "server.crt"), "-noout", "-enddate").Output()
	if err != nil {
		t.Fatalf("openssl x509 -enddate: %v", err)
	}
	notAfter, err := time.Parse("Jan _2 15:04:05 2006 MST", strings.TrimPrefix(strings.TrimSpace(string(out)), "notAfter="))
	if err != nil {
		t.Fatal(err)
	}
	expiry := `tlszmq_certificate_expiry_timestamp_seconds{issuer="CN=tlszmq test CA,O=tlszmq,C=ZZ",subject="CN=localhost,O=tlszmq,C=ZZ"}`
	if v, ok := sample(text, expiry); !ok || v != float64(notAfter.Unix()) {
		t.Errorf("%s = %v (found %v), want %d (%s)", expiry, v, ok, notAfter.Unix(), notAfter)
	}
	if v, ok := sample(text, `tlszmq_tls_info{fips="off",max_version="TLS 1.3",min_version="TLS 1.2"}`); !ok || v != 1 {
		t.Errorf("tlszmq_tls_info = %v (found %v), want 1 with TLS 1.2 to TLS 1.3, FIPS off", v, ok)
	}
	if v, ok := sample(text, `tlszmq_bytes_total{direction="in"}`); !ok || v < 100 {
		t.Errorf(`tlszmq_bytes_total{direction="in"} = %v (found %v): want a handshake's worth`, v, ok)
	}
	if !regexp.MustCompile(`(?m)^# TYPE tlszmq_handshake_duration_seconds histogram$`).MatchString(text) ||
		!regexp.MustCompile(`(?m)^go_goroutines \d+$`).MatchString(text) || !regexp.MustCompile(`(?m)^process_open_fds \d+$`).MatchString(text) {
		t.Errorf("the scrape lacks the histogram, or the Go or process metrics:\n%s", text)
	}
	if out, code := curl(t, "http://"+addr+"/"); code != 22 { // --fail: an HTTP error
		t.Errorf("/ answered (curl exit %d): %s", code, out)
	}

	srv.Process.Signal(syscall.SIGINT)
	err = srv.Wait()
	stopped = true
	if err != nil {
		t.Fatalf("tlsserver: %v; stderr:\n%s", err, stderr.String())
	}
	if out, code := curl(t, url); code != 7 { // could not connect
		t.Errorf("metrics still served after exit (curl exit %d): %s", code, out)
	}
}

// A -metrics address that is not host:port is bad use, refused before anything is bound; one
// that cannot be bound is a failure (status 1), and the ZeroMQ endpoint is not bound either.
func TestMetricsBadAddress(t *testing.T) {
	tls := []string{"-cert", "../../testdata/certs/server.crt", "-key", "../../testdata/certs/server.key"}
	for _, addr := range []string{"9464", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:http", "bad host:1", "[::1:9464", "*:9464"} {
		var stdout, stderr bytes.Buffer
		endpoint := "tcp://127.0.0.1:" + freePort(t)
		code := cli.Exit("tlsserver", run(context.Background(), append([]string{"-endpoint", endpoint, "-metrics", addr}, tls...), &stdout, &stderr), &stdout, &stderr)
		if code != 2 || strings.Count(stderr.String(), "\n") != 1 || !strings.HasPrefix(stderr.String(), "tlsserver: -metrics "+strconv.Quote(addr)) ||
			!strings.Contains(stderr.String(), "want host:port, e.g. 127.0.0.1:9464") {
			t.Errorf("-metrics %q: exit %d, stderr %q: want 2 and one line naming the flag", addr, code, stderr.String())
		}
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	endpoint := "tcp://127.0.0.1:" + freePort(t)
	var stdout, stderr bytes.Buffer
	code := cli.Exit("tlsserver", run(context.Background(), append([]string{"-endpoint", endpoint, "-metrics", busy.Addr().String()}, tls...), &stdout, &stderr), &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "address already in use") {
		t.Errorf("-metrics on a busy port: exit %d, stderr %q: want 1, saying the address is in use", code, stderr.String())
	}
	// The endpoint was not bound: it is free.
	if ln, err := net.Listen("tcp", strings.TrimPrefix(endpoint, "tcp://")); err != nil {
		t.Errorf("the ZeroMQ endpoint was bound though -metrics failed: %v", err)
	} else {
		ln.Close()
	}
}

// -h documents -metrics.
func TestMetricsFlagDocumented(t *testing.T) {
	var stdout, stderr bytes.Buffer
	cli.Exit("tlsserver", run(context.Background(), []string{"-h"}, &stdout, &stderr), &stdout, &stderr)
	if !regexp.MustCompile(`(?m)^  -metrics string\n\s+serve Prometheus metrics over HTTP at host:port, path /metrics`).MatchString(stderr.String()) {
		t.Errorf("-h does not document -metrics:\n%s", stderr.String())
	}
}
