package tlszmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq/internal/defaults"
	"github.com/tlszmq/tlszmq/internal/zapauth"
	"github.com/tlszmq/tlszmq/internal/zmqpoll"
)

// Handler answers one request. Handlers of different sessions run at the same time; one
// session's requests reach the handler one at a time, in order. A handler runs on its
// session's worker while it is quick; one that takes more than a millisecond leaves the
// worker to the other sessions, and its session's handler runs on a goroutine of its own from
// then on, so that a slow handler holds up its own session only. ctx is cancelled when the session ends or
// the server stops, and has a deadline with ServerOptions.HandlerTimeout. The reply goes back
// to the peer; a nil reply with a nil error sends nothing back
// but the TLS bytes owed (REQ peers then get an empty frame, keeping their lock-step). An error
// is logged and treated like a nil reply, except ErrDeferred. A Client's Request matches
// replies by their order, so a server that answers some messages with nothing suits Send and
// Recv, not Request over DEALER (see Client.Request).
type Handler func(ctx context.Context, peer *Peer, request [][]byte) (reply [][]byte, err error)

// ErrDeferred is returned by a Handler that will answer later, with Server.Reply (from any
// goroutine), for example once a backend has answered. Until then the frame's other output (session tickets, earlier
// replies) is held back, so that a lock-step peer gets everything in one reply.
var ErrDeferred = errors.New("tlszmq: reply deferred")

// SinglePart adapts a handler of one-part messages, the C++ peers' kind, to a Handler. A
// multi-part request reaches it joined into one part.
func SinglePart(h func(ctx context.Context, peer *Peer, request []byte) ([]byte, error)) Handler {
	return func(ctx context.Context, peer *Peer, request [][]byte) ([][]byte, error) {
		var req []byte
		if len(request) == 1 {
			req = request[0]
		} else {
			for _, p := range request {
				req = append(req, p...)
			}
		}
		reply, err := h(ctx, peer, req)
		if reply == nil || err != nil {
			return nil, err
		}
		return [][]byte{reply}, nil
	}
}

