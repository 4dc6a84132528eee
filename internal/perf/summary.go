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
	return fmt.Sprintf("%s|%s|%s|%d|%s|%s|%s", r.Pattern, r.Transport, r.Suite, r.Size, r.Impl, r.Key, r.Connections)
}

// Rate is the median and range of msgs_per_s of a case; ok is false when it was not measured.
func (s *Summary) Rate(pattern, transport, suite string, size int, impl, key string) (Stat, bool) {
	return s.rate(Result{Pattern: pattern, Transport: transport, Suite: suite, Size: size, Impl: impl, Key: key})
}

// rate is Rate for the case r belongs to.
func (s *Summary) rate(r Result) (Stat, bool) {
	rs := s.cases[caseKey(r)]
	if len(rs) == 0 {
		return Stat{}, false
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = r.MsgsPerS
	}
	return stat(v), true
}

// Ratio divides the median message rates of two cases of one pattern and size.
func (s *Summary) Ratio(pattern string, size int, a, b Transport) (float64, bool) {
	x, ok1 := s.Rate(pattern, a.Name, a.Suite, size, implOf(a), "")
	y, ok2 := s.Rate(pattern, b.Name, b.Suite, size, implOf(b), "")
	if !ok1 || !ok2 || y.Median == 0 {
		return 0, false
	}
	return x.Median / y.Median, true
}

func implOf(t Transport) string {
	if t.Name == TLS {
		return "tlszmq"
	}
	return ""
}

// WriteTable prints the medians and ranges, with each TLS case's ratio to plain ZeroMQ and to
// CURVE, then the handshakes and the session memory.
func (s *Summary) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pattern\ttransport\tsize\tmsgs/s\t(min–max)\tMB/s\t×plain\t×curve\t")
	for _, k := range s.order {
		rs := s.cases[k]
		r := rs[0]
		if r.Pattern != Roundtrip && r.Pattern != Stream {
			continue
		}
		st, _ := s.Rate(r.Pattern, r.Transport, r.Suite, r.Size, r.Impl, r.Key)
		t := Transport{r.Transport, r.Suite}
		vsPlain, vsCurve := "", ""
		if t.Name != Plain {
			if x, ok := s.Ratio(r.Pattern, r.Size, t, Transport{Name: Plain}); ok {
				vsPlain = fmt.Sprintf("%.2f", x)
			}
		}
		if t.Name == TLS {
			if x, ok := s.Ratio(r.Pattern, r.Size, t, Transport{Name: Curve}); ok {
				vsCurve = fmt.Sprintf("%.2f", x)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t(%s–%s)\t%.1f\t%s\t%s\t\n", r.Pattern, shortName(t), SizeName(r.Size),
			count(st.Median), count(st.Min), count(st.Max), st.Median*float64(r.Size)/1e6, vsPlain, vsCurve)
	}
	tw.Flush()
	first := true
	for _, k := range s.order {
		r := s.cases[k][0]
		if r.Pattern != Handshake || r.Impl != "tlszmq" {
			continue
		}
		if first {
			fmt.Fprintln(w, "\nhandshakes/s, TLS 1.3, one server:")
			first = false
		}
		ours, _ := s.rate(r)
		line := fmt.Sprintf("  %-10s tlszmq server, %d clients, %s connections: %s (%s–%s)", r.Key, r.Clients, r.Connections,
			count(ours.Median), count(ours.Min), count(ours.Max))
		var perCPU []float64
		for _, x := range s.cases[caseKey(r)] {
			if x.ServerCPUSeconds > 0 {
				perCPU = append(perCPU, float64(x.Count)/x.ServerCPUSeconds)
			}
		}
		pair, okPair := s.Rate(Handshake, TLS, r.Suite, 0, "c-limit", r.Key)
		server, okServer := s.Rate(Handshake, TLS, r.Suite, 0, "c-limit-server", r.Key)
		if okPair {
			line += fmt.Sprintf(" (×%.2f of C's both sides in one thread, %s)", ours.Median/pair.Median, count(pair.Median))
		}
		if len(perCPU) > 0 {
			cpu := stat(perCPU)
			line += fmt.Sprintf("; per second of the server thread's CPU: %s", count(cpu.Median))
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
		fmt.Fprintf(w, "\nidle session memory, %d TLS 1.3 sessions on one server: %s per session (RSS; %s–%s), of which Go heap %s, C heap %s\n",
			rs[0].Count, kib(a.Median), kib(a.Min), kib(a.Max), kib(b.Median), kib(c.Median))
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
