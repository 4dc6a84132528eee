// Package perf measures tlszmq beside plain ZeroMQ and ZeroMQ's own CURVE security, over
// tcp://127.0.0.1: lock-step round trips (REQ client, ROUTER server) with their latency
// percentiles, one-way streaming (DEALER to ROUTER with a credit window), bulk streaming by
// many clients into one server, handshakes per second on one server with many clients beside
// OpenSSL's limit in plain C, and the memory an idle session holds. Every tlszmq case runs once
// for each count of server workers it is given (tlszmq.ServerOptions.Workers).
//
// Round trips, streaming and memory run client and server in one process. The handshake and
// bulk streaming clients run in another process, a copy of the running executable (see
// RunChildIfAsked), so that their scheduling does not hide the server's cost and the server
// process's CPU time is the server's own. The `tlszmq bench` command and the package's go
// test benchmarks both run on it.
package perf

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Patterns, as the "pattern" field of a Result.
const (
	Roundtrip     = "roundtrip"
	Stream        = "stream"
	Handshake     = "handshake"
	SessionMemory = "session-memory"
	// Streams is many clients streaming into one server at once: bulk throughput.
	Streams = "streams"
)

// Transports, as the "transport" field of a Result.
const (
	Plain = "plain"
	Curve = "curve"
	TLS   = "tls"
)

// The TLS configurations measured: TLS 1.3 with each of its suites, and TLS 1.2 with the
// cipher the C++ peers negotiate.
const (
	AES128GCM  = "TLS_AES_128_GCM_SHA256"
	AES256GCM  = "TLS_AES_256_GCM_SHA384"
	ChaCha20   = "TLS_CHACHA20_POLY1305_SHA256"
	TLS12AES   = "ECDHE-RSA-AES128-GCM-SHA256"
	tls12Label = "TLS1.2 "
)

// Transport is one way of carrying messages: plain ZeroMQ, CURVE, or tlszmq with a suite.
type Transport struct {
	Name  string // Plain, Curve or TLS
	Suite string // for TLS: a TLS 1.3 suite, or TLS12AES
}

// String is "plain", "curve" or "tls " and the suite.
func (t Transport) String() string {
	if t.Suite == "" {
		return t.Name
	}
	return t.Name + " " + t.Suite
}

// Transports lists what the comparison covers, in the order of the table.
func Transports() []Transport {
	return []Transport{{Name: Plain}, {Name: Curve},
		{TLS, AES128GCM}, {TLS, AES256GCM}, {TLS, ChaCha20}, {TLS, TLS12AES}}
}

// Sizes are the message sizes of the round-trip and streaming measurements.
var Sizes = []int{64, 1 << 10, 16 << 10, 256 << 10, 1 << 20}

// Result is one measurement of one round, a line of the -json output.
type Result struct {
	Pattern   string `json:"pattern"`
	Transport string `json:"transport"`
	Suite     string `json:"suite"`
	Size      int    `json:"size"` // message size in bytes (0 for handshakes and sessions)
	Round     int    `json:"round"`
	// Impl is "tlszmq", or "c-limit" for OpenSSL's own figure in plain C (handshakes).
	Impl string `json:"impl,omitempty"`
	// Key is the server key of handshakes: "RSA-2048" or "ECDSA-P256".
	Key string `json:"key,omitempty"`
	// Workers is the server's worker count (tlszmq.ServerOptions.Workers) in tlszmq cases;
	// 0 (left out) for plain ZeroMQ, CURVE and OpenSSL in C.
	Workers int `json:"workers,omitempty"`
	// Clients is the number of client sessions of handshakes and bulk streams, which run in
	// another process than the server.
	Clients int `json:"clients,omitempty"`
	// Connections, for handshakes: "kept" (sessions one after another over each client's
	// ZeroMQ connection) or "new" (a new connection for every handshake).
	Connections string `json:"connections,omitempty"`
	// P50Micros and P99Micros are the median and 99th percentile of the round trips'
	// durations, in microseconds (round trips only).
	P50Micros float64 `json:"p50_us,omitempty"`
	P99Micros float64 `json:"p99_us,omitempty"`
	// ServerCPUSeconds is the CPU time, user and system, that the server's process used while
	// the handshakes or bulk stream's messages were counted (its clients run in another
	// process): Count divided by it is the server's rate per core, whatever its workers.
	ServerCPUSeconds float64 `json:"server_cpu_s,omitempty"`
	// ServerCPUMicrosPerHandshake is ServerCPUSeconds per handshake, in microseconds.
	ServerCPUMicrosPerHandshake float64 `json:"server_cpu_us_per_handshake,omitempty"`
	// Count is how many messages, handshakes or sessions were measured, in Seconds.
	Count   int     `json:"count"`
	Seconds float64 `json:"seconds"`

	MsgsPerS float64 `json:"msgs_per_s"` // messages (or handshakes) per second
	MBPerS   float64 `json:"mb_per_s"`   // payload megabytes (10^6) per second, one way

	// Session memory: the growth of the process's resident set, of the Go heap and of the
	// C heap (malloc's, where OpenSSL lives) per established idle session.
	BytesPerSession  float64 `json:"bytes_per_session"`
	GoHeapPerSession float64 `json:"go_heap_per_session,omitempty"`
	CHeapPerSession  float64 `json:"c_heap_per_session,omitempty"`
}

func rate(r *Result, count int, d time.Duration) {
	r.Count, r.Seconds = count, d.Seconds()
	if d > 0 {
		r.MsgsPerS = float64(count) / d.Seconds()
		r.MBPerS = r.MsgsPerS * float64(r.Size) / 1e6
	}
}

// WriteJSON writes r as one line of JSON.
func WriteJSON(w io.Writer, r Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