// ServerOptions tune a Server. The zero value is the C++ server's set-up: a ROUTER socket that
// binds, with the defaults below for session hygiene.
//
// The budgets bound what one peer can cost the server, whatever it sends: a peer that goes
// past one has its session ended (close_notify where the session is established, one log line
// with the reason naming the option), and no other session is touched. SECURITY.md lists them
// all in one table.
type ServerOptions struct {
	// Connect makes the server connect to the endpoint (a device's backend) instead of
	// binding it. Such a server announces itself to the device (ZMQ_PROBE_ROUTER) so that a
	// pinning tlsdevice can route to it.
	Connect bool
	// MaxSessions bounds the established sessions (default 10,000); the least recently used
	// one makes room for a session that completes its handshake.
	MaxSessions int
	// MaxHalfOpen bounds the sessions whose handshake has not finished (default 1,000): the
	// oldest of them makes room for a new one. A half-open session never pushes out an
	// established one, and one is made only for a payload that starts a TLS ClientHello.
	MaxHalfOpen int
	// HandshakeTimeout removes a session whose handshake has not finished in time
	// (default 10 s); IdleTimeout removes an established session that has been quiet
	// (default 5 min).
	HandshakeTimeout, IdleTimeout time.Duration
	// MaxMessageSize is the largest message accepted (default DefaultMaxMessageSize): a
	// ZeroMQ frame of TLS bytes, a whole framed message (all its parts with their headers,
	// each part costing at least 16 bytes), and the frames of one session waiting for the
	// handler. The envelope and payload of a ZeroMQ message must fit in it too.
	MaxMessageSize int
	// MaxParts bounds the parts of one framed message (default 1,024).
	MaxParts int
	// MaxMessagesPerFrame bounds the messages one incoming frame may deliver (default 1,024).
	// Frames that come while the handler has a session's messages wait, undecrypted, within
	// MaxMessageSize.
	MaxMessagesPerFrame int
	// MaxEnvelopeFrames bounds the envelope (the routing frames before the delimiter) of an
	// incoming message (default 16; each frame holds at most 255 bytes, libzmq's limit on a
	// routing id). A message past it is dropped while it is received, before any session.
	MaxEnvelopeFrames int
	// MaxPendingOutput bounds the bytes of replies waiting for a ZeroMQ connection that does
	// not read them (default 4 MiB): those the server holds and those ZeroMQ queues, for
	// every session behind the connection together; past it, those sessions end. Replies held
	// back while a deferred request waits may take MaxPendingOutput beyond the largest
	// message.
	MaxPendingOutput int
	// Workers is how many goroutines the sessions' TLS work is spread over (default
	// runtime.GOMAXPROCS(0)). A session stays on one worker for its whole life.
	Workers int
	// HandlerTimeout, if positive, is the deadline of the context each Handler call gets.
	// The context is cancelled anyway when the session ends or the server stops.
	HandlerTimeout time.Duration
	// Logger receives one line per completed handshake (INFO) and per failed one (WARN), per
	// removed session and per dropped message, each with the peer's identity and address. Nil:
	// the library logs nothing.
	Logger *slog.Logger
	// Allow and Deny restrict the peers by IP address: each entry is an address or a CIDR
	// prefix, IPv4 or IPv6 ("192.0.2.7", "10.0.0.0/8", "2001:db8::/32"). A non-empty Allow
	// admits only the addresses in it; Deny refuses the addresses in it, and wins over Allow
	// (Allow 10.0.0.0/8 with Deny 10.0.0.5 admits 10.0.0.0/8 but 10.0.0.5). A peer without an
	// IP address (ipc://) is in no list. ZeroMQ refuses the connection itself, before any
	// message, through its ZAP authentication: each refusal is counted (Counters.RefusedByList)
	// and logged (WARN, at most one line a second). The library runs the ZAP handler of its
	// ZeroMQ context (zmq4's default) while a server with lists is open, so an application
	// that runs its own there (zmq4.AuthStart) cannot use the lists: NewServer fails then.
	// The application's other sockets are not affected: the handler admits the peers of
	// sockets that are not a tlszmq server's (CURVE, PLAIN), as libzmq does when no handler
	// runs. An entry that is neither an address nor a prefix makes NewServer fail too.
	Allow, Deny []string
}

// Stats are a server's counters. They are safe to read from any goroutine. Counters has them
// by reason as well.
type Stats struct {
	Sessions         int64 // live sessions
	HandshakesDone   int64
	HandshakesFailed int64 // handshakes that did not finish: Counters.FailedByCause says why
	Removed          int64 // sessions removed, for any reason: Counters.RemovedByCause says which
	BytesIn          int64 // TLS bytes received
	BytesOut         int64 // TLS bytes sent
	MessagesIn       int64 // application messages received
	MessagesOut      int64 // application messages sent
	Dropped          int64 // ZeroMQ messages dropped as malformed or over budget
	BudgetExceeded   int64 // sessions ended because their peer went past a budget
	Refused          int64 // connections refused by ServerOptions.Allow or Deny: Counters.RefusedByList says which
}

