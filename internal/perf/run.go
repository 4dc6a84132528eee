package perf

import (
	"crypto/rand"
	"fmt"
	"runtime"
	"slices"
	"time"
)

// Options choose what Run measures.
type Options struct {
	// Rounds repeats the whole comparison; every round measures every case once, so that
	// the transports are interleaved in time and share the machine's ups and downs.
	Rounds int
	// Duration is how long one case is measured in one round.
	Duration time.Duration
	// Patterns lists what to measure: Roundtrip, Stream, Streams, Handshake, SessionMemory.
	Patterns []string
	// Transports and Sizes span the round-trip, streaming and bulk streams cases.
	Transports []Transport
	Sizes      []int
	// Workers lists the server worker counts (tlszmq.ServerOptions.Workers, each at least 1)
	// that every tlszmq case is measured with, once each; plain ZeroMQ and CURVE are measured
	// once. Empty means DefaultWorkers.
	Workers []int
	// Clients is the number of clients of the handshake and bulk streams measurements, which
	// run in another process (see RunChildIfAsked).
	Clients int
	// Sessions is the number of idle sessions the memory measurement opens.
	Sessions int
	// Progress, if set, hears about each case before it runs: "case k of n, " and what it is.
	Progress func(what string)
}

// DefaultOptions measures everything, 3 rounds of 1 s per case, tlszmq with DefaultWorkers,
// with 16 handshaking or streaming clients and 10,000 idle sessions.
func DefaultOptions() Options {
	return Options{Rounds: 3, Duration: time.Second, Patterns: []string{Roundtrip, Stream, Streams, Handshake, SessionMemory},
		Transports: Transports(), Sizes: Sizes, Workers: DefaultWorkers(), Clients: 16, Sessions: 10000}
}

// DefaultWorkers is 1 and runtime.GOMAXPROCS(0), if that is more: one worker, and the
// server's default.
func DefaultWorkers() []int {
	if n := runtime.GOMAXPROCS(0); n > 1 {
		return []int{1, n}
	}
	return []int{1}
}

// check reports what Run cannot measure.
func (o Options) check() error {
	for _, p := range o.Patterns {
		if p != Roundtrip && p != Stream && p != Streams && p != Handshake && p != SessionMemory {
			return fmt.Errorf("perf: unknown pattern %q (%s, %s, %s, %s or %s)", p, Roundtrip, Stream, Streams, Handshake, SessionMemory)
		}
	}
	for _, w := range o.Workers {
		if w < 1 {
			return fmt.Errorf("perf: %d workers: a server has at least 1", w)
		}
	}
	if o.Clients < 1 && (slices.Contains(o.Patterns, Handshake) || slices.Contains(o.Patterns, Streams)) {
		return fmt.Errorf("perf: %d clients", o.Clients)
	}
	return nil
}

// Run measures what o says and hands each Result to emit as soon as it is known.
func Run(o Options, emit func(Result)) error {
	if len(o.Workers) == 0 {
		o.Workers = DefaultWorkers()
	}
	if err := o.check(); err != nil {
		return err
	}
	f, err := NewFixture()
	if err != nil {
		return fmt.Errorf("perf: making the certificates: %w", err)
	}
	r := &runner{o: o, f: f, keys: map[string]*Keys{}, best: map[roundKey]float64{}}
	defer func() {
		for _, k := range r.keys {
			k.Close()
		}
	}()
	cases := plan(o)
	for i, c := range cases {
		if o.Progress != nil {
			o.Progress(fmt.Sprintf("case %d of %d, %s", i+1, len(cases), c))
		}
		results, err := r.measure(c)
		if err != nil {
			return err
		}
		for _, res := range results {
			emit(res)
		}
	}
	return nil
}

// runner measures the cases of one Run, with what they share.
type runner struct {
	o    Options
	f    *Fixture
	keys map[string]*Keys // by suite, and "/ecdsa" for the ECDSA server certificate
	// best is the best tlszmq handshake rate of a round and key: the C limit measures as many
	// handshakes as the server did in Duration.
	best map[roundKey]float64
}

// roundKey is a round and a server key type.
type roundKey struct {
	round int
	ecdsa bool
}

// keysFor makes the contexts of a suite and key type once.
func (r *runner) keysFor(suite string, ecdsa bool) (*Keys, error) {
	id := suite
	if ecdsa {
		id += "/ecdsa"
	}
	if k := r.keys[id]; k != nil {
		return k, nil
	}
	k, err := NewKeys(r.f, suite, ecdsa)
	if err == nil {
		r.keys[id] = k
	}
	return k, err
}

