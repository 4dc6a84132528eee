package tlszmq

import (
	"errors"
	"fmt"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq/internal/notice"
	"github.com/tlszmq/tlszmq/internal/routekey"
)

// This file is the socket owner's way in: messages off the ROUTER socket, within their
// budgets, to the session (on its worker) their route leads to.

// route takes one message from the ROUTER socket to its session's worker.
func (s *Server) route(frames [][]byte) {
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
	// The key is looked up from a reused buffer: a string is made only for a new session.
	s.keyBuf = routekey.Append(s.keyBuf[:0], env)
	sess := s.table.byKey[string(s.keyBuf)]
	var replaced *worker
	if sess != nil && sess.established && isClientHello(payload) {
		s.remove(sess, removedRestarted, "a new ClientHello: the client started over", false)
		replaced, sess = sess.w, nil
	}
	fresh := sess == nil
	if fresh {
		key := string(s.keyBuf)
		if payload = s.hello(key, env, payload, now); payload == nil {
			return
		}
		sess = s.newSession(key, env, now, replaced)
	}
	s.table.touch(sess, now)
	sess.bytesIn.Add(int64(len(payload)))
	// What the workers have not taken yet stays bounded by the backpressure in Serve (frames
	// and bytes); what waits behind a session's handler, by MaxMessageSize (the worker's).
	n := int64(len(payload))
	s.queuedFrames.Add(1)
	s.queuedBytes.Add(n)
	if !sess.w.give(job{kind: jobFrame, sess: sess, payload: payload, fresh: fresh}) {
		s.queuedFrames.Add(-1) // the server is stopping
		s.queuedBytes.Add(-n)
	}
}

// newSession makes a half-open session for a route and gives it to w (the worker of the
// session it replaces), or else to the worker with the fewest sessions, which makes its
// engine when the first frame comes.
func (s *Server) newSession(key string, env [][]byte, now time.Time, w *worker) *session {
	s.makeHalfOpenRoom()
	route := copyRoute(env)
	if w == nil { // else the worker of the session it replaces: the old one's end comes first
		w = s.workers[0]
		for _, other := range s.workers[1:] {
			if other.sessions < w.sessions {
				w = other
			}
		}
	}
	w.sessions++
	sess := &session{key: key, w: w, created: now, lastSeen: now,
		peer: Peer{Identity: route[len(route)-1], Route: route}}
	sess.peer.sess = sess
	sess.out = s.outboxFor(route)
	if sess.out.addr == "" {
		sess.out.addr = s.connAddr
	}
	sess.peer.Address = sess.out.addr
	sess.out.sessions[sess] = struct{}{}
	s.table.add(sess)
	s.stats.sessions.Add(1)
	return sess
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
	// A connection the server has no outbox for yet is asked its peer's address, on the
	// message's next part (libzmq's Peer-Address belongs to the connection): one lookup a
	// new connection, none on the path of known ones.
	s.connAddr = ""
	askAddr := s.outboxes[string(part)] == nil
	for {
		more, err := s.sock.GetRcvmore()
		if err != nil || !more {
			break
		}
		if askAddr {
			var md map[string]string
			part, md, err = s.sock.RecvBytesWithMetadata(0, "Peer-Address")
			s.connAddr, askAddr = md["Peer-Address"], false
		} else {
			part, err = s.sock.RecvBytes(0)
		}
		if err != nil {
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

// drop counts a message dropped before any session (and the budget it went past, if any) and
// logs it, one line a second at most (with the number of drops it stands for): a flood of bad
// messages must not flood the log.
func (s *Server) drop(frames [][]byte, why error) {
	if k, ok := budgetKindOf(why); ok {
		s.stats.budgetBy[k].Add(1)
	}
	s.stats.dropped.Add(1)
	s.dropsUnlogged++
	if now := time.Now(); now.Sub(s.dropLogged) >= time.Second {
		s.log.Warn("tlszmq: message dropped", "server", s.endpoint, "frames", len(frames), "reason", why,
			"dropped since the last line", s.dropsUnlogged)
		s.dropLogged, s.dropsUnlogged = now, 0
	}
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
		if h := s.hellos.oldest(); h != nil {
			s.dropHello(h, reason)
			s.stats.failed[failEvicted].Add(1)
			continue
		}
		s.remove(s.table.oldestHandshake(), removedEvicted, reason, false)
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