// Counters are a server's totals by reason, beside its Stats: what package
// github.com/tlszmq/tlszmq/metrics exports to Prometheus. Every map holds each of its fixed
// set of keys, zero or not, so that a consumer sees the whole set from the start.
type Counters struct {
	Stats
	// HandshakesByVersion counts the completed handshakes by TLS version, as VersionName
	// names it: "TLS 1.2", "TLS 1.3".
	HandshakesByVersion map[string]int64
	// FailedByCause counts the handshakes that did not finish, by cause; the counts add up
	// to HandshakesFailed:
	//   - "timeout": not finished within ServerOptions.HandshakeTimeout (a ClientHello
	//     that never came whole included);
	//   - "alert_sent": the server rejected the peer with a TLS alert (no shared version or
	//     cipher, a malformed message, ...);
	//   - "alert_received": the peer rejected the server with a TLS alert (the client does
	//     not trust the server's certificate, ...);
	//   - "verify": the peer's certificate failed verification (mutual TLS), or
	//     Config.VerifyConnection refused the session;
	//   - "budget": the peer went past a budget (records, sizes) during the handshake;
	//   - "evicted": a newer half-open session took its place under MaxHalfOpen;
	//   - "other": any other error (an answer that could not be sent, ...).
	// A half-open session removed as the server stops counts under none.
	FailedByCause map[string]int64
	// RemovedByCause counts the removed sessions by cause; the counts add up to Removed:
	//   - "close_notify": the peer closed the session;
	//   - "idle": quiet for ServerOptions.IdleTimeout;
	//   - "handshake_timeout": the handshake did not finish within HandshakeTimeout;
	//   - "evicted": made room for a newer session (MaxSessions, least recently used; or
	//     MaxHalfOpen, oldest half-open first);
	//   - "restarted": the peer started a new handshake on its established session's route;
	//   - "budget": the peer went past a budget (BudgetExceeded counts these);
	//   - "unsendable": a reply could not be sent (the peer is gone);
	//   - "stopping": the server stopped;
	//   - "failed": a TLS error ended it (a failed handshake, a bad record, an alert).
	RemovedByCause map[string]int64
	// BudgetByKind counts the budget violations by the ServerOptions or Config field that
	// bounds them: "MaxMessageSize", "MaxParts", "MaxMessagesPerFrame", "MaxPendingOutput",
	// "MaxEnvelopeFrames", "MaxKeyUpdates", "MaxRecordsPerPump". It counts each session that
	// BudgetExceeded counts, and each message dropped for a budget before it reached a
	// session (an envelope past MaxEnvelopeFrames, say), which Dropped counts.
	BudgetByKind map[string]int64
	// RefusedByList counts the ZeroMQ connections refused by ServerOptions.Allow ("allow":
	// not in it) and Deny ("deny": in it); the counts add up to Refused. A refused peer
	// that reconnects is counted at each attempt.
	RefusedByList map[string]int64
	// HandshakeTime is how long the completed handshakes took, from the session's first
	// frame to the handshake's end as the socket-owning goroutine sees it.
	HandshakeTime DurationHistogram
}

// DurationHistogram is a distribution of durations in fixed buckets.
type DurationHistogram struct {
	// Bounds are the buckets' upper bounds (inclusive), ascending.
	Bounds []time.Duration
	// Counts holds one count per bucket, not cumulative: Counts[i] is the durations above
	// Bounds[i-1] and at most Bounds[i]; the last, Counts[len(Bounds)], those above every bound.
	Counts []int64
	// Count is the number of durations (the sum of Counts), Sum their total.
	Count int64
	Sum   time.Duration
}

// handshakeBuckets are the upper bounds of Counters.HandshakeTime's buckets: from a
// millisecond (a resumed session on loopback) to the default HandshakeTimeout.
var handshakeBuckets = [...]time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// durationHistogram is a DurationHistogram that one goroutine adds to and any reads.
type durationHistogram struct {
	mu     sync.Mutex
	counts [len(handshakeBuckets) + 1]int64
	sum    time.Duration
}

// observe adds one duration.
func (h *durationHistogram) observe(d time.Duration) {
	i := 0
	for i < len(handshakeBuckets) && d > handshakeBuckets[i] {
		i++
	}
	h.mu.Lock()
	h.counts[i]++
	h.sum += d
	h.mu.Unlock()
}

// snapshot returns a copy of the histogram.
func (h *durationHistogram) snapshot() DurationHistogram {
	out := DurationHistogram{Bounds: append([]time.Duration(nil), handshakeBuckets[:]...), Counts: make([]int64, len(h.counts))}
	h.mu.Lock()
	copy(out.Counts, h.counts[:])
	out.Sum = h.sum
	h.mu.Unlock()
	for _, n := range out.Counts {
		out.Count += n
	}
	return out
}

