package perf

import (
	"crypto/rand"
	"fmt"
	"time"
)

// Options choose what Run measures.
type Options struct {
	// Rounds repeats the whole comparison; every round measures every case once, so that
	// the transports are interleaved in time and share the machine's ups and downs.
	Rounds int
	// Duration is how long one case is measured in one round.
	Duration time.Duration
	// Patterns lists what to measure: Roundtrip, Stream, Handshake, SessionMemory.
	Patterns []string
	// Transports and Sizes span the round-trip and streaming cases.
	Transports []Transport
	Sizes      []int
	// Clients is the number of client goroutines of the handshake measurement.
	Clients int
	// Sessions is the number of idle sessions the memory measurement opens.
	Sessions int
	// Progress, if set, hears about each case before it runs.
	Progress func(what string)
}

// DefaultOptions measures everything, 3 rounds of 1 s per case, with 16 handshaking clients
// and 10,000 idle sessions.
func DefaultOptions() Options {
	return Options{Rounds: 3, Duration: time.Second, Patterns: []string{Roundtrip, Stream, Handshake, SessionMemory},
		Transports: Transports(), Sizes: Sizes, Clients: 16, Sessions: 10000}
}

// Run measures what o says and hands each Result to emit as soon as it is known.
func Run(o Options, emit func(Result)) error {
	f, err := NewFixture()
	if err != nil {
		return fmt.Errorf("perf: making the certificates: %w", err)
	}
	keys := map[string]*Keys{} // by suite, for the RSA server certificate
	defer func() {
		for _, k := range keys {
			k.Close()
		}
	}()
	keysFor := func(suite string, ecdsa bool) (*Keys, error) {
		id := suite
		if ecdsa {
			id += "/ecdsa"
		}
		if k := keys[id]; k != nil {
			return k, nil
		}
		k, err := NewKeys(f, suite, ecdsa)
		if err == nil {
			keys[id] = k
		}
		return k, err
	}
	progress := func(format string, args ...any) {
		if o.Progress != nil {
			o.Progress(fmt.Sprintf(format, args...))
		}
	}
	for round := 1; round <= o.Rounds; round++ {
		for _, pattern := range o.Patterns {
			switch pattern {
			case Roundtrip, Stream:
				for _, t := range o.Transports {
					for _, size := range o.Sizes {
						progress("round %d: %s %s %d B", round, pattern, t, size)
						l, err := openLink(t, pattern, size, keysFor)
						if err != nil {
							return fmt.Errorf("perf: %s %s: %w", pattern, t, err)
						}
						n, d, err := measure(l, pattern, size, o.Duration)
						if cerr := l.close(); err == nil {
							err = cerr
						}
						if err != nil {
							return fmt.Errorf("perf: %s %s %d B: %w", pattern, t, size, err)
						}
						r := Result{Pattern: pattern, Transport: t.Name, Suite: t.Suite, Size: size, Round: round}
						if t.Name == TLS {
							r.Impl = "tlszmq"
						}
						rate(&r, n, d)
						emit(r)
					}
				}
			case Handshake:
				for _, ecdsa := range []bool{false, true} {
					key := keyName(ecdsa)
					k, err := keysFor(AES128GCM, ecdsa)
					if err != nil {
						return err
					}
					var best float64
					for _, kept := range []bool{true, false} {
						conns := map[bool]string{true: "kept", false: "new"}[kept]
						progress("round %d: handshakes, %s, %d clients, %s connections", round, key, o.Clients, conns)
						n, d, cpu, err := Handshakes(k, o.Clients, o.Duration, kept)
						if err != nil {
							return fmt.Errorf("perf: handshakes %s: %w", key, err)
						}
						r := Result{Pattern: Handshake, Transport: TLS, Suite: AES128GCM, Round: round, Impl: "tlszmq", Key: key,
							Clients: o.Clients, Connections: conns, ServerCPUSeconds: cpu.Seconds()}
						rate(&r, n, d)
						emit(r)
						best = max(best, r.MsgsPerS)
					}
					progress("round %d: handshakes, %s, OpenSSL in plain C", round, key)
					count := max(int(best*o.Duration.Seconds()), 50)
					pair, server, err := CLimit(f, ecdsa, count)
					if err != nil {
						return fmt.Errorf("perf: the C limit, %s: %w", key, err)
					}
					c := Result{Pattern: Handshake, Transport: TLS, Suite: AES128GCM, Round: round, Impl: "c-limit", Key: key,
						Count: count, Seconds: float64(count) / pair, MsgsPerS: pair}
					emit(c)
					c.Impl, c.Seconds, c.MsgsPerS = "c-limit-server", float64(count)/server, server
					emit(c)
				}
			case SessionMemory:
				k, err := keysFor(AES128GCM, false)
				if err != nil {
					return err
				}
				progress("round %d: %d idle sessions", round, o.Sessions)
				t0 := time.Now()
				per, err := Sessions(k, o.Sessions)
				if err != nil {
					return fmt.Errorf("perf: session memory: %w", err)
				}
				emit(Result{Pattern: SessionMemory, Transport: TLS, Suite: AES128GCM, Round: round, Impl: "tlszmq", Key: keyName(false),
					Count: o.Sessions, Seconds: time.Since(t0).Seconds(),
					BytesPerSession: float64(per.RSS), GoHeapPerSession: float64(per.GoHeap), CHeapPerSession: float64(per.CHeap)})
			default:
				return fmt.Errorf("perf: unknown pattern %q (%s, %s, %s or %s)", pattern, Roundtrip, Stream, Handshake, SessionMemory)
			}
		}
	}
	return nil
}

func keyName(ecdsa bool) string {
	if ecdsa {
		return "ECDSA-P256"
	}
	return "RSA-2048"
}

func openLink(t Transport, pattern string, size int, keysFor func(string, bool) (*Keys, error)) (link, error) {
	switch t.Name {
	case Plain, Curve:
		return newZMQLink(pattern, t.Name == Curve, size)
	case TLS:
		k, err := keysFor(t.Suite, false)
		if err != nil {
			return nil, err
		}
		return newTLSLink(k, pattern, size)
	}
	return nil, fmt.Errorf("unknown transport %q", t.Name)
}

// measure runs the link for at least d after a warm-up, in batches that grow until one takes
// a sixteenth of d, and returns the messages it moved and the time they took.
func measure(l link, pattern string, size int, d time.Duration) (int, time.Duration, error) {
	msg := make([]byte, size)
	rand.Read(msg)
	unit := 1
	if pattern == Stream {
		_, unit = credit(size)
	}
	if err := l.run(msg, unit); err != nil {
		return 0, 0, err
	}
	total, n := 0, unit
	var elapsed time.Duration
	for elapsed < d {
		t0 := time.Now()
		if err := l.run(msg, n); err != nil {
			return 0, 0, err
		}
		took := time.Since(t0)
		total, elapsed = total+n, elapsed+took
		if took < d/16 {
			n *= 2
		}
	}
	return total, elapsed, nil
}
