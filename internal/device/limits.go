package device

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tlszmq/tlszmq/internal/defaults"
)

// Limits bound what one client, one connection or one backend can make a device hold, so that
// no client can crowd out another. A zero field takes its default; a client that goes past a
// limit loses its own request, pin or session, and the device logs one line naming the limit.
type Limits struct {
	// MaxClients bounds the clients pinned to a backend (pass with pin, terminate): past it
	// the least recently used client loses its pin. Default DefaultMaxClients.
	MaxClients int
	// MaxClientsPerConn bounds the clients pinned through one frontend connection (the
	// envelope's first frame: a client's own connection, or a hop that carries many clients):
	// past it that connection's least recently used client loses its pin, and no other
	// connection's. Raise it behind hops that carry more clients. Default
	// DefaultMaxClientsPerConn.
	MaxClientsPerConn int
	// MaxBackends bounds the backends (servers, workers) known: an announcement past it is
	// ignored, with a log line, until a known backend is found gone. Default
	// DefaultMaxBackends.
	MaxBackends int
	// MaxEnvelope bounds the frames of a client's envelope (its routing frames before the
	// delimiter). A message with more, or with a routing frame over MaxRoutingFrame bytes, is
	// dropped (terminate: the request is refused) with a log line. Default DefaultMaxEnvelope.
	MaxEnvelope int
	// MaxPending bounds the requests waiting for a worker's reply, all clients together
	// (terminate). Default DefaultMaxPending.
	MaxPending int
	// MaxPendingPerClient is one client's share: the requests one client may have waiting for
	// a worker (terminate) or queued for its upstream session (originate). A request past it,
	// or past MaxPending, is refused (no reply is sent for it), with one log line per client
	// until its queue has emptied. Default DefaultMaxPendingPerClient.
	MaxPendingPerClient int
	// MaxSessions bounds the upstream TLS sessions (originate), each one a goroutine and a
	// ZeroMQ socket: a new plaintext client takes the least recently used idle one's place, or
	// is refused while all are busy. Default DefaultMaxSessions.
	MaxSessions int
	// Timeout is how long a request waits for its worker's reply before the client gets an
	// empty answer (terminate), or for the upstream server's handshake and each reply
	// (originate). Default DefaultTimeout.
	Timeout time.Duration
	// IdleTimeout closes an upstream session unused for that long (originate): its goroutine
	// ends and its socket is closed, after close_notify. Default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Allow and Deny restrict the clients by IP address on the client-facing socket (pass:
	// the frontend ROUTER; originate: the plaintext frontend; terminate: the TLS server,
	// added to its ServerOptions.Allow and Deny), as tlszmq.ServerOptions.Allow and Deny do:
	// each entry is an address or a CIDR prefix, IPv4 or IPv6; a non-empty Allow admits only
	// the addresses in it, Deny refuses those in it and wins over Allow. ZeroMQ refuses the
	// connection before any message (ZAP, package internal/zapauth); each refusal is counted
	// and logged (WARN "tlszmq: connection refused", at most one line a second). Empty: every
	// client connects. A bad entry makes the constructor fail.
	Allow, Deny []string
}

// The defaults of Limits.
const (
	DefaultMaxClients          = 100000
	DefaultMaxClientsPerConn   = 1000
	DefaultMaxBackends         = 256
	DefaultMaxEnvelope         = 16
	DefaultMaxPending          = 100000
	DefaultMaxPendingPerClient = 64
	// DefaultMaxSessions stays well below ZeroMQ's default of 1,023 sockets per process.
	DefaultMaxSessions = 500
	DefaultTimeout     = 10 * time.Second
	DefaultIdleTimeout = 5 * time.Minute
)

// MaxRoutingFrame is the longest envelope frame honoured: ZeroMQ's longest routing id.
const MaxRoutingFrame = 255

// withDefaults returns l with every zero (or negative) field set to its default.
func (l Limits) withDefaults() Limits {
	defaults.Or(&l.MaxClients, DefaultMaxClients)
	defaults.Or(&l.MaxClientsPerConn, DefaultMaxClientsPerConn)
	defaults.Or(&l.MaxBackends, DefaultMaxBackends)
	defaults.Or(&l.MaxEnvelope, DefaultMaxEnvelope)
	defaults.Or(&l.MaxPending, DefaultMaxPending)
	defaults.Or(&l.MaxPendingPerClient, DefaultMaxPendingPerClient)
	defaults.Or(&l.MaxSessions, DefaultMaxSessions)
	defaults.Or(&l.Timeout, DefaultTimeout)
	defaults.Or(&l.IdleTimeout, DefaultIdleTimeout)
	return l
}

// checkEnvelope reports why an envelope is not honoured, or nil.
func (l Limits) checkEnvelope(env [][]byte) error { return CheckEnvelope(env, l.MaxEnvelope) }

// CheckEnvelope reports why an envelope (the routing frames before the delimiter) is not
// honoured: more than maxFrames frames (-max-envelope), or a frame over MaxRoutingFrame bytes;
// nil if it is.
func CheckEnvelope(env [][]byte, maxFrames int) error {
	if len(env) > maxFrames {
		return fmt.Errorf("%d envelope frames, more than the %d honoured (-max-envelope)", len(env), maxFrames)
	}
	for _, f := range env {
		if len(f) > MaxRoutingFrame {
			return fmt.Errorf("an envelope frame of %d bytes, more than %d", len(f), MaxRoutingFrame)
		}
	}
	return nil
}

// LogLimiter keeps a flood of one kind of event to one log line a second: the lines it holds
// back are counted in the next one it lets through ("suppressed"). Events are told apart by
// their message, which is a constant at every call site, so the limiter's table stays small.
// It is safe for concurrent use.
type LogLimiter struct {
	Log   *slog.Logger
	Every time.Duration // default one second

	mu   sync.Mutex
	seen map[string]*logSeen
}

type logSeen struct {
	last       time.Time
	suppressed int
}

// NewLogLimiter returns a limiter that writes to log (slog.Default() if nil).
func NewLogLimiter(log *slog.Logger) *LogLimiter { return &LogLimiter{Log: logger(log)} }

// Warn logs msg at WARN level unless a line with the same msg went out less than Every ago.
func (l *LogLimiter) Warn(msg string, args ...any) { l.log(slog.LevelWarn, msg, args) }

// Info is Warn at INFO level.
func (l *LogLimiter) Info(msg string, args ...any) { l.log(slog.LevelInfo, msg, args) }

func (l *LogLimiter) log(level slog.Level, msg string, args []any) {
	every := l.Every
	if every <= 0 {
		every = time.Second
	}
	now := time.Now()
	l.mu.Lock()
	if l.seen == nil {
		l.seen = map[string]*logSeen{}
	}
	s := l.seen[msg]
	if s == nil {
		s = &logSeen{}
		l.seen[msg] = s
	} else if now.Sub(s.last) < every {
		s.suppressed++
		l.mu.Unlock()
		return
	}
	n := s.suppressed
	s.last, s.suppressed = now, 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	l.Log.Log(context.Background(), level, msg, args...)
}