// tlsVersions are the versions Counters.HandshakesByVersion counts by; any other counts as
// "other".
var tlsVersions = [...]uint16{VersionTLS12, VersionTLS13}

// stats are a server's counters. The socket owner (Serve's goroutine) keeps most of them, the
// workers a few (handshakesDone, bytesOut, messagesIn, messagesOut); any goroutine reads them.
type stats struct {
	sessions, handshakesDone                                    atomic.Int64
	bytesIn, bytesOut, messagesIn, messagesOut, dropped, budget atomic.Int64

	failed    [numFailCauses]atomic.Int64   // by cause: their sum is HandshakesFailed
	removed   [numRemoveCauses]atomic.Int64 // by cause: their sum is Removed
	budgetBy  [numBudgetKinds]atomic.Int64  // violations by the option that bounds them
	byVersion [len(tlsVersions) + 1]atomic.Int64
	hsTime    durationHistogram
}

// sum adds counters up.
func sum(cs []atomic.Int64) int64 {
	var n int64
	for i := range cs {
		n += cs[i].Load()
	}
	return n
}

// countVersion counts a completed handshake by its version.
func (st *stats) countVersion(v uint16) {
	i := 0
	for i < len(tlsVersions) && tlsVersions[i] != v {
		i++
	}
	st.byVersion[i].Add(1)
}

