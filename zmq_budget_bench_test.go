package tlszmq

import (
	"fmt"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq/internal/attack"
)

// BenchmarkBudget measures what the budgets leave an attacker: the memory one half-open
// session holds, and the well-behaved client's round trips (a 64-byte request every 20 ms)
// under each abuse of zmq_server_budget_test.go, against the same client with no abuse, on the
// same server, just before (3 s of each, from the abuse's start). Each iteration is a whole
// scenario on a fresh server with the default options (one iteration at the default
// -benchtime); the figures are the worst iteration's. Run it alone:
// go test -run '^$' -bench Budget .
func BenchmarkBudget(b *testing.B) {
	for _, p := range []struct {
		name   string
		prefix []byte
	}{
		{"HalfOpenSession/64B", attack.HelloPrefix(64)},
		{"HalfOpenSession/8KiB", attack.HelloRecordPrefix(16<<10, 8<<10)},
	} {
		b.Run(p.name, func(b *testing.B) {
			var perSession int64
			for range b.N {
				perSession = max(perSession, halfOpenSessionCost(b, p.prefix))
			}
			b.ReportMetric(float64(perSession), "bytes/session")
		})
	}
	for _, a := range []struct {
		name string
		run  func(r *budgetRig) abuseResult
	}{
		{"NoAbuse", func(r *budgetRig) abuseResult { return r.abuse(func() { time.Sleep(time.Second) }) }},
		{"EmptyMessages", abuseEmptyMessages},
		{"EndlessParts", abuseEndlessParts},
		{"ForgedRoutes", func(r *budgetRig) abuseResult { return abuseForgedRoutes(r, attack.RecordHeader).abuseResult }},
		{"ForgedHalfOpen", func(r *budgetRig) abuseResult { return abuseForgedRoutes(r, attack.HelloPrefix(64)).abuseResult }},
		{"DeepEnvelope", func(r *budgetRig) abuseResult { return abuseDeepEnvelope(r, 4, 1<<20) }},
		{"UnreadReplies", abuseUnreadReplies},
	} {
		b.Run(a.name, func(b *testing.B) {
			var worst abuseResult
			var p99, base, slowest time.Duration
			for range b.N {
				r := newBudgetRig(b, nil)
				// 150 round trips each way: the 99th percentile is the second slowest.
				r.baseline, r.window = 3*time.Second, 3*time.Second
				res := a.run(r)
				if res.goodErr != nil {
					b.Fatal(res.goodErr)
				}
				if res.under.p99() >= p99 {
					worst = res
				}
				p99, base, slowest = max(p99, res.under.p99()), max(base, res.base.p99()), max(slowest, res.under.worst())
			}
			worst.report(b, a.name)
			b.ReportMetric(ms(p99), "p99-ms")
			b.ReportMetric(ms(base), "p99-no-abuse-ms")
			b.ReportMetric(ms(slowest), "worst-ms")
			b.ReportMetric(float64(worst.mem.peak)/(1<<20), "peak-MiB")
			b.ReportMetric(float64(worst.mem.kept)/(1<<20), "kept-MiB")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// halfOpenSessionCost makes MaxHalfOpen (1,000) half-open sessions, each stalled after prefix,
// the first bytes of a ClientHello's record, and returns what the process holds for each one
// (the Go heap and the C heap, after a GC).
func halfOpenSessionCost(b *testing.B, prefix []byte) int64 {
	r := newBudgetRig(b, nil)
	a := r.rawAttacker("half-open")
	r.good.stop() // alone, for the measurement
	before := memNow(true, r.logs)
	for i := range 999 {
		if err := a.Send([]byte(fmt.Sprintf("half-open-%03d", i)), nil, prefix); err != nil {
			b.Fatal(err)
		}
		if i%200 == 199 {
			a.Drain()
		}
	}
	r.marker(a, 20*time.Second) // the 1,000th
	a.Drain()
	after := memNow(true, r.logs)
	// The server may hold a partial ClientHello without a session (and without counting it in
	// Stats.Sessions): the count is what was sent, less what the log says was removed.
	n := 1000 - int64(len(r.logLines("tlszmq: session removed", "")))
	if n < 999 {
		b.Fatalf("%d half-open sessions, want 1000", n)
	}
	per := (after.total() - before.total()) / n
	b.Logf("%d half-open sessions: %s in all (Go heap %s, C heap %s), %d bytes each", n,
		mib(after.total()-before.total()), mib(after.goHeap-before.goHeap), mib(after.cHeap-before.cHeap), per)
	return per
}
