package perf

import (
	"bytes"
	"encoding/json"
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
				l, err := openLink(t, pattern, size, func(suite string, ecdsa bool) (*Keys, error) {
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

// BenchmarkHandshakes: handshakes per second on one server with 16 clients over kept
// connections, for a second per iteration; the C limit for comparison runs under
// BenchmarkHandshake in the root package.
func BenchmarkHandshakes(b *testing.B) {
	for _, ecdsa := range []bool{false, true} {
		b.Run(keyName(ecdsa), func(b *testing.B) {
			k := testKeys(b, AES128GCM, ecdsa)
			total, elapsed := 0, time.Duration(0)
			for b.Loop() {
				n, d, _, err := Handshakes(k, 16, time.Second, true)
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
		per, err := Sessions(k, 10000)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(per.RSS), "rss-bytes/session")
		b.ReportMetric(float64(per.GoHeap), "goheap-bytes/session")
		b.ReportMetric(float64(per.CHeap), "cheap-bytes/session")
	}
}

// TestRunAll runs every pattern and transport briefly and checks what Run reports: every case
// once per round, sensible figures, and JSON lines with the documented fields.
func TestRunAll(t *testing.T) {
	o := DefaultOptions()
	o.Rounds, o.Duration, o.Sizes, o.Clients, o.Sessions = 2, 30*time.Millisecond, []int{64, 64 << 10}, 4, 50
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
	// Per round: 2 patterns × 6 transports × 2 sizes, 2 keys × 4 handshake rows, 1 memory row.
	if want := 2 * (2*6*2 + 2*4 + 1); len(lines) != want {
		t.Fatalf("%d results, want %d", len(lines), want)
	}
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
		switch m["pattern"] {
		case Roundtrip, Stream, Handshake:
			if m["msgs_per_s"].(float64) <= 0 {
				t.Errorf("%s: no rate", line)
			}
		case SessionMemory:
			if m["bytes_per_session"].(float64) == 0 && m["c_heap_per_session"] == nil {
				t.Errorf("%s: no memory measured", line)
			}
		}
	}
	for _, size := range o.Sizes {
		if _, ok := sum.Ratio(Stream, size, Transport{TLS, AES128GCM}, Transport{Name: Curve}); !ok {
			t.Errorf("no stream ratio at %d B", size)
		}
	}
	var table bytes.Buffer
	sum.WriteTable(&table)
	for _, want := range []string{"tls1.2 aes128", "curve", "handshakes/s", "both sides in one thread", "server side alone", "server thread's CPU", "idle session memory"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("the table has no %q:\n%s", want, table.String())
		}
	}
}
