package tlszmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq/internal/notice"
	"github.com/tlszmq/tlszmq/internal/zmqpoll"
)

// handlerSlice is how many of one session's messages the handler takes in a row before the
// other sessions get their turn.
const handlerSlice = 64

// Handler answers one request. It runs on the server's goroutine, one request at a time: keep
// it short. The reply goes back to the peer; a nil reply with a nil error sends nothing back
// but the TLS bytes owed (REQ peers then get an empty frame, keeping their lock-step). An error
// is logged and treated like a nil reply, except ErrDeferred. A Client's Request matches
// replies by their order, so a server that answers some messages with nothing suits Send and
// Recv, not Request over DEALER (see Client.Request).
type Handler func(ctx context.Context, peer *Peer, request [][]byte) (reply [][]byte, err error)

// ErrDeferred is returned by a Handler that will answer later, with Server.Reply, for example
// once a backend has answered. Until then the frame's other output (session tickets, earlier
// replies) is held back, so that a lock-step peer gets everything in one reply.
var ErrDeferred = errors.New("tlszmq: reply deferred")

// PollItem is another socket that Serve polls beside its own; Ready runs on the server's
// goroutine whenever the socket has a message, and may call Server.Reply.
type PollItem struct {
	Socket *zmq.Socket
	Ready  func(ctx context.Context)
}

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
	// The handler takes 64 of one session's messages in a row, then the other sessions have
	// their turn; frames that come meanwhile wait, undecrypted, within MaxMessageSize.
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
	// Logger receives one line per removed session and per dropped message
	// (default slog.Default()).
	Logger *slog.Logger
	// Poll lists other sockets for Serve to poll on its goroutine.
	Poll []PollItem
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
type Server struct {
	ctx      *Context
	endpoint string
	handler  Handler
	opts     ServerOptions
	log      *slog.Logger
	sock     *zmq.Socket
	table    *sessionTable
	hellos   *helloTable
	stats    stats
	scratch  []byte             // the framed encoding of one reply, reused (Serve's goroutine only)
	frames   [][]byte           // the message being received, reused (Serve's goroutine only)
	ready    []*session         // sessions with messages waiting for the handler, in turn
	outboxes map[string]*outbox // by connection: what waits for ZeroMQ to take it
	blocked  []*outbox          // the outboxes holding replies
	maxFrame int                // the largest ZeroMQ frame accepted (ZMQ_MAXMSGSIZE)

	dropLogged    time.Time // when a dropped message was last logged
	dropsUnlogged int       // messages dropped since

	mu       sync.Mutex
	started  bool // Serve has run, or Close has closed the socket without it
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

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
	if err != nil {
		if sock != nil {
			sock.Close()
		}
		return nil, fmt.Errorf("tlszmq: server %s: %w", endpoint, err)
	}
	if !o.Connect {
		if last, err := sock.GetLastEndpoint(); err == nil {
			endpoint = last
		}
	}
	return &Server{ctx: ctx, endpoint: endpoint, handler: handler, opts: o, log: o.Logger, sock: sock,
		table: newSessionTable(), hellos: newHelloTable(), outboxes: map[string]*outbox{}, stop: make(chan struct{}), done: make(chan struct{}),
		maxFrame: frameLimit(o.MaxMessageSize)}, nil
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
// established session, closes the socket and returns nil. Serve runs once: a second call, or a
// call after Close, returns ErrClosed.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return fmt.Errorf("tlszmq: server %s: %w", s.endpoint, ErrClosed)
	}
	s.started = true
	s.mu.Unlock()
	defer close(s.done)
	poller := zmq.NewPoller()
	poller.Add(s.sock, zmq.POLLIN)
	for _, item := range s.opts.Poll {
		poller.Add(item.Socket, zmq.POLLIN)
	}
	for {
		select {
		case <-ctx.Done():
			return s.shutdown()
		case <-s.stop:
			return s.shutdown()
		default:
		}
		// Sessions with work waiting are not kept waiting for the socket.
		wait := pollSlice
		switch {
		case len(s.ready) > 0:
			wait = 0
		case len(s.blocked) > 0:
			wait = time.Millisecond
		}
		polled, err := zmqpoll.Poll(poller, wait)
		if err != nil {
			s.shutdown()
			return fmt.Errorf("tlszmq: server %s: polling: %w", s.endpoint, err)
		}
		for _, p := range polled {
			if p.Socket != s.sock {
				for _, item := range s.opts.Poll {
					if item.Socket == p.Socket {
						item.Ready(ctx)
					}
				}
				continue
			}
			// Take what is queued, a bounded batch, before looking at the clock again.
			for range 256 {
				frames, err := s.recv()
				if err != nil {
					break
				}
				if frames != nil {
					s.handle(ctx, frames)
					clear(frames) // the reused array must not keep this message's parts alive
				}
			}
		}
		s.unblock()
		s.runReady(ctx)
		s.expire(time.Now())
	}
}