// Server is a TLS server over a ZeroMQ ROUTER socket: one engine per peer, keyed on the whole
// envelope (so it works through devices and hops, and two clients with one identity behind
// different hops never share a session), replies routed back along the envelope that came in,
// at most one reply frame for each frame received.
//
// One goroutine, Serve's, owns the socket: it takes the messages, keeps the session table and
// the budgets of the connections, and sends what goes out. The sessions' TLS work is spread
// over ServerOptions.Workers goroutines, each session on one of them for its whole life, and
// the handlers run on goroutines of their own.
type Server struct {
	ctx      *Context
	endpoint string
	handler  Handler
	opts     ServerOptions
	log      *slog.Logger
	stats    stats
	maxFrame int // the largest ZeroMQ frame accepted (ZMQ_MAXMSGSIZE)
	workers  []*worker
	events   *mailbox[event] // from the workers to the socket owner
	// queuedFrames and queuedBytes count the frames given to the workers and not yet
	// taken: past maxQueuedFrames or maxQueuedBytes a worker, the socket owner leaves the
	// next ones in ZeroMQ's queue, so that the workers' backlog (and a session's wait for
	// its handshake) stays short and its memory bounded.
	queuedFrames, queuedBytes atomic.Int64

	// Serve's goroutine's (the socket owner's).
	sock          *zmq.Socket
	waiter        *zmqpoll.Waiter // the socket's wait; its Wake is the workers' word that events wait
	backlog       bool            // the workers have enough to do: the socket is not read
	readable      bool            // the socket has a message (ownerReady's finding)
	sockErr       error           // why the socket can no longer be asked (ownerReady's finding)
	serveCtx      context.Context // the handlers' contexts derive from it
	table         *sessionTable
	hellos        *helloTable
	frames        [][]byte            // the message being received, reused
	pendingEvents []event             // the events being done, reused
	connAddr      string              // the peer address of the connection of the message being routed, if asked
	keyBuf        []byte              // the route key of the message being routed, reused
	outboxes      map[string]*outbox  // by connection: what waits for ZeroMQ to take it
	blocked       []*outbox           // the outboxes holding replies
	reasons       map[*session]string // why a notice-taking session was removed, for its notice
	dropLogged    time.Time           // when a dropped message was last logged
	dropsUnlogged int                 // messages dropped since
	zap           *zapauth.Policy     // ServerOptions.Allow and Deny, or nil

	mu       sync.Mutex
	started  bool // Serve has run, or Close has closed the socket without it
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// maxQueuedFrames and maxQueuedBytes bound, per worker, what the socket owner gives the
// workers ahead of their work (one frame goes whatever its size).
const (
	maxQueuedFrames = 64
	maxQueuedBytes  = 16 << 20
)

// NewServer binds (or connects) a ROUTER socket at endpoint with a server Context. Serve runs
// it. Each session's engine is made from ctx when the session's first frame comes: after
// ctx.Reload, new sessions use the new configuration and live ones keep theirs.
func NewServer(ctx *Context, endpoint string, handler Handler, opts *ServerOptions) (*Server, error) {
	if ctx.Role() != RoleServer {
		return nil, fmt.Errorf("%w: NewServer needs a server Context", ErrInvalidConfig)
	}
	if handler == nil {
		return nil, fmt.Errorf("%w: NewServer needs a handler", ErrInvalidConfig)
	}
	var o ServerOptions
	if opts != nil {
		o = *opts
	}
	defaults.Or(&o.MaxSessions, defaultMaxSessions)
	defaults.Or(&o.MaxHalfOpen, defaultMaxHalfOpen)
	defaults.Or(&o.MaxParts, defaultMaxParts)
	defaults.Or(&o.MaxMessagesPerFrame, defaultMaxMessagesPerFrame)
	defaults.Or(&o.MaxEnvelopeFrames, defaultMaxEnvelopeFrames)
	defaults.Or(&o.MaxPendingOutput, defaultMaxPendingOutput)
	defaults.Or(&o.MaxMessageSize, DefaultMaxMessageSize)
	defaults.Or(&o.HandshakeTimeout, 10*time.Second)
	defaults.Or(&o.IdleTimeout, 5*time.Minute)
	defaults.Or(&o.Workers, runtime.GOMAXPROCS(0))
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	policy, err := newZAPPolicy(o.Allow, o.Deny, o.Logger)
	if err != nil {
		return nil, err
	}
	sock, err := newSocket(zmq.ROUTER, "", o.MaxMessageSize)
	if err == nil && policy != nil {
		err = attachZAP(policy, sock) // before the socket binds or connects
	}
	if err == nil {
		// A reply to a peer that is gone fails instead of vanishing.
		err = sock.SetRouterMandatory(1)
	}
	if err == nil {
		// ZeroMQ's queue toward each peer is short, and counted in messages: what it cannot
		// take waits in the session's backlog, counted in bytes (MaxPendingOutput).
		err = sock.SetSndhwm(serverSendDepth)
	}
	if err == nil {
		if o.Connect {
			if err = sock.SetProbeRouter(1); err == nil {
				err = sock.Connect(endpoint)
			}
		} else {
			err = sock.Bind(endpoint)
		}
	}
	s := &Server{ctx: ctx, endpoint: endpoint, handler: handler, opts: o, log: o.Logger, sock: sock,
		table: newSessionTable(), hellos: newHelloTable(), outboxes: map[string]*outbox{}, reasons: map[*session]string{},
		events: newMailbox[event](), stop: make(chan struct{}), done: make(chan struct{}), maxFrame: frameLimit(o.MaxMessageSize)}
	if err == nil {
		s.waiter, err = zmqpoll.NewWaiter(sock)
	}
	if err != nil {
		if sock != nil {
			sock.Close()
		}
		policy.Release() // after the socket closed; nil without lists
		return nil, &OpError{Op: "serving", Endpoint: endpoint, Err: err}
	}
	if !o.Connect {
		if last, err := sock.GetLastEndpoint(); err == nil {
			s.endpoint = last
		}
	}
	if policy != nil {
		s.zap = policy
		policy.SetName(s.endpoint)
	}
	for i := range o.Workers {
		s.workers = append(s.workers, &worker{s: s, id: i, jobs: newMailbox[job](), done: make(chan struct{})})
	}
	return s, nil
}

// Endpoint returns the endpoint the server is bound to, with the port the system chose for
// "tcp://127.0.0.1:*".
func (s *Server) Endpoint() string { return s.endpoint }

// Stats returns a snapshot of the counters. It is cheap (a few atomic loads, no allocation):
// Counters has them by reason too.
func (s *Server) Stats() Stats {
	return Stats{
		Sessions: s.stats.sessions.Load(), HandshakesDone: s.stats.handshakesDone.Load(),
		HandshakesFailed: sum(s.stats.failed[:]), Removed: sum(s.stats.removed[:]),
		BytesIn: s.stats.bytesIn.Load(), BytesOut: s.stats.bytesOut.Load(),
		MessagesIn: s.stats.messagesIn.Load(), MessagesOut: s.stats.messagesOut.Load(),
		Dropped: s.stats.dropped.Load(), BudgetExceeded: s.stats.budget.Load(), Refused: zapauth.Total(s.zap.Refused()),
	}
}

// Counters returns a snapshot of the counters by reason, with the Stats. Each counter is read
// atomically, not all of them at one instant: a scrape may see a handshake counted done and
// not yet by version, for instance. It may be called from any goroutine, while Serve runs or
// after it returned.
func (s *Server) Counters() Counters {
	c := Counters{
		Stats:               s.Stats(),
		HandshakesByVersion: make(map[string]int64, len(tlsVersions)+1),
		FailedByCause:       make(map[string]int64, numFailCauses),
		RemovedByCause:      make(map[string]int64, numRemoveCauses),
		BudgetByKind:        make(map[string]int64, numBudgetKinds),
		RefusedByList:       make(map[string]int64, zapauth.NumLists),
		HandshakeTime:       s.stats.hsTime.snapshot(),
	}
	for i, v := range tlsVersions {
		c.HandshakesByVersion[VersionName(v)] = s.stats.byVersion[i].Load()
	}
	if n := s.stats.byVersion[len(tlsVersions)].Load(); n > 0 {
		c.HandshakesByVersion["other"] = n
	}
	for i := range s.stats.failed {
		c.FailedByCause[failCause(i).String()] = s.stats.failed[i].Load()
	}
	for i := range s.stats.removed {
		c.RemovedByCause[removeCause(i).String()] = s.stats.removed[i].Load()
	}
	for i := range s.stats.budgetBy {
		c.BudgetByKind[budgetKind(i).String()] = s.stats.budgetBy[i].Load()
	}
	for i, n := range s.zap.Refused() {
		c.RefusedByList[zapauth.List(i).String()] = n
	}
	return c
}

// Serve answers clients until ctx ends or Close is called. Then it sends close_notify to every
// established session, closes the socket and returns nil; the handlers still running have
// their contexts cancelled. Serve runs once: a second call, or a call after Close, returns
// ErrClosed.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return &OpError{Op: "serving", Endpoint: s.endpoint, Err: errServerClosed}
	}
	s.started = true
	s.mu.Unlock()
	defer close(s.done)
	serveCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.serveCtx = serveCtx
	for _, w := range s.workers {
		go w.loop()
	}
	maxFrames, maxBytes := int64(maxQueuedFrames*len(s.workers)), int64(maxQueuedBytes*len(s.workers))
	backlogged := func() bool { return s.queuedFrames.Load() >= maxFrames || s.queuedBytes.Load() >= maxBytes }
	ready := s.ownerReady                               // made once: a method value passed on each wait would be allocated
	stopWaking := context.AfterFunc(ctx, s.waiter.Wake) // a cancelled ctx ends the wait at once
	defer stopWaking()
	for {
		select {
		case <-ctx.Done():
			return s.shutdown()
		case <-s.stop:
			return s.shutdown()
		default:
		}
		wait := pollSlice
		if len(s.blocked) > 0 {
			wait = time.Millisecond
		}
		s.backlog = backlogged() // while the workers have enough to do, the socket waits
		if s.backlog {
			wait = time.Millisecond
		}
		// The workers' events wake the owner (Waiter.Wake); events put before it waits are
		// found by ownerReady, which runs after the waiter is armed.
		_, err := s.waiter.Wait(wait, ready)
		if err == nil && s.sockErr != nil {
			err = fmt.Errorf("the socket: %w", s.sockErr) // ZeroMQ's context terminated, say
		}
		if err != nil {
			s.shutdown()
			return &OpError{Op: "serving", Endpoint: s.endpoint, Err: fmt.Errorf("waiting for the socket: %w", err)}
		}
		if s.readable {
			// Take what is queued, a bounded batch, before looking at the clock again.
			for range 256 {
				if backlogged() {
					break
				}
				frames, err := s.recv()
				if err != nil {
					break
				}
				if frames != nil {
					s.route(frames)
					clear(frames) // the reused array must not keep this message's parts alive
				}
			}
		}
		s.takeEvents()
		s.unblock()
		s.expire(time.Now())
	}
}

