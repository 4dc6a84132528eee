package metrics_test

import (
	"context"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/metrics"
)

// serve runs a server with the test certificates until the test ends.
func serve(t *testing.T) *tlszmq.Server {
	t.Helper()
	sctx, err := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{CertFile: "../testdata/certs/server.crt", KeyFile: "../testdata/certs/server.key"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sctx.Close() })
	echo := func(_ context.Context, _ *tlszmq.Peer, req [][]byte) ([][]byte, error) { return req, nil }
	srv, err := tlszmq.NewServer(sctx, "tcp://127.0.0.1:*", echo, &tlszmq.ServerOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(context.Background()) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv
}

// request makes one request over TLS 1.3 and closes the client (close_notify).
func request(t *testing.T, endpoint string) {
	t.Helper()
	cctx, err := tlszmq.NewContext(tlszmq.RoleClient, &tlszmq.Config{CAFile: "../testdata/certs/ca.crt", ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer cctx.Close()
	c, err := tlszmq.NewClient(cctx, endpoint, &tlszmq.ClientOptions{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Request(context.Background(), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// A registry gathers the server's counters as they are at the scrape: after one request
// and its close_notify, one handshake over TLS 1.3, one message each way, one removal.
func TestCollectorGather(t *testing.T) {
	srv := serve(t)
	reg := prometheus.NewPedanticRegistry() // checks each metric against its description
	if err := reg.Register(metrics.NewCollector(srv)); err != nil {
		t.Fatal(err)
	}
	// Registered before any traffic: every label value is there, at zero.
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP tlszmq_sessions Live TLS sessions of the server.
# TYPE tlszmq_sessions gauge
tlszmq_sessions 0
`), "tlszmq_sessions"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "tlszmq_sessions_removed_total", "tlszmq_budget_exceeded_total", "tlszmq_handshake_failures_total"); err != nil || n != 9+7+7 {
		t.Errorf("%d series of removals, budgets and failures before any traffic (%v): want every cause and kind, 23", n, err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP tlszmq_connections_refused_total ZeroMQ connections refused by the server's allow or deny list, by list.
# TYPE tlszmq_connections_refused_total counter
tlszmq_connections_refused_total{list="allow"} 0
tlszmq_connections_refused_total{list="deny"} 0
`), "tlszmq_connections_refused_total"); err != nil {
		t.Error(err)
	}

	request(t, srv.Endpoint())
	for deadline := time.Now().Add(10 * time.Second); srv.Stats().Removed < 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the session was not removed after close_notify: %+v", srv.Stats())
		}
	}
	want := `
# HELP tlszmq_handshakes_total TLS handshakes by result (done, failed) and, when done, TLS version.
# TYPE tlszmq_handshakes_total counter
tlszmq_handshakes_total{result="done",version="TLS 1.2"} 0
tlszmq_handshakes_total{result="done",version="TLS 1.3"} 1
tlszmq_handshakes_total{result="failed",version=""} 0
# HELP tlszmq_messages_total Application messages received (in) and sent (out).
# TYPE tlszmq_messages_total counter
tlszmq_messages_total{direction="in"} 1
tlszmq_messages_total{direction="out"} 1
# HELP tlszmq_sessions Live TLS sessions of the server.
# TYPE tlszmq_sessions gauge
tlszmq_sessions 0
# HELP tlszmq_dropped_messages_total ZeroMQ messages dropped before reaching a session (malformed, or over a budget).
# TYPE tlszmq_dropped_messages_total counter
tlszmq_dropped_messages_total 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"tlszmq_handshakes_total", "tlszmq_messages_total", "tlszmq_sessions", "tlszmq_dropped_messages_total"); err != nil {
		t.Error(err)
	}

	got := byName(t, reg)
	for _, name := range []string{"tlszmq_sessions", "tlszmq_handshakes_total", "tlszmq_handshake_failures_total", "tlszmq_handshake_duration_seconds",
		"tlszmq_bytes_total", "tlszmq_messages_total", "tlszmq_sessions_removed_total", "tlszmq_budget_exceeded_total", "tlszmq_dropped_messages_total",
		"tlszmq_connections_refused_total"} {
		if got[name] == nil {
			t.Errorf("%s is not gathered", name)
		}
	}
	if f := got["tlszmq_handshake_duration_seconds"]; f != nil {
		h := f.GetMetric()[0].GetHistogram()
		buckets := h.GetBucket()
		if h.GetSampleCount() != 1 || h.GetSampleSum() <= 0 || len(buckets) == 0 || buckets[len(buckets)-1].GetCumulativeCount() > 1 {
			t.Errorf("handshake duration: %v", h)
		}
		for i := 1; i < len(buckets); i++ {
			if buckets[i].GetUpperBound() <= buckets[i-1].GetUpperBound() || buckets[i].GetCumulativeCount() < buckets[i-1].GetCumulativeCount() {
				t.Errorf("buckets out of order: %v", buckets)
			}
		}
	}
	for _, m := range got["tlszmq_bytes_total"].GetMetric() {
		if m.GetCounter().GetValue() < 100 { // a handshake's worth at least, each way
			t.Errorf("tlszmq_bytes_total %v", m)
		}
	}
	for _, m := range got["tlszmq_sessions_removed_total"].GetMetric() {
		cause, v := m.GetLabel()[0].GetValue(), m.GetCounter().GetValue()
		if want := map[bool]float64{true: 1, false: 0}[cause == "close_notify"]; v != want {
			t.Errorf("tlszmq_sessions_removed_total{cause=%q} = %v, want %v", cause, v, want)
		}
	}
}

// The metrics follow Prometheus's naming conventions (promlint).
func TestCollectorLint(t *testing.T) {
	problems, err := testutil.CollectAndLint(metrics.NewCollector(serve(t)))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// Two servers go in one registry with labels that tell them apart; without them the second
// collector is refused as a duplicate.
func TestCollectorWithLabels(t *testing.T) {
	a, b := serve(t), serve(t)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(metrics.NewCollector(a, metrics.WithLabels(prometheus.Labels{"server": "a"}))); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(metrics.NewCollector(b, metrics.WithLabels(prometheus.Labels{"server": "b"}))); err != nil {
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP tlszmq_sessions Live TLS sessions of the server.
# TYPE tlszmq_sessions gauge
tlszmq_sessions{server="a"} 0
tlszmq_sessions{server="b"} 0
`), "tlszmq_sessions"); err != nil {
		t.Error(err)
	}
	plain := prometheus.NewRegistry()
	plain.MustRegister(metrics.NewCollector(a))
	if err := plain.Register(metrics.NewCollector(b)); err == nil {
		t.Error("two unlabelled collectors were registered together")
	}
}

// Package tlszmq does not import Prometheus: only this package does.
func TestLibraryDoesNotImportPrometheus(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/tlszmq/tlszmq").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "prometheus") {
		t.Errorf("package tlszmq depends on Prometheus:\n%s", out)
	}
	if !strings.Contains(string(out), "github.com/pebbe/zmq4") {
		t.Errorf("go list -deps says nothing of zmq4: the check is broken:\n%s", out)
	}
}