// recv takes one message off the socket, part by part, within the envelope budgets (see
// envelopeBudget; the payload frame's own limit is ZeroMQ's, set from MaxMessageSize). A
// message past them is taken to its end and dropped, its parts no longer kept; recv then
// returns nil frames. An error means nothing was waiting.
func (s *Server) recv() ([][]byte, error) {
	part, err := s.sock.RecvBytes(zmq.DONTWAIT)
	if err != nil {
		return nil, err
	}
	b := envelopeBudget{frames: s.opts.MaxEnvelopeFrames, bytes: s.maxFrame + s.opts.MaxEnvelopeFrames*maxEnvelopeFrame}
	frames := s.frames[:0]
	if b.add(part) {
		frames = append(frames, part)
	}
	for {
		more, err := s.sock.GetRcvmore()
		if err != nil || !more {
			break
		}
		if part, err = s.sock.RecvBytes(0); err != nil {
			break
		}
		if b.add(part) {
			frames = append(frames, part)
		}
	}
	s.frames = frames[:0]
	if b.err == nil {
		return frames, nil
	}
	s.drop(frames, b.err)
	clear(frames)
	return nil, nil
}

// drop counts a message dropped before any session and logs it, one line a second at most
// (with the number of drops it stands for): a flood of bad messages must not flood the log.
func (s *Server) drop(frames [][]byte, why error) {
	s.stats.dropped.Add(1)
	s.dropsUnlogged++
	if now := time.Now(); now.Sub(s.dropLogged) >= time.Second {
		s.log.Warn("tlszmq: message dropped", "server", s.endpoint, "frames", len(frames), "reason", why,
			"dropped since the last line", s.dropsUnlogged)
		s.dropLogged, s.dropsUnlogged = now, 0
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
		return s.sock.Close()
	}
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

// handle takes one message from the ROUTER socket.
func (s *Server) handle(ctx context.Context, frames [][]byte) {
	env, payload, err := splitEnvelope(frames)
	if err != nil {
		s.drop(frames, err)
		return
	}
	if len(payload) == 0 {
		// An empty frame (a device's announcement, a probe): no session is made for it.
		return
	}
	s.stats.bytesIn.Add(int64(len(payload)))
	now := time.Now()
	key := routeKey(env)
	sess := s.table.get(key)
	if sess != nil && sess.e.HandshakeComplete() && isClientHello(payload) {
		s.remove(sess, "a new ClientHello: the client started over")
		sess = nil
	}
	if sess == nil {
		if payload = s.hello(key, env, payload, now); payload == nil {
			return
		}
		if sess, err = s.newSession(key, env, now); err != nil {
			s.log.Error("tlszmq: no session", "server", s.endpoint, "peer", printable(env[len(env)-1]), "reason", err)
			return
		}
		s.table.touch(sess, now)
		s.feed(ctx, sess, payload, true)
		return
	}
	s.table.touch(sess, now)
	if sess.turn {
		// Its messages wait for their turn with the handler: the frame waits behind them,
		// undecrypted, within MaxMessageSize.
		sess.frames = append(sess.frames, payload)
		if sess.held += len(payload); sess.held > s.maxFrame {
			s.fail(sess, overBudget("MaxMessageSize", "more than %d bytes of frames waiting for the handler", s.maxFrame))
		}
		return
	}
	s.feed(ctx, sess, payload, false)
}

// hello decides what a frame from a peer without a session starts: it returns the bytes to
// begin a session with, or nil when there is none to begin (the frame does not start a
// ClientHello: nothing is kept; or the ClientHello's first record has not all come: its bytes
// wait, up to helloHold, without an engine). A lock-step peer gets an empty answer.
func (s *Server) hello(key string, env [][]byte, payload []byte, now time.Time) []byte {
	since := now
	if h := s.hellos.byKey[key]; h != nil {
		s.hellos.remove(h)
		if !isClientHello(payload) { // else the client started over
			payload, since = append(h.buf, payload...), h.since // the clock runs from the first piece
		}
	}
	if !couldStartClientHello(payload) {
		// No session for what cannot begin one, so that stray or forged frames cost nothing.
		// TLS records get the alert a fresh engine would send them, without one: a client
		// whose session the server has forgotten (idle, evicted, a restart) learns it and
		// starts over. Anything else gets an empty answer, for a lock-step peer. Both are
		// best effort: a route that is gone or full gets nothing.
		s.drop(env, errNoSession)
		var answer []byte
		if looksLikeRecord(payload) {
			answer = unexpectedMessageAlert
		}
		s.send(env, answer)
		return nil
	}
	if !helloIncomplete(payload) || len(payload) > helloHold {
		return payload
	}
	s.makeHalfOpenRoom()
	s.hellos.add(&partialHello{key: key, route: copyRoute(env), buf: append([]byte(nil), payload...), since: since})
	s.send(env, nil) // a lock-step peer's answer, best effort
	return nil
}

// errNoSession is the reason a frame from a route without a session is dropped.
var errNoSession = errors.New("no session, and the payload does not start a ClientHello")

// copyRoute copies an envelope out of the received message, whose frames are not kept.
func copyRoute(env [][]byte) [][]byte {
	route := make([][]byte, len(env))
	for i, f := range env {
		route[i] = append([]byte(nil), f...)
	}
	return route
}

// makeHalfOpenRoom ends the oldest partial ClientHello, or else the oldest half-open session,
// while MaxHalfOpen is reached.
func (s *Server) makeHalfOpenRoom() {
	for s.table.halfOpen()+s.hellos.len() >= s.opts.MaxHalfOpen {
		reason := fmt.Sprintf("too many half-open sessions: the oldest makes room (MaxHalfOpen %d)", s.opts.MaxHalfOpen)
		s.stats.handshakesFailed.Add(1)
		if h := s.hellos.oldest(); h != nil {
			s.dropHello(h, reason)
			continue
		}
		s.remove(s.table.oldestHandshake(), reason)
	}
}

// dropHello forgets a partial ClientHello.
func (s *Server) dropHello(h *partialHello, reason string) {
	s.hellos.remove(h)
	s.log.Info("tlszmq: session removed", "server", s.endpoint, "peer", printable(h.route[len(h.route)-1]), "reason", reason)
	if notice.Capable(h.route) {
		s.send(h.route, notice.Payload(reason)) // best effort: it holds no TLS bytes to follow
	}
}

// feed runs a session's engine on one frame and hands what it completes to the handler.
func (s *Server) feed(ctx context.Context, sess *session, payload []byte, fresh bool) {
	sess.owed = true
	var err error
	wasDone := sess.e.HandshakeComplete()
	if wasDone && sess.framed {
		err = sess.deframer.put(sess.e, payload) // decrypted where it lies: the frame is ours
	} else {
		err = sess.e.PutData(payload)
	}
	if err != nil {
		if !wasDone && !fresh && isClientHello(payload) {
			// A client that restarted mid-handshake: start over with this ClientHello.
			key, route, now := sess.key, sess.peer.Route, time.Now()
			s.remove(sess, "a new ClientHello during the handshake: the client started over")
			if sess, err = s.newSession(key, route, now); err != nil {
				s.log.Error("tlszmq: no session", "server", s.endpoint, "peer", printable(route[len(route)-1]), "reason", err)
				return
			}
			s.table.touch(sess, now)
			sess.owed = true
			err = sess.e.PutData(payload)
		}
		if err != nil {
			if !wasDone {
				s.stats.handshakesFailed.Add(1)
			}
			s.fail(sess, err)
			return
		}
	}
	if !wasDone && sess.e.HandshakeComplete() {
		s.established(sess)
	}
	if err := s.receive(sess); err != nil {
		s.fail(sess, err)
		return
	}
	if sess.e.PeerClosed() {
		// The last messages are answered, all of them (one frame's worth), before the
		// close_notify that goes out with their replies.
		if s.handleMessages(ctx, sess, len(sess.inbox)) {
			sess.e.Shutdown()
			s.reply(sess)
			s.remove(sess, "close_notify received")
		}
		return
	}
	s.answer(ctx, sess)
}

// startsClientHello reports whether a payload can start a TLS session: a handshake record
// (type 22, version 3.x) whose first message is a ClientHello (type 1), or an SSLv2-format
// ClientHello (a 2-byte length with the top bit set, type 1, version 3.x), which OpenSSL
// judges itself.
func startsClientHello(p []byte) bool {
	return len(p) >= 6 && p[0] == 22 && p[1] == 3 && p[5] == 1 ||
		len(p) >= 4 && p[0]&0x80 != 0 && p[2] == 1 && p[3] == 3
}

// couldStartClientHello reports whether a payload starts a ClientHello, or is too short to
// tell and could (a first piece cut short, as a TCP bridge may send it).
func couldStartClientHello(p []byte) bool {
	return startsClientHello(p) || len(p) < 6 && p[0] == 22 && (len(p) < 2 || p[1] == 3)
}

// looksLikeRecord reports whether a payload starts with a TLS record header: a known content
// type (20 to 24) and version 3.x.
func looksLikeRecord(p []byte) bool {
	return len(p) >= 5 && p[0] >= 20 && p[0] <= 24 && p[1] == 3
}

// unexpectedMessageAlert is the record a fresh OpenSSL server engine sends for a TLS record
// that cannot start a handshake: a plaintext fatal unexpected_message alert.
var unexpectedMessageAlert = []byte{21, 3, 3, 0, 2, 2, 10}

func (s *Server) newSession(key string, env [][]byte, now time.Time) (*session, error) {
	s.makeHalfOpenRoom()
	e, err := newEngine(s.ctx, RoleServer, "", "")
	if err != nil {
		return nil, err
	}
	route := copyRoute(env)
	sess := &session{key: key, e: e, created: now, lastSeen: now,
		peer: Peer{Identity: route[len(route)-1], Route: route}}
	sess.peer.sess = sess
	sess.deframer = deframer{max: s.opts.MaxMessageSize, maxParts: s.opts.MaxParts, maxMsgs: s.opts.MaxMessagesPerFrame}
	sess.out = s.outboxFor(route)
	sess.out.sessions[sess] = struct{}{}
	s.table.add(sess)
	s.stats.sessions.Add(1)
	return sess, nil
}

func (s *Server) established(sess *session) {
	for s.table.len()-s.table.halfOpen() >= s.opts.MaxSessions {
		s.remove(s.table.oldest(), fmt.Sprintf("the session table is full: least recently used (MaxSessions %d)", s.opts.MaxSessions))
	}
	s.table.established(sess)
	s.stats.handshakesDone.Add(1)
	st := sess.e.ConnectionState()
	sess.framed = st.NegotiatedProtocol == ProtocolFramed
	sess.peer.Certificates = st.PeerCertificates
	sess.peer.Verified = st.Verified
	sess.peer.Version = st.Version
	sess.peer.CipherSuite = st.CipherSuite
}

// receive moves the messages a frame completed into the session's inbox: at most
// MaxMessagesPerFrame of them (the deframer counts), and the inbox is empty before, since a
// session's frames wait while its messages do (see handle).
func (s *Server) receive(sess *session) error {
	switch {
	case sess.framed:
		if !sess.e.CanRecv() && len(sess.deframer.pending) == 0 {
			return nil
		}
		msgs, err := sess.deframer.take(sess.e)
		if err != nil {
			return err
		}
		sess.inbox = append(sess.inbox, msgs...)
	case sess.e.CanRecv():
		plain, err := sess.e.Read()
		if err != nil {
			return err
		}
		sess.inbox = append(sess.inbox, [][]byte{plain})
	}
	return nil
}

// answer passes up to handlerSlice of the session's waiting messages to the handler and
// writes the replies; a session with more waiting takes its next turn after the others (see
// runReady). Once nothing waits and no request is deferred, the replies go out in one frame.
func (s *Server) answer(ctx context.Context, sess *session) {
	if !s.handleMessages(ctx, sess, handlerSlice) {
		return
	}
	if len(sess.inbox) > 0 {
		sess.turn = true
		s.ready = append(s.ready, sess)
		return
	}
	sess.inbox = nil
	if sess.deferred == 0 && sess.owed && s.replyOrRemove(sess) != nil {
		return
	}
	if len(sess.frames) > 0 {
		sess.turn = true // the frames that came meanwhile, one a turn
		s.ready = append(s.ready, sess)
	}
}

// handleMessages passes up to n of the session's waiting messages to the handler and writes
// the replies into the session. It reports whether the session lives on.
func (s *Server) handleMessages(ctx context.Context, sess *session, n int) bool {
	n = min(len(sess.inbox), n)
	for i := range n {
		msg := sess.inbox[i]
		sess.inbox[i] = nil
		s.stats.messagesIn.Add(1)
		reply, err := s.handler(ctx, &sess.peer, msg)
		if sess.gone {
			return false // the handler's Reply ended the session
		}
		if errors.Is(err, ErrDeferred) {
			sess.deferred++
			continue
		}
		if err != nil {
			s.log.Warn("tlszmq: handler failed", "server", s.endpoint, "peer", sess.peer.String(), "reason", err)
			continue
		}
		if err := s.write(sess, reply); err != nil {
			s.fail(sess, err)
			return false
		}
		if err := s.checkHeld(sess); err != nil {
			s.fail(sess, err)
			return false
		}
	}
	sess.inbox = sess.inbox[n:]
	return true
}

// checkHeld bounds the replies a session holds back while a deferred request waits (they go
// out with its answer, in one frame): MaxPendingOutput beyond the largest message.
func (s *Server) checkHeld(sess *session) error {
	if limit := s.opts.MaxPendingOutput + s.maxFrame; sess.deferred > 0 && sess.e.out.Len() > limit {
		return overBudget("MaxPendingOutput", "more than %d bytes of replies held back behind a deferred request", limit)
	}
	return nil
}

// runReady gives each session with messages or frames still waiting its next turn.
func (s *Server) runReady(ctx context.Context) {
	ready := s.ready
	s.ready = nil
	for _, sess := range ready {
		sess.turn = false
		switch {
		case sess.gone:
		case len(sess.inbox) == 0 && len(sess.frames) > 0:
			frame := sess.frames[0]
			sess.frames[0] = nil
			sess.frames = sess.frames[1:]
			sess.held -= len(frame)
			s.feed(ctx, sess, frame, false)
		default:
			s.answer(ctx, sess)
		}
	}
}

// write encrypts one reply into the session's output.
func (s *Server) write(sess *session, reply [][]byte) error {
	if reply == nil {
		return nil
	}
	var err error
	if sess.framed {
		s.scratch, err = writeFramed(sess.e, s.scratch, reply)
	} else {
		var one []byte
		for _, p := range reply {
			one = append(one, p...)
		}
		if len(one) == 0 {
			return nil // the raw format has no empty message
		}
		_, err = sess.e.Write(one)
	}
	if err == nil {
		s.stats.messagesOut.Add(1)
	}
	return err
}

// Reply answers a request whose Handler returned ErrDeferred. It must be called on the
// server's goroutine (from a Handler or a PollItem's Ready). Once every deferred request of a
// session is answered, what the session holds goes out in one frame. It fails if the session
// is gone (closed, timed out, evicted).
func (s *Server) Reply(peer *Peer, reply [][]byte) error {
	sess := peer.sess
	if sess == nil || sess.gone || sess.deferred == 0 {
		return fmt.Errorf("tlszmq: reply to %s: no deferred request of a live session", peer)
	}
	sess.deferred--
	if err := s.write(sess, reply); err != nil {
		s.fail(sess, err)
		return err
	}
	if err := s.checkHeld(sess); err != nil {
		s.fail(sess, err)
		return err
	}
	if sess.deferred == 0 && len(sess.inbox) == 0 {
		return s.replyOrRemove(sess)
	}
	return nil
}

// fail ends a session after an error: the TLS bytes it owes the peer (an alert) go out first,
// and a peer that went past a budget gets close_notify.
func (s *Server) fail(sess *session, err error) {
	if errors.Is(err, errBudget) && sess.e.HandshakeComplete() && sess.e.Err() == nil {
		sess.e.Shutdown() // a budget of the server's: the engine's own send their alert
	}
	s.reply(sess)
	s.remove(sess, err.Error())
	if isBudget(err) {
		s.stats.budget.Add(1) // after the log line: whoever sees the counter finds the line
	}
}

// reply sends one message to the session's peer: the whole envelope, the delimiter and what
// the engine has for the network (possibly nothing, so that a lock-step peer gets its answer),
// all in one call, so that no half-sent envelope is ever left behind. What ZeroMQ cannot take
// now (the peer does not read) waits in the connection's outbox, in order, within
// MaxPendingOutput.
func (s *Server) reply(sess *session) error {
	sess.owed = false
	n, err := sess.e.sendData(func(out []byte) error { return s.deliver(sess.out, sess.peer.Route, out) })
	if n == 0 && err == nil {
		err = s.deliver(sess.out, sess.peer.Route, nil) // a lock-step peer's answer, empty
	}
	s.stats.bytesOut.Add(int64(n))
	return err
}

// replyOrRemove replies, and removes the session if the reply could not be sent: a TLS
// stream with a piece missing cannot go on (the peer would fail its next record's MAC), so
// the session ends here, with a log line saying why, instead of later with a puzzle.
func (s *Server) replyOrRemove(sess *session) error {
	err := s.reply(sess)
	if err != nil {
		s.unsendable(sess, err)
	}
	return err
}

// send sends route, the delimiter and payload as one message without waiting. Only the first
// part can fail (no route to the peer, or its queue is full), and then nothing is queued:
// ZeroMQ takes the rest of a message whose first part it has taken.
func (s *Server) send(route [][]byte, payload []byte) error {
	for _, f := range route {
		if _, err := s.sock.SendBytes(f, zmq.SNDMORE|zmq.DONTWAIT); err != nil {
			return err
		}
	}
	if _, err := s.sock.SendBytes(nil, zmq.SNDMORE|zmq.DONTWAIT); err != nil {
		return err
	}
	_, err := s.sock.SendBytes(payload, zmq.DONTWAIT)
	return err
}

// remove drops a session, logging why. A peer that takes end-of-session notices (package
// internal/notice) learns it after the session's last TLS bytes.
func (s *Server) remove(sess *session, reason string) {
	s.table.remove(sess)
	sess.gone = true
	sess.e.Close()
	// The line first, the counters after: whoever sees the counters move finds the line.
	s.log.Info("tlszmq: session removed", "server", s.endpoint, "peer", sess.peer.String(), "reason", reason)
	s.stats.sessions.Add(-1)
	s.stats.removed.Add(1)
	if notice.Capable(sess.peer.Route) {
		// After its last TLS bytes; a connection past its budget ends anyway.
		s.deliver(sess.out, sess.peer.Route, notice.Payload(reason))
	}
	sess.inbox, sess.frames = nil, nil
	o := sess.out
	delete(o.sessions, sess)
	if len(o.sessions) == 0 && !o.blocked {
		delete(s.outboxes, o.id)
	}
}

// releaseAfter is how long a session stays quiet before the server lets its buffers go
// (Engine.ReleaseBuffers): long enough that a busy session keeps them between messages.
const releaseAfter = time.Second

// expire removes sessions whose handshake or idle time is up, and lets the buffers of
// sessions that have gone quiet go.
func (s *Server) expire(now time.Time) {
	for sess := s.table.quiet(now.Add(-releaseAfter)); sess != nil; sess = s.table.quiet(now.Add(-releaseAfter)) {
		sess.e.ReleaseBuffers()
	}
	for sess := s.table.oldestHandshake(); sess != nil && now.Sub(sess.created) > s.opts.HandshakeTimeout; sess = s.table.oldestHandshake() {
		s.stats.handshakesFailed.Add(1)
		s.remove(sess, fmt.Sprintf("handshake not finished within %v", s.opts.HandshakeTimeout))
	}
	for h := s.hellos.oldest(); h != nil && now.Sub(h.since) > s.opts.HandshakeTimeout; h = s.hellos.oldest() {
		s.stats.handshakesFailed.Add(1)
		s.dropHello(h, fmt.Sprintf("ClientHello not complete within %v", s.opts.HandshakeTimeout))
	}
	for sess := s.table.oldest(); sess != nil && now.Sub(sess.lastSeen) > s.opts.IdleTimeout; sess = s.table.oldest() {
		s.remove(sess, fmt.Sprintf("idle for %v", s.opts.IdleTimeout))
	}
}

// shutdown sends close_notify to every established session, ends the half-open ones and
// closes the socket.
func (s *Server) shutdown() error {
	for sess := s.table.oldest(); sess != nil; sess = s.table.oldest() {
		if sess.e.HandshakeComplete() && sess.e.Err() == nil && sess.e.Shutdown() == nil {
			s.reply(sess)
		}
		s.remove(sess, "the server is stopping")
	}
	for sess := s.table.oldestHandshake(); sess != nil; sess = s.table.oldestHandshake() {
		s.remove(sess, "the server is stopping")
	}
	for h := s.hellos.oldest(); h != nil; h = s.hellos.oldest() {
		s.dropHello(h, "the server is stopping")
	}
	return s.sock.Close()
}
