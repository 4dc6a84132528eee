package perf

import "fmt"

// benchCase is one measurement of one round, as Run plans them.
type benchCase struct {
	round   int
	pattern string
	t       Transport // round trips, streaming and bulk streams (handshakes and memory: TLS 1.3)
	size    int       // round trips, streaming and bulk streams
	workers int       // the server's workers, in tlszmq cases; 0 otherwise
	clients int       // handshakes and bulk streams
	ecdsa   bool      // handshakes: the server's key
	kept    bool      // handshakes: over kept connections
	cLimit  bool      // handshakes: OpenSSL's limit in C, after the tlszmq cases of the key
	// sessions is the number of idle sessions of the memory measurement.
	sessions int
}

// plan lists what Run measures, in order: every case once per round, and every tlszmq case
// once per worker count, the counts of one case one after another.
func plan(o Options) []benchCase {
	var cases []benchCase
	tls13 := Transport{TLS, AES128GCM}
	for round := 1; round <= o.Rounds; round++ {
		for _, pattern := range o.Patterns {
			switch pattern {
			case Roundtrip, Stream, Streams:
				for _, t := range o.Transports {
					for _, size := range o.Sizes {
						for _, w := range workersOf(t, o.Workers) {
							c := benchCase{round: round, pattern: pattern, t: t, size: size, workers: w}
							if pattern == Streams {
								c.clients = o.Clients
							}
							cases = append(cases, c)
						}
					}
				}
			case Handshake:
				for _, ecdsa := range []bool{false, true} {
					for _, w := range o.Workers {
						for _, kept := range []bool{true, false} {
							cases = append(cases, benchCase{round: round, pattern: Handshake, t: tls13, workers: w,
								clients: o.Clients, ecdsa: ecdsa, kept: kept})
						}
					}
					cases = append(cases, benchCase{round: round, pattern: Handshake, t: tls13, ecdsa: ecdsa, cLimit: true})
				}
			case SessionMemory:
				for _, w := range o.Workers {
					cases = append(cases, benchCase{round: round, pattern: SessionMemory, t: tls13, workers: w, sessions: o.Sessions})
				}
			}
		}
	}
	return cases
}

// workersOf is the worker counts that a case of transport t runs with: workers for tlszmq,
// and 0 alone (none) for plain ZeroMQ and CURVE.
func workersOf(t Transport, workers []int) []int {
	if t.Name == TLS {
		return workers
	}
	return []int{0}
}

// String describes the case for a progress line.
func (c benchCase) String() string {
	s := fmt.Sprintf("round %d: ", c.round)
	switch c.pattern {
	case Handshake:
		if c.cLimit {
			return s + fmt.Sprintf("handshakes, %s, OpenSSL in plain C", keyName(c.ecdsa))
		}
		conns := map[bool]string{true: "kept", false: "new"}[c.kept]
		s += fmt.Sprintf("handshakes, %s, %d clients in another process, %s connections", keyName(c.ecdsa), c.clients, conns)
	case SessionMemory:
		s += fmt.Sprintf("%d idle sessions", c.sessions)
	case Streams:
		s += fmt.Sprintf("%s %s %s, %d clients in another process", c.pattern, shortName(c.t), SizeName(c.size), c.clients)
	default:
		s += fmt.Sprintf("%s %s %s", c.pattern, shortName(c.t), SizeName(c.size))
	}
	if c.workers > 0 {
		s += ", " + workersName(c.workers)
	}
	return s
}

// workersName is "1 worker" or "n workers".
func workersName(n int) string {
	if n == 1 {
		return "1 worker"
	}
	return fmt.Sprintf("%d workers", n)
}

// result is the Result of the case with what the case alone determines filled in.
func (c benchCase) result() Result {
	r := Result{Pattern: c.pattern, Transport: c.t.Name, Suite: c.t.Suite, Size: c.size, Round: c.round,
		Workers: c.workers, Clients: c.clients}
	if c.t.Name == TLS {
		r.Impl = "tlszmq"
	}
	if c.pattern == Handshake {
		r.Key = keyName(c.ecdsa)
		r.Connections = map[bool]string{true: "kept", false: "new"}[c.kept]
	}
	return r
}
