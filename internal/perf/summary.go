package perf

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// Stat is the median and range of one case over the rounds.
type Stat struct {
	Median, Min, Max float64
	Rounds           int
}

func stat(v []float64) Stat {
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stat{Median: m, Min: s[0], Max: s[len(s)-1], Rounds: len(s)}
}

// Summary holds the results of all rounds, grouped by case.
type Summary struct {
	order []string
	cases map[string][]Result
}

// Add records one result.
func (s *Summary) Add(r Result) {
	if s.cases == nil {
		s.cases = map[string][]Result{}
	}
	k := caseKey(r)
	if _, ok := s.cases[k]; !ok {
		s.order = append(s.order, k)
	}
	s.cases[k] = append(s.cases[k], r)
}

func caseKey(r Result) string {
	return fmt.Sprintf("%s|%s|%s|%d|%d|%s|%s|%s", r.Pattern, r.Transport, r.Suite, r.Size, r.Workers, r.Impl, r.Key, r.Connections)
}

// Rate is the median and range of msgs_per_s of the case c belongs to: the results of the
// rounds with c's pattern, transport, suite, size, workers, impl, key and connections. ok is
// false when it was not measured.
func (s *Summary) Rate(c Result) (st Stat, ok bool) {
	return s.median(c, func(r Result) float64 { return r.MsgsPerS })
}

// median is the median and range of one figure of the case c belongs to.
func (s *Summary) median(c Result, figure func(Result) float64) (Stat, bool) {
	rs := s.cases[caseKey(c)]
	if len(rs) == 0 {
		return Stat{}, false
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = figure(r)
	}
	return stat(v), true
}

// Ratio divides the median message rates of two cases of one pattern and size, each at the
// given server workers if it is tlszmq (plain ZeroMQ and CURVE have none).
func (s *Summary) Ratio(pattern string, size, workers int, a, b Transport) (float64, bool) {
	x, ok1 := s.Rate(linkCase(pattern, size, workers, a))
	y, ok2 := s.Rate(linkCase(pattern, size, workers, b))
	if !ok1 || !ok2 || y.Median == 0 {
		return 0, false
	}
	return x.Median / y.Median, true
}

// linkCase is a Result of the round-trip, streaming or bulk streams case of transport t.
func linkCase(pattern string, size, workers int, t Transport) Result {
	r := Result{Pattern: pattern, Transport: t.Name, Suite: t.Suite, Size: size}
	if t.Name == TLS {
		r.Impl, r.Workers = "tlszmq", workers
	}
	return r
}

// WriteTable prints the medians and ranges, with each TLS case's ratio to plain ZeroMQ and to
// CURVE and the round trips' latency percentiles, then the handshakes and the session memory.
func (s *Summary) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pattern\ttransport\tworkers\tsize\tmsgs/s\t(min–max)\tMB/s\tp50 µs\tp99 µs\t×plain\t×curve\t")
	for _, k := range s.order {
		r := s.cases[k][0]
		if r.Pattern != Roundtrip && r.Pattern != Stream && r.Pattern != Streams {
			continue
		}
		st, _ := s.Rate(r)
		t := Transport{r.Transport, r.Suite}
		vsPlain, vsCurve := "", ""
		if t.Name != Plain {
			if x, ok := s.Ratio(r.Pattern, r.Size, r.Workers, t, Transport{Name: Plain}); ok {
				vsPlain = fmt.Sprintf("%.2f", x)
			}
		}
		if t.Name == TLS {
			if x, ok := s.Ratio(r.Pattern, r.Size, r.Workers, t, Transport{Name: Curve}); ok {
				vsCurve = fmt.Sprintf("%.2f", x)
			}
		}
		pattern, workers, p50, p99 := r.Pattern, "", "", ""
		if r.Pattern == Streams {
			pattern = fmt.Sprintf("%s×%d", r.Pattern, r.Clients)
		}
		if r.Workers > 0 {
			workers = fmt.Sprint(r.Workers)
		}
		if r.P50Micros > 0 {
			a, _ := s.median(r, func(r Result) float64 { return r.P50Micros })
			b, _ := s.median(r, func(r Result) float64 { return r.P99Micros })
			p50, p99 = fmt.Sprintf("%.1f", a.Median), fmt.Sprintf("%.1f", b.Median)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t(%s–%s)\t%.1f\t%s\t%s\t%s\t%s\t\n", pattern, shortName(t), workers, SizeName(r.Size),
			count(st.Median), count(st.Min), count(st.Max), st.Median*float64(r.Size)/1e6, p50, p99, vsPlain, vsCurve)
	}
	tw.Flush()
	first := true
	for _, k := range s.order {
		r := s.cases[k][0]
		if r.Pattern != Handshake || r.Impl != "tlszmq" {
			continue
		}
		if first {
			fmt.Fprintln(w, "\nhandshakes/s, TLS 1.3, one server, its clients in another process:")
			first = false
		}
		ours, _ := s.Rate(r)
		line := fmt.Sprintf("  %-10s tlszmq server, %s, %d clients, %s connections: %s (%s–%s)", r.Key, workersName(r.Workers), r.Clients,
			r.Connections, count(ours.Median), count(ours.Min), count(ours.Max))
		var perCPU []float64
		for _, x := range s.cases[k] {
			if x.ServerCPUSeconds > 0 {
				perCPU = append(perCPU, float64(x.Count)/x.ServerCPUSeconds)
			}
		}
		limit := Result{Pattern: Handshake, Transport: TLS, Suite: r.Suite, Impl: "c-limit", Key: r.Key}
		pair, okPair := s.Rate(limit)
		limit.Impl = "c-limit-server"
		server, okServer := s.Rate(limit)
		if okPair {
			line += fmt.Sprintf(" (×%.2f of C's both sides in one thread, %s)", ours.Median/pair.Median, count(pair.Median))
		}
		if len(perCPU) > 0 {
			cpu := stat(perCPU)
			line += fmt.Sprintf("; per second of the server process's CPU: %s, %.0f µs each", count(cpu.Median), 1e6/cpu.Median)
			if okServer {
				line += fmt.Sprintf(" (×%.2f of C's server side alone, %s)", cpu.Median/server.Median, count(server.Median))
			}
		}
		fmt.Fprintln(w, line)
	}
	for _, k := range s.order {
		rs := s.cases[k]
		if rs[0].Pattern != SessionMemory {
			continue
		}
		var rss, goh, ch []float64
		for _, r := range rs {
			rss, goh, ch = append(rss, r.BytesPerSession), append(goh, r.GoHeapPerSession), append(ch, r.CHeapPerSession)
		}
		a, b, c := stat(rss), stat(goh), stat(ch)
		fmt.Fprintf(w, "\nidle session memory, %d TLS 1.3 sessions on one server with %s: %s per session (RSS; %s–%s), of which Go heap %s, C heap %s\n",
			rs[0].Count, workersName(rs[0].Workers), kib(a.Median), kib(a.Min), kib(a.Max), kib(b.Median), kib(c.Median))
	}
}

func shortName(t Transport) string {
	switch t.Suite {
	case "":
		return t.Name
	case AES128GCM:
		return "tls1.3 aes128"
	case AES256GCM:
		return "tls1.3 aes256"
	case ChaCha20:
		return "tls1.3 chacha20"
	case TLS12AES:
		return "tls1.2 aes128"
	}
	return t.String()
}

// SizeName is "64 B", "1 KiB", "16 KiB" or "1 MiB".
func SizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }

// count formats a rate with thousands separators.
func count(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