// measure runs one case and returns its results: one, or two for the C limit (both sides,
// and the server's side alone).
func (r *runner) measure(c benchCase) ([]Result, error) {
	res := c.result()
	switch {
	case c.pattern == Roundtrip || c.pattern == Stream:
		l, err := openLink(c.t, c.pattern, c.size, c.workers, r.keysFor)
		if err != nil {
			return nil, fmt.Errorf("perf: %s %s: %w", c.pattern, c.t, err)
		}
		n, d, lat, err := measure(l, c.pattern, c.size, r.o.Duration)
		if cerr := l.close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("perf: %s %s %d B: %w", c.pattern, c.t, c.size, err)
		}
		rate(&res, n, d)
		if lat != nil {
			res.P50Micros, res.P99Micros = lat.micros(0.50), lat.micros(0.99)
		}
	case c.pattern == Streams:
		var k *Keys
		if c.t.Name == TLS {
			var err error
			if k, err = r.keysFor(c.t.Suite, false); err != nil {
				return nil, err
			}
		}
		n, d, cpu, err := BulkStreams(c.t, k, c.size, c.clients, c.workers, r.o.Duration)
		if err != nil {
			return nil, fmt.Errorf("perf: streams %s %d B: %w", c.t, c.size, err)
		}
		rate(&res, n, d)
		res.ServerCPUSeconds = cpu.Seconds()
	case c.pattern == Handshake && c.cLimit:
		return r.cLimit(c)
	case c.pattern == Handshake:
		k, err := r.keysFor(c.t.Suite, c.ecdsa)
		if err != nil {
			return nil, err
		}
		n, d, cpu, err := Handshakes(k, c.clients, c.workers, r.o.Duration, c.kept)
		if err != nil {
			return nil, fmt.Errorf("perf: handshakes %s: %w", res.Key, err)
		}
		rate(&res, n, d)
		res.ServerCPUSeconds = cpu.Seconds()
		if n > 0 {
			res.ServerCPUMicrosPerHandshake = cpu.Seconds() * 1e6 / float64(n)
		}
		at := roundKey{c.round, c.ecdsa}
		r.best[at] = max(r.best[at], res.MsgsPerS)
	case c.pattern == SessionMemory:
		k, err := r.keysFor(c.t.Suite, false)
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		per, err := Sessions(k, c.sessions, c.workers)
		if err != nil {
			return nil, fmt.Errorf("perf: session memory: %w", err)
		}
		res.Key, res.Count, res.Seconds = keyName(false), c.sessions, time.Since(t0).Seconds()
		res.BytesPerSession, res.GoHeapPerSession, res.CHeapPerSession = float64(per.RSS), float64(per.GoHeap), float64(per.CHeap)
	}
	return []Result{res}, nil
}

// cLimit measures OpenSSL's limit in C for the case's key, with as many handshakes as the
// best tlszmq server of the round made in Duration (at least 50).
func (r *runner) cLimit(c benchCase) ([]Result, error) {
	key := keyName(c.ecdsa)
	count := max(int(r.best[roundKey{c.round, c.ecdsa}]*r.o.Duration.Seconds()), 50)
	pair, server, err := CLimit(r.f, c.ecdsa, count)
	if err != nil {
		return nil, fmt.Errorf("perf: the C limit, %s: %w", key, err)
	}
	both := Result{Pattern: Handshake, Transport: TLS, Suite: c.t.Suite, Round: c.round, Impl: "c-limit", Key: key,
		Count: count, Seconds: float64(count) / pair, MsgsPerS: pair}
	alone := both
	alone.Impl, alone.Seconds, alone.MsgsPerS = "c-limit-server", float64(count)/server, server
	return []Result{both, alone}, nil
}

func keyName(ecdsa bool) string {
	if ecdsa {
		return "ECDSA-P256"
	}
	return "RSA-2048"
}

// openLink connects a client and a server of transport t, a tlszmq server with the given
// workers.
func openLink(t Transport, pattern string, size, workers int, keysFor func(string, bool) (*Keys, error)) (link, error) {
	switch t.Name {
	case Plain, Curve:
		return newZMQLink(pattern, t.Name == Curve, size)
	case TLS:
		k, err := keysFor(t.Suite, false)
		if err != nil {
			return nil, err
		}
		return newTLSLink(k, pattern, size, workers)
	}
	return nil, fmt.Errorf("unknown transport %q", t.Name)
}

// measure runs the link for at least d after a warm-up, in batches that grow until one takes
// a sixteenth of d, and returns the messages it moved and the time they took; for round trips
// also the histogram of their durations.
func measure(l link, pattern string, size int, d time.Duration) (int, time.Duration, *latencies, error) {
	msg := make([]byte, size)
	rand.Read(msg)
	unit := 1
	var lat *latencies
	switch pattern {
	case Stream:
		_, unit = credit(size)
	case Roundtrip:
		lat = new(latencies)
	}
	if err := l.run(msg, unit); err != nil {
		return 0, 0, nil, err
	}
	total, n := 0, unit
	var elapsed time.Duration
	for elapsed < d {
		t0 := time.Now()
		var err error
		if lat != nil {
			err = timedRoundTrips(l, msg, n, lat)
		} else {
			err = l.run(msg, n)
		}
		if err != nil {
			return 0, 0, nil, err
		}
		took := time.Since(t0)
		total, elapsed = total+n, elapsed+took
		if took < d/16 {
			n *= 2
		}
	}
	return total, elapsed, lat, nil
}

// timedRoundTrips makes n round trips one at a time and counts each one's duration in lat.
func timedRoundTrips(l link, msg []byte, n int, lat *latencies) error {
	last := time.Now()
	for range n {
		if err := l.run(msg, 1); err != nil {
			return err
		}
		now := time.Now()
		lat.add(now.Sub(last))
		last = now
	}
	return nil
}
