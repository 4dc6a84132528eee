package tlszmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq/internal/zmqpoll"
)

// sendQueueDepth is the high-water mark of a server's, and a device's, ROUTER sockets: how
// many messages may wait for one peer (ZeroMQ's default is 1,000). A ROUTER drops a message
// beyond it, and a frame dropped from a TLS stream breaks the session.
const sendQueueDepth = 100000

// Handler answers one request. It runs on the server's goroutine, one request at a time: keep
// it short. The reply goes back to the peer; a nil reply with a nil error sends nothing back
// but the TLS bytes owed (REQ peers then get an empty frame, keeping their lock-step). An error
// is logged and treated like a nil reply, except ErrDeferred.
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
type ServerOptions struct {
	// Connect makes the server connect to the endpoint (a device's backend) instead of
	// binding it. Such a server announces itself to the device (ZMQ_PROBE_ROUTER) so that a
	// pinning tlsdevice can route to it.
	Connect bool
	// MaxSessions bounds the session table (default 10,000); the least recently used session
	// makes room for a new one.
	MaxSessions int
	// HandshakeTimeout removes a session whose handshake has not finished in time
	// (default 10 s); IdleTimeout removes an established session that has been quiet
	// (default 5 min).
	HandshakeTimeout, IdleTimeout time.Duration
	// MaxMessageSize is the largest ZeroMQ message and message part accepted
	// (default DefaultMaxMessageSize).
	MaxMessageSize int
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
	Dropped          int64 // ZeroMQ messages dropped as malformed
}

type stats struct {
	sessions, handshakesDone, handshakesFailed, removed atomic.Int64
	bytesIn, bytesOut, messagesIn, messagesOut, dropped atomic.Int64
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
	stats    stats
	scratch  []byte // the framed encoding of one reply, reused (Serve's goroutine only)

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
	if o.MaxSessions <= 0 {
		o.MaxSessions = 10000
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	sock, err := newSocket(zmq.ROUTER, "", o.MaxMessageSize)
	if err == nil {
		// A reply to a peer that is gone fails instead of vanishing.
		err = sock.SetRouterMandatory(1)
	}
	if err == nil {
		// ROUTER drops what it cannot queue, and a TLS stream with a frame missing is
		// broken: the queue toward each peer is deep enough for any sane pipeline.
		err = sock.SetSndhwm(sendQueueDepth)
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
		table: newSessionTable(), stop: make(chan struct{}), done: make(chan struct{})}, nil
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
		Dropped: s.stats.dropped.Load(),
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
		polled, err := zmqpoll.Poll(poller, pollSlice)
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
				frames, err := s.sock.RecvMessageBytes(zmq.DONTWAIT)
				if err != nil {
					break
				}
				s.handle(ctx, frames)
			}
		}
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
		s.stats.dropped.Add(1)
		s.log.Warn("tlszmq: message dropped", "server", s.endpoint, "frames", len(frames), "reason", err)
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
	fresh := sess == nil
	if fresh {
		if sess, err = s.newSession(key, env, now); err != nil {
			s.log.Error("tlszmq: no session", "server", s.endpoint, "peer", printable(env[len(env)-1]), "reason", err)
			return
		}
	}
	s.table.touch(sess, now)
	wasDone := sess.e.HandshakeComplete()
	if wasDone && sess.framed {
		err = sess.deframer.put(sess.e, payload) // decrypted where it lies: the frame is ours
	} else {
		err = sess.e.PutData(payload)
	}
	if err != nil {
		if !wasDone && !fresh && isClientHello(payload) {
			// A client that restarted mid-handshake: start over with this ClientHello.
			s.remove(sess, "a new ClientHello during the handshake: the client started over")
			if sess, err = s.newSession(key, env, now); err != nil {
				s.log.Error("tlszmq: no session", "server", s.endpoint, "peer", printable(env[len(env)-1]), "reason", err)
				return
			}
			s.table.touch(sess, now)
			err = sess.e.PutData(payload)
		}
		if err != nil {
			if !wasDone {
				s.stats.handshakesFailed.Add(1)
			}
			s.reply(sess)
			s.remove(sess, err.Error())
			return
		}
	}
	if !wasDone && sess.e.HandshakeComplete() {
		s.established(sess)
	}
	if sess.e.CanRecv() || len(sess.deframer.pending) > 0 {
		if err := s.answer(ctx, sess); err != nil {
			s.reply(sess)
			s.remove(sess, err.Error())
			return
		}
	}
	if sess.e.PeerClosed() {
		sess.e.Shutdown()
		s.reply(sess)
		s.remove(sess, "close_notify received")
		return
	}
	if sess.deferred == 0 {
		s.replyOrRemove(sess)
	}
}