// ownerReady is the socket owner's check before and during its wait: a message to read
// (unless the workers are backlogged), or events from the workers.
func (s *Server) ownerReady() bool {
	s.readable = false
	if !s.backlog {
		if s.readable, s.sockErr = zmqpoll.Readable(s.sock); s.sockErr != nil {
			return true
		}
	}
	return s.readable || s.events.waiting()
}

// Close stops Serve (from any goroutine) and waits for it to send close_notify to every
// session and return. A server that never served just closes its socket. Close is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.started {
		s.started = true
		s.mu.Unlock()
		s.stopOnce.Do(func() { close(s.stop); close(s.done) })
		for _, w := range s.workers {
			for _, j := range w.jobs.close() {
				w.refuse(j)
			}
		}
		s.waiter.Close()
		return s.closeSocket()
	}
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
	s.waiter.Wake()
	<-s.done
	return nil
}

// Reply answers a request whose Handler returned ErrDeferred. It may be called from any
// goroutine, a Handler's included: the reply goes to the session's worker, and Reply returns
// once it is written. Once every deferred request of a session is answered, what the session
// holds goes out in one frame. It fails if the session is gone (closed, timed out, evicted)
// or has no deferred request, or the server has stopped.
func (s *Server) Reply(peer *Peer, reply [][]byte) error {
	sess := peer.sess
	if sess == nil {
		return &OpError{Op: "reply to", Endpoint: peer.String(), Err: errors.New("not a peer of this server")}
	}
	if sess.w.s != s {
		return &OpError{Op: "reply to", Endpoint: peer.String(), Err: errors.New("a peer of another server")}
	}
	done := make(chan error, 1)
	if !sess.w.give(job{kind: jobReply, sess: sess, reply: reply, done: done}) {
		return &OpError{Op: "reply to", Endpoint: peer.String(), Err: errServerClosed}
	}
	sess.w.hurry() // a handler on the worker's goroutine may be the one waiting here
	return <-done
}

// shutdown sends close_notify to every established session, ends the half-open ones, lets the
// workers finish what they were given, sends what they leave and closes the socket.
func (s *Server) shutdown() error {
	for sess := s.table.oldest(); sess != nil; sess = s.table.oldest() {
		s.remove(sess, removedStopping, "the server is stopping", true)
	}
	for sess := s.table.oldestHandshake(); sess != nil; sess = s.table.oldestHandshake() {
		s.remove(sess, removedStopping, "the server is stopping", false)
	}
	for h := s.hellos.oldest(); h != nil; h = s.hellos.oldest() {
		s.dropHello(h, "the server is stopping")
	}
	for _, w := range s.workers {
		w.give(job{kind: jobQuit})
	}
	for _, w := range s.workers {
		<-w.done
	}
	s.takeEvents()
	s.unblock()
	s.waiter.Close()
	return s.closeSocket()
}
