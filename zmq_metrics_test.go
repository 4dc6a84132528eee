package tlszmq

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// waitCounters waits until want holds of the server's counters, then returns them.
func waitCounters(t *testing.T, srv *Server, what string, want func(c Counters) bool) Counters {
	t.Helper()
	var c Counters
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if c = srv.Counters(); want(c) {
			return c
		}
	}
	t.Fatalf("timed out waiting for %s; counters:\n%s", what, dumpCounters(c))
	return c
}

func dumpCounters(c Counters) string {
	return fmt.Sprintf("stats %+v\nby version %v\nfailed %v\nremoved %v\nbudget %v\nhandshake time %+v",
		c.Stats, c.HandshakesByVersion, c.FailedByCause, c.RemovedByCause, c.BudgetByKind, c.HandshakeTime)
}

// with returns a map of every key of keys at zero, but for the counts given.
func with(keys []string, counts map[string]int64) map[string]int64 {
	m := map[string]int64{}
	for _, k := range keys {
		m[k] = 0
	}
	maps.Copy(m, counts)
	return m
}

func sumOf(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// Known outcomes, one after the other, land in their counters: a handshake over TLS 1.3 closed
// by the client, one over TLS 1.2 left to go idle, a client that does not trust the server's
// CA, a client certificate from another CA, a message past MaxParts, an envelope past
// MaxEnvelopeFrames, a ClientHello that never gets its answer (handshake timeout), and a
// session live when the server stops.
func TestMetricsServerCounters(t *testing.T) {
	scfg := serverConfig("server")
	scfg.CAFile, scfg.ClientAuth = cert("ca.crt"), VerifyClientCertIfGiven
	srv := startServer(t, scfg, "tcp://127.0.0.1:*", echo, &ServerOptions{IdleTimeout: time.Second, HandshakeTimeout: 2 * time.Second, MaxParts: 2})
	endpoint := srv.Endpoint()
	ctx := ctxTimeout(t, time.Minute)
	copts := &ClientOptions{Timeout: 5 * time.Second}

	// A ClientHello that nobody follows up: the handshake times out (HandshakeTimeout 2 s),
	// while the rest goes on.
	raw, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetLinger(0)
	if err := raw.Connect(endpoint); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.SendMessage("", clientHello(t)); err != nil {
		t.Fatal(err)
	}
	started := time.Now()

	// TLS 1.3, closed by the client: close_notify.
	c13 := newClient(t, clientConfig(), endpoint, copts)
	if _, err := c13.Request(ctx, []byte("one")); err != nil {
		t.Fatal(err)
	}
	c13.Close()
	waitCounters(t, srv, "close_notify", func(c Counters) bool { return c.RemovedByCause["close_notify"] == 1 })

	// TLS 1.2, then quiet: idle.
	cfg12 := clientConfig()
	cfg12.MaxVersion = VersionTLS12
	c12 := newClient(t, cfg12, endpoint, copts)
	if _, err := c12.Request(ctx, []byte("two")); err != nil {
		t.Fatal(err)
	}
	waitCounters(t, srv, "the idle removal", func(c Counters) bool { return c.RemovedByCause["idle"] == 1 })

	// A client that trusts another CA rejects the server: an alert the server receives.
	wrongCA := &Config{CAFile: cert("other-ca.crt"), ServerName: "localhost"}
	if _, err := newClient(t, wrongCA, endpoint, copts).Request(ctx, []byte("three")); err == nil {
		t.Fatal("a client trusting another CA was answered")
	}
	waitCounters(t, srv, "the alert", func(c Counters) bool { return c.FailedByCause["alert_received"] == 1 })

	// A client certificate from another CA: the server's verification fails.
	otherClient := clientConfig()
	otherClient.CertFile, otherClient.KeyFile = cert("other-client.crt"), cert("other-client.key")
	if _, err := newClient(t, otherClient, endpoint, copts).Request(ctx, []byte("four")); err == nil {
		t.Fatal("a client certificate from another CA was accepted")
	}
	waitCounters(t, srv, "the verification failure", func(c Counters) bool { return c.FailedByCause["verify"] == 1 })

	// Three parts past MaxParts 2: a budget.
	greedy := newClient(t, clientConfig(), endpoint, copts)
	if _, err := greedy.Request(ctx, []byte("a"), []byte("b"), []byte("c")); err == nil {
		t.Fatal("three parts were answered past MaxParts 2")
	}
	waitCounters(t, srv, "the budget", func(c Counters) bool { return c.BudgetByKind["MaxParts"] == 1 })

	// An envelope of 20 frames, past MaxEnvelopeFrames 16: dropped before any session.
	env := make([]any, 0, 22)
	for i := range 20 {
		env = append(env, fmt.Sprintf("hop%d", i))
	}
	if _, err := raw.SendMessage(append(env, "", clientHello(t))...); err != nil {
		t.Fatal(err)
	}
	waitCounters(t, srv, "the envelope drop", func(c Counters) bool { return c.BudgetByKind["MaxEnvelopeFrames"] == 1 })

	waitCounters(t, srv, "the handshake timeout", func(c Counters) bool { return c.FailedByCause["timeout"] == 1 })
	if waited := time.Since(started); waited < 2*time.Second {
		t.Errorf("the handshake timed out after %v, before HandshakeTimeout", waited)
	}

	// A live session when the server stops.
	last := newClient(t, clientConfig(), endpoint, copts)
	if _, err := last.Request(ctx, []byte("five")); err != nil {
		t.Fatal(err)
	}
	waitCounters(t, srv, "the last handshake", func(c Counters) bool { return c.HandshakesByVersion["TLS 1.3"] == 3 })
	srv.Close()
	c := srv.Counters()

	wantVersions := map[string]int64{"TLS 1.3": 3, "TLS 1.2": 1}
	wantFailed := with(failCauseNames[:], map[string]int64{"timeout": 1, "alert_received": 1, "verify": 1})
	wantRemoved := with(removeCauseNames[:], map[string]int64{"close_notify": 1, "idle": 1, "failed": 2, "budget": 1, "handshake_timeout": 1, "stopping": 1})
	wantBudget := with(budgetKindNames[:], map[string]int64{"MaxParts": 1, "MaxEnvelopeFrames": 1})
	if !maps.Equal(c.HandshakesByVersion, wantVersions) || !maps.Equal(c.FailedByCause, wantFailed) ||
		!maps.Equal(c.RemovedByCause, wantRemoved) || !maps.Equal(c.BudgetByKind, wantBudget) {
		t.Errorf("counters:\n%s\nwant by version %v\nfailed %v\nremoved %v\nbudget %v", dumpCounters(c), wantVersions, wantFailed, wantRemoved, wantBudget)
	}
	st := c.Stats
	if st.HandshakesDone != 4 || st.HandshakesFailed != sumOf(c.FailedByCause) || st.Removed != sumOf(c.RemovedByCause) ||
		st.Removed != 7 || st.Sessions != 0 || st.BudgetExceeded != 1 || st.Dropped < 1 {
		t.Errorf("stats %+v do not agree with the counters by reason:\n%s", st, dumpCounters(c))
	}
	h := c.HandshakeTime
	if h.Count != 4 || len(h.Counts) != len(h.Bounds)+1 || h.Sum <= 0 || h.Sum > 4*time.Minute {
		t.Errorf("handshake time %+v: want 4 handshakes", h)
	}
	var n int64
	for i, v := range h.Counts {
		n += v
		if i > 0 && i < len(h.Bounds) && h.Bounds[i] <= h.Bounds[i-1] {
			t.Errorf("bounds not ascending: %v", h.Bounds)
		}
	}
	if n != h.Count {
		t.Errorf("the buckets hold %d handshakes, Count says %d", n, h.Count)
	}
}

// A session pushed out under MaxSessions counts as evicted, and one whose client starts a new
// handshake on its route as restarted.
func TestMetricsEvictedAndRestarted(t *testing.T) {
	srv := startServer(t, serverConfig("server"), "tcp://127.0.0.1:*", echo, &ServerOptions{MaxSessions: 1})
	ctx := ctxTimeout(t, time.Minute)
	copts := &ClientOptions{Timeout: 5 * time.Second}
	first := newClient(t, clientConfig(), srv.Endpoint(), copts)
	if _, err := first.Request(ctx, []byte("first")); err != nil {
		t.Fatal(err)
	}
	second := newClient(t, clientConfig(), srv.Endpoint(), copts)
	if _, err := second.Request(ctx, []byte("second")); err != nil {
		t.Fatal(err)
	}
	waitCounters(t, srv, "the eviction", func(c Counters) bool { return c.RemovedByCause["evicted"] == 1 })

	// The second client's route sends a new ClientHello: its established session goes.
	a := newAttacker(t, mustContext(t, RoleClient, clientConfig()), srv.Endpoint(), "restarter")
	waitCounters(t, srv, "the attacker's handshake", func(c Counters) bool { return c.HandshakesDone == 3 })
	if _, err := a.sock.SendMessage(a.hop, "", clientHello(t)); err != nil {
		t.Fatal(err)
	}
	c := waitCounters(t, srv, "the restart", func(c Counters) bool { return c.RemovedByCause["restarted"] == 1 })
	if c.RemovedByCause["evicted"] != 2 || c.HandshakesByVersion["TLS 1.3"] != 3 {
		t.Errorf("counters:\n%s\nwant 2 evicted (MaxSessions 1), 3 handshakes", dumpCounters(c))
	}
}

// Every option a budget error names is a kind the counters know, and the errors the engine
// keeps for its own budgets map to theirs.
func TestMetricsBudgetKindsCoverEveryBudget(t *testing.T) {
	files, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`overBudget\("(\w+)"`)
	seen := 0
	for _, f := range files {
		if !strings.HasSuffix(f.Name(), ".go") || strings.HasSuffix(f.Name(), "_test.go") {
			continue
		}
		src, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			seen++
			if k, ok := budgetKindOf(overBudget(m[1], "x")); !ok || k.String() != m[1] {
				t.Errorf("%s: overBudget(%q) is not a kind the counters know", f.Name(), m[1])
			}
		}
	}
	if seen < 5 {
		t.Errorf("found %d budget errors in the sources: the pattern is stale", seen)
	}
	for err, want := range map[error]string{
		&Error{Op: "pump", kind: ErrTooManyKeyUpdates}:                         "MaxKeyUpdates",
		fmt.Errorf("feeding: %w", &Error{Op: "pump", kind: ErrTooManyRecords}): "MaxRecordsPerPump",
	} {
		if k, ok := budgetKindOf(err); !ok || k.String() != want || failCauseOf(err) != failBudget {
			t.Errorf("%v: kind %v %v, want %s and a budget failure", err, k, ok, want)
		}
	}
	if _, ok := budgetKindOf(errors.New("other")); ok {
		t.Error("a plain error has a budget kind")
	}
}

// The failure causes come from the error kinds, a verification failure before its alert.
func TestMetricsFailCauseOf(t *testing.T) {
	verify := &CertificateVerificationError{Code: 20, Reason: "unable to get local issuer certificate"}
	for _, c := range []struct {
		err  error
		want failCause
	}{
		{&Error{Op: "handshake", Verify: verify, Alert: &AlertError{Code: 48, Sent: true}}, failVerify},
		{&Error{Op: "handshake", Alert: &AlertError{Code: 40, Sent: true}}, failAlertSent},
		{fmt.Errorf("wrapped: %w", &Error{Op: "handshake", Alert: &AlertError{Code: 48}}), failAlertReceived},
		{overBudget("MaxMessageSize", "big"), failBudget},
		{errors.New("no session"), failOther},
		{nil, failOther},
	} {
		if got := failCauseOf(c.err); got != c.want {
			t.Errorf("failCauseOf(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// Stats stays cheap: no allocation.
func TestMetricsStatsDoesNotAllocate(t *testing.T) {
	srv := &Server{}
	if n := testing.AllocsPerRun(100, func() { _ = srv.Stats() }); n != 0 {
		t.Errorf("Stats allocates %v times", n)
	}
}