func (s *Server) newSession(key string, env [][]byte, now time.Time) (*session, error) {
	for s.table.len() >= s.opts.MaxSessions {
		s.remove(s.table.oldest(), "the session table is full: least recently used")
	}
	e, err := newEngine(s.ctx, RoleServer, "", "")
	if err != nil {
		return nil, err
	}
	route := make([][]byte, len(env))
	for i, f := range env {
		route[i] = append([]byte(nil), f...)
	}
	sess := &session{key: key, e: e, created: now, lastSeen: now,
		peer: Peer{Identity: route[len(route)-1], Route: route}}
	sess.peer.sess = sess
	sess.deframer.max = s.opts.MaxMessageSize
	s.table.add(sess)
	s.stats.sessions.Add(1)
	return sess, nil
}

func (s *Server) established(sess *session) {
	s.table.established(sess)
	s.stats.handshakesDone.Add(1)
	st := sess.e.ConnectionState()
	sess.framed = st.NegotiatedProtocol == ProtocolFramed
	sess.peer.Certificates = st.PeerCertificates
	sess.peer.Verified = st.Verified
	sess.peer.Version = st.Version
	sess.peer.CipherSuite = st.CipherSuite
}

// answer passes the messages the session has received to the handler and writes the replies.
func (s *Server) answer(ctx context.Context, sess *session) error {
	var msgs [][][]byte
	if sess.framed {
		var err error
		if msgs, err = sess.deframer.take(sess.e); err != nil {
			return err
		}
	} else {
		plain, err := sess.e.Read()
		if err != nil {
			return err
		}
		msgs = [][][]byte{{plain}}
	}
	for _, msg := range msgs {
		s.stats.messagesIn.Add(1)
		reply, err := s.handler(ctx, &sess.peer, msg)
		if errors.Is(err, ErrDeferred) {
			sess.deferred++
			continue
		}
		if err != nil {
			s.log.Warn("tlszmq: handler failed", "server", s.endpoint, "peer", sess.peer.String(), "reason", err)
			continue
		}
		if err := s.write(sess, reply); err != nil {
			return err
		}
	}
	return nil
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
	if sess == nil || s.table.get(sess.key) != sess || sess.deferred == 0 {
		return fmt.Errorf("tlszmq: reply to %s: no deferred request of a live session", peer)
	}
	sess.deferred--
	if err := s.write(sess, reply); err != nil {
		s.reply(sess)
		s.remove(sess, err.Error())
		return err
	}
	if sess.deferred == 0 {
		return s.replyOrRemove(sess)
	}
	return nil
}

// reply sends one message to the session's peer: the whole envelope, the delimiter and what
// the engine has for the network (possibly nothing, so that a lock-step peer gets its answer),
// all in one call, so that no half-sent envelope is ever left behind.
func (s *Server) reply(sess *session) error {
	n, err := sess.e.sendData(func(out []byte) error { return s.send(sess.peer.Route, out) })
	if n == 0 {
		err = s.send(sess.peer.Route, nil) // a lock-step peer's answer, empty
	}
	if err != nil {
		return err
	}
	s.stats.bytesOut.Add(int64(n))
	return nil
}

// replyOrRemove replies, and removes the session if the reply could not be sent: a TLS
// stream with a piece missing cannot go on (the peer would fail its next record's MAC), so
// the session ends here, with a log line saying why, instead of later with a puzzle.
func (s *Server) replyOrRemove(sess *session) error {
	err := s.reply(sess)
	if err != nil {
		reason := "the reply could not be sent: " + err.Error()
		if errors.Is(err, zmq.Errno(syscall.EAGAIN)) {
			reason = fmt.Sprintf("the reply could not be sent: %d messages wait for the peer already (it does not read its replies)", sendQueueDepth)
		}
		s.remove(sess, reason)
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

// remove drops a session, logging why.
func (s *Server) remove(sess *session, reason string) {
	s.table.remove(sess)
	sess.e.Close()
	s.stats.sessions.Add(-1)
	s.stats.removed.Add(1)
	s.log.Info("tlszmq: session removed", "server", s.endpoint, "peer", sess.peer.String(), "reason", reason)
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
	for sess := s.table.oldest(); sess != nil && now.Sub(sess.lastSeen) > s.opts.IdleTimeout; sess = s.table.oldest() {
		s.remove(sess, fmt.Sprintf("idle for %v", s.opts.IdleTimeout))
	}
}

// shutdown sends close_notify to every established session and closes the socket.
func (s *Server) shutdown() error {
	for sess := s.table.oldest(); sess != nil; sess = s.table.oldest() {
		if sess.e.HandshakeComplete() && sess.e.Err() == nil && sess.e.Shutdown() == nil {
			s.reply(sess)
		}
		s.remove(sess, "the server is stopping")
	}
	return s.sock.Close()
}
