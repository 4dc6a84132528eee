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
	// Logger receives one line per removed session and per dropped message
	// (default slog.Default()).
	Logger *slog.Logger
}

// Stats are a server's counters. They are safe to read from any goroutine.
type Stats struct {
	Sessions         int64 // live sessions
	HandshakesDone   int64
	HandshakesFailed int64
	Removed          int64 // sessions removed, for any reason
	BytesIn          int64 // TLS bytes received
	BytesOut         int64 // TLS bytes sent
	MessagesIn       int64 // application messages received
	MessagesOut      int64 // application messages sent
	Dropped          int64 // ZeroMQ messages dropped as malformed or over budget
	BudgetExceeded   int64 // sessions ended because their peer went past a budget
}

type stats struct {
	sessions, handshakesDone, handshakesFailed, removed         atomic.Int64
	bytesIn, bytesOut, messagesIn, messagesOut, dropped, budget atomic.Int64
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
	// queuedFrames counts the frames given to the workers and not yet taken: past
	// maxQueuedFrames the socket owner leaves the next ones in ZeroMQ's queue, so that
	// the workers' backlog (and a session's wait for its handshake) stays short.
	queuedFrames atomic.Int64

	// Serve's goroutine's (the socket owner's).
	sock          *zmq.Socket
	wake          *zmq.Socket // PULL: the workers' word that events wait
	wakeEndpoint  string
	serveCtx      context.Context // the handlers' contexts derive from it
	table         *sessionTable
	hellos        *helloTable
	frames        [][]byte            // the message being received, reused
	pendingEvents []event             // the events being done, reused
	gave          bool                // jobs were given to workers since the last poll
	outboxes      map[string]*outbox  // by connection: what waits for ZeroMQ to take it
	blocked       []*outbox           // the outboxes holding replies
	reasons       map[*session]string // why a notice-taking session was removed, for its notice
	dropLogged    time.Time           // when a dropped message was last logged
	dropsUnlogged int                 // messages dropped since

	mu       sync.Mutex
	started  bool // Serve has run, or Close has closed the socket without it
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// maxQueuedFrames is how many frames per worker the socket owner gives the workers ahead of
// their work.
const maxQueuedFrames = 64

// NewServer binds (or connects) a ROUTER socket at endpoint with a server Context. Serve runs
// it.
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
	orDefault(&o.MaxSessions, defaultMaxSessions)
	orDefault(&o.MaxHalfOpen, defaultMaxHalfOpen)
	orDefault(&o.MaxParts, defaultMaxParts)
	orDefault(&o.MaxMessagesPerFrame, defaultMaxMessagesPerFrame)
	orDefault(&o.MaxEnvelopeFrames, defaultMaxEnvelopeFrames)
	orDefault(&o.MaxPendingOutput, defaultMaxPendingOutput)
	orDefault(&o.MaxMessageSize, DefaultMaxMessageSize)
	orDefault(&o.HandshakeTimeout, 10*time.Second)
	orDefault(&o.IdleTimeout, 5*time.Minute)
	orDefault(&o.Workers, runtime.GOMAXPROCS(0))
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	sock, err := newSocket(zmq.ROUTER, "", o.MaxMessageSize)
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
		s.wakeEndpoint = fmt.Sprintf("inproc://tlszmq-server-wake-%p", s)
		if s.wake, err = zmq.NewSocket(zmq.PULL); err == nil {
			s.wake.SetLinger(0)
			err = s.wake.Bind(s.wakeEndpoint)
		}
	}
	if err != nil {
		if sock != nil {
			sock.Close()
		}
		if s.wake != nil {
			s.wake.Close()
		}
		return nil, &OpError{Op: "serving", Endpoint: endpoint, Err: err}
	}
	if !o.Connect {
		if last, err := sock.GetLastEndpoint(); err == nil {
			s.endpoint = last
		}
	}
	for i := range o.Workers {
		s.workers = append(s.workers, &worker{s: s, id: i, jobs: newMailbox[job](), done: make(chan struct{})})
	}
	return s, nil
}

// Endpoint returns the endpoint the server is bound to, with the port the system chose for
// "tcp://127.0.0.1:*".
func (s *Server) Endpoint() string { return s.endpoint }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Sessions: s.stats.sessions.Load(), HandshakesDone: s.stats.handshakesDone.Load(),
		HandshakesFailed: s.stats.handshakesFailed.Load(), Removed: s.stats.removed.Load(),
		BytesIn: s.stats.bytesIn.Load(), BytesOut: s.stats.bytesOut.Load(),
		MessagesIn: s.stats.messagesIn.Load(), MessagesOut: s.stats.messagesOut.Load(),
		Dropped: s.stats.dropped.Load(), BudgetExceeded: s.stats.budget.Load(),
	}
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
		go w.run(s.wakeEndpoint)
	}
	poller := zmq.NewPoller()
	poller.Add(s.sock, zmq.POLLIN)
	poller.Add(s.wake, zmq.POLLIN)
	wakeOnly := zmq.NewPoller() // while the workers have enough to do
	wakeOnly.Add(s.wake, zmq.POLLIN)
	maxQueued := int64(maxQueuedFrames * len(s.workers))
	for {
		select {
		case <-ctx.Done():
			return s.shutdown()
		case <-s.stop:
			return s.shutdown()
		default:
		}
		wait, p := pollSlice, poller
		if len(s.blocked) > 0 {
			wait = time.Millisecond
		}
		if s.queuedFrames.Load() >= maxQueued {
			wait, p = time.Millisecond, wakeOnly
		}
		if s.gave {
			// The workers given jobs are ready to run, likely queued on this goroutine's
			// processor, which a blocking poll (a cgo call) would hold for up to a
			// scheduler tick: let them start first.
			s.gave = false
			runtime.Gosched()
		}
		polled, err := zmqpoll.Poll(p, wait)
		if err != nil {
			s.shutdown()
			return &OpError{Op: "serving", Endpoint: s.endpoint, Err: fmt.Errorf("polling: %w", err)}
		}
		for _, p := range polled {
			if p.Socket == s.wake {
				for {
					if _, err := s.wake.RecvBytes(zmq.DONTWAIT); err != nil {
						break
					}
				}
				continue
			}
			// Take what is queued, a bounded batch, before looking at the clock again.
			for range 256 {
				if s.queuedFrames.Load() >= maxQueued {
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
		s.wake.Close()
		return s.sock.Close()
	}
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
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
		s.remove(sess, "the server is stopping", true)
	}
	for sess := s.table.oldestHandshake(); sess != nil; sess = s.table.oldestHandshake() {
		s.remove(sess, "the server is stopping", false)
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
	s.wake.Close()
	return s.sock.Close()
}
