package perf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	fixtureOnce sync.Once
	fixture     *Fixture
	fixtureErr  error
)

func testFixture(tb testing.TB) *Fixture {
	fixtureOnce.Do(func() { fixture, fixtureErr = NewFixture() })
	if fixtureErr != nil {
		tb.Fatal(fixtureErr)
	}
	return fixture
}

func testKeys(tb testing.TB, suite string, ecdsa bool) *Keys {
	k, err := NewKeys(testFixture(tb), suite, ecdsa)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(k.Close)
	return k
}

func benchName(t Transport) string { return strings.ReplaceAll(shortName(t), " ", "-") }

// benchLinks runs one pattern over every transport and size: b.N messages per case.
func benchLinks(b *testing.B, pattern string) {
	for _, t := range Transports() {
		for _, size := range Sizes {
			b.Run(benchName(t)+"/"+strings.ReplaceAll(SizeName(size), " ", ""), func(b *testing.B) {
				l, err := openLink(t, pattern, size, 0, func(suite string, ecdsa bool) (*Keys, error) {
					return testKeys(b, suite, ecdsa), nil
				})
				if err != nil {
					b.Fatal(err)
				}
				defer func() {
					if err := l.close(); err != nil {
						b.Error(err)
					}
				}()
				msg := make([]byte, size)
				unit := 1
				if pattern == Stream {
					_, unit = credit(size)
				}
				if err := l.run(msg, unit); err != nil { // warm-up
					b.Fatal(err)
				}
				n := (b.N + unit - 1) / unit * unit // whole credit chunks
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				if err := l.run(msg, n); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

// BenchmarkRoundtrip: lock-step REQ client and ROUTER server, echoing messages.
func BenchmarkRoundtrip(b *testing.B) { benchLinks(b, Roundtrip) }

// BenchmarkStream: a DEALER streams to a ROUTER within a credit window.
func BenchmarkStream(b *testing.B) { benchLinks(b, Stream) }

// BenchmarkHandshakes: handshakes per second on one server (default workers) with 16 clients
// in another process over kept connections, for a second per iteration; the C limit for
// comparison runs under BenchmarkHandshake in the root package.
func BenchmarkHandshakes(b *testing.B) {
	for _, ecdsa := range []bool{false, true} {
		b.Run(keyName(ecdsa), func(b *testing.B) {
			k := testKeys(b, AES128GCM, ecdsa)
			total, elapsed := 0, time.Duration(0)
			for b.Loop() {
				n, d, _, err := Handshakes(k, 16, 0, time.Second, true)
				if err != nil {
					b.Fatal(err)
				}
				total, elapsed = total+n, elapsed+d
			}
			b.ReportMetric(float64(total)/elapsed.Seconds(), "handshakes/s")
		})
	}
}

// BenchmarkSessionMemory: the growth per idle session with 10,000 sessions open.
func BenchmarkSessionMemory(b *testing.B) {
	k := testKeys(b, AES128GCM, false)
	for b.Loop() {
		per, err := Sessions(k, 10000, 0)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(per.RSS), "rss-bytes/session")
		b.ReportMetric(float64(per.GoHeap), "goheap-bytes/session")
		b.ReportMetric(float64(per.CHeap), "cheap-bytes/session")
	}
}

// TestRunAll runs every pattern and transport briefly and checks what Run reports: every case
// once per round and tlszmq's once per worker count, sensible figures, and JSON lines with
// the documented fields.
func TestRunAll(t *testing.T) {
	o := DefaultOptions()
	o.Rounds, o.Duration, o.Sizes, o.Workers, o.Clients, o.Sessions = 2, 30*time.Millisecond, []int{64, 64 << 10}, []int{1, 2}, 4, 50
	var progress []string
	o.Progress = func(what string) { progress = append(progress, what) }
	var out bytes.Buffer
	var sum Summary
	err := Run(o, func(r Result) {
		sum.Add(r)
		if err := WriteJSON(&out, r); err != nil {
			t.Error(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	// Per round: 3 patterns × (2 transports + 4 TLS ones × 2 worker counts) × 2 sizes, 2 keys ×
	// (2 worker counts × 2 connection kinds + 2 C limit rows) handshake rows, 2 memory rows.
	if want := 2 * (3*10*2 + 2*6 + 2); len(lines) != want {
		t.Fatalf("%d results, want %d", len(lines), want)
	}
	// Per round, one case fewer than results: the C limit's two rows are one case per key.
	if want := 2 * (3*10*2 + 2*5 + 2); len(progress) != want || !strings.HasPrefix(progress[0], "case 1 of "+fmt.Sprint(want)+", round 1: ") {
		t.Errorf("%d progress lines, want %d, the first %q", len(progress), want, progress[0])
	}
	seen := map[string]int{}
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		for _, f := range []string{"pattern", "transport", "suite", "size", "msgs_per_s", "mb_per_s", "bytes_per_session", "round"} {
			if _, ok := m[f]; !ok {
				t.Errorf("%s: no field %q", line, f)
			}
		}
		workers, _ := m["workers"].(float64)
		if tlszmq := m["impl"] == "tlszmq"; tlszmq != (workers == 1 || workers == 2) || !tlszmq && m["workers"] != nil {
			t.Errorf("%s: workers %v", line, m["workers"])
		}
		seen[fmt.Sprint(m["pattern"], m["workers"])]++
		switch m["pattern"] {
		case Roundtrip, Stream, Streams, Handshake:
			if m["msgs_per_s"].(float64) <= 0 {
				t.Errorf("%s: no rate", line)
			}
		case SessionMemory:
			if m["bytes_per_session"].(float64) == 0 && m["c_heap_per_session"] == nil {
				t.Errorf("%s: no memory measured", line)
			}
		}
		p50, _ := m["p50_us"].(float64)
		p99, _ := m["p99_us"].(float64)
		if m["pattern"] == Roundtrip && (p50 <= 0 || p99 < p50) || m["pattern"] != Roundtrip && m["p50_us"] != nil {
			t.Errorf("%s: p50 %v µs, p99 %v µs", line, m["p50_us"], m["p99_us"])
		}
		cpu, _ := m["server_cpu_s"].(float64)
		each, _ := m["server_cpu_us_per_handshake"].(float64)
		if m["pattern"] == Handshake && m["impl"] == "tlszmq" && (cpu <= 0 || each <= 0) || m["pattern"] == Streams && cpu <= 0 {
			t.Errorf("%s: no server CPU time", line)
		}
		if m["pattern"] == Streams && m["clients"] != float64(o.Clients) {
			t.Errorf("%s: clients %v, want %d", line, m["clients"], o.Clients)
		}
	}
	for _, w := range []int{1, 2} {
		if seen[fmt.Sprint(Streams, float64(w))] != 2*4*2 || seen[fmt.Sprint(Handshake, float64(w))] != 2*2*2 {
			t.Errorf("at %d workers: %d streams rows, %d handshake rows", w, seen[fmt.Sprint(Streams, float64(w))], seen[fmt.Sprint(Handshake, float64(w))])
		}
	}
	for _, size := range o.Sizes {
		for _, pattern := range []string{Stream, Streams} {
			if _, ok := sum.Ratio(pattern, size, 2, Transport{TLS, AES128GCM}, Transport{Name: Curve}); !ok {
				t.Errorf("no %s ratio at %d B", pattern, size)
			}
		}
	}
	var table bytes.Buffer
	sum.WriteTable(&table)
	for _, want := range []string{"tls1.2 aes128", "curve", "workers", "p50 µs", "p99 µs", "streams×4", "handshakes/s", "2 workers, 4 clients",
		"both sides in one thread", "server side alone", "server process's CPU", "idle session memory", "with 1 worker", "with 2 workers"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("the table has no %q:\n%s", want, table.String())
		}
	}
}

// TestHandshakesInAnotherProcess runs the handshake measurement on its own: its clients run
// in a copy of the test binary (TestMain), and the server's process's CPU time is counted.
func TestHandshakesInAnotherProcess(t *testing.T) {
	k := testKeys(t, AES128GCM, true)
	for _, kept := range []bool{true, false} {
		n, d, cpu, err := Handshakes(k, 2, 2, 200*time.Millisecond, kept)
		if err != nil {
			t.Fatal(err)
		}
		if n <= 0 || d < 200*time.Millisecond || cpu <= 0 {
			t.Errorf("kept %v: %d handshakes in %v, server CPU %v", kept, n, d, cpu)
		}
	}
}

// TestClientProcessFailure: a client process that cannot do its job says why, and goes.
func TestClientProcessFailure(t *testing.T) {
	_, err := startClients(clientJob{Kind: "juggling", Clients: 1, Transport: TLS, CAPEM: testFixture(t).CACert})
	if err == nil || !strings.Contains(err.Error(), `unknown kind of client job "juggling"`) {
		t.Errorf("got %v", err)
	}
	_, err = startClients(clientJob{Kind: keptConnections, Clients: 0, Transport: TLS})
	if err == nil || !strings.Contains(err.Error(), "a job of 0 clients") {
		t.Errorf("got %v", err)
	}
}

// TestLatencyPercentiles checks the histogram against durations with known percentiles.
func TestLatencyPercentiles(t *testing.T) {
	var l latencies
	if l.micros(0.5) != 0 {
		t.Error("a percentile of nothing")
	}
	for i := 1; i <= 1000; i++ { // 1 µs to 1 ms
		l.add(time.Duration(i) * time.Microsecond)
	}
	l.add(-time.Second) // counted as 0
	for _, c := range []struct{ q, want float64 }{{0.5, 500}, {0.99, 990}, {1, 1000}, {0.0005, 0}} {
		if got := l.micros(c.q); got < c.want*(1-1.0/128) || got > c.want*(1+1.0/128)+0.001 {
			t.Errorf("quantile %v: %v µs, want %v", c.q, got, c.want)
		}
	}
	for _, d := range []time.Duration{0, 127, 128, 255, 256, 1 << 40, 1 << 62} {
		if i := latencyBucket(d); i >= latencyBuckets || bucketMiddle(i) < d-d/128-1 || bucketMiddle(i) > d+d/128+1 {
			t.Errorf("%d ns: bucket %d, middle %d ns", d, i, bucketMiddle(i))
		}
	}
}
