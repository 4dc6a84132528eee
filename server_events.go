package tlszmq

import (
	"fmt"
	"time"

	"github.com/tlszmq/tlszmq/internal/notice"
)

// This file is the socket owner's side of the sessions' lives: what their workers tell it
// (replies to send, handshakes done, sessions ended), and the removals it decides itself
// (the table's budgets, timeouts, connections that do not read).

// takeEvents does what the workers have told the socket owner, in the order each told it.
func (s *Server) takeEvents() {
	s.pendingEvents = s.events.take(s.pendingEvents)
	for i := range s.pendingEvents {
		ev := &s.pendingEvents[i]
		switch ev.kind {
		case eventSend:
			s.sendFor(ev.sess, ev.payload, ev.last)
			recycle(ev)
		case eventEstablished:
			s.established(ev.sess)
		case eventEnded:
			s.ended(ev.sess, ev.err, ev.failed)
		}
		*ev = event{}
	}
	s.pendingEvents = s.pendingEvents[:0]
}

// sendFor sends a session's output on its route, or holds it in its connection's outbox.
// Output of a session already removed still goes (its close_notify, its alert), unless its
// connection has been given up.
func (s *Server) sendFor(sess *session, payload []byte, last bool) {
	o := sess.out
	if o.ended {
		return
	}
	err := s.deliver(o, sess.peer.Route, payload)
	if err == nil {
		return
	}
	if !sess.removed && !last {
		s.unsendable(sess, err)
	} else if isBudget(err) {
		s.endConnection(o, err)
	}
}

// established moves a session among the established ones, making room under MaxSessions.
func (s *Server) established(sess *session) {
	if sess.removed {
		return
	}
	for s.table.len()-s.table.halfOpen() >= s.opts.MaxSessions {
		s.remove(s.table.oldest(), fmt.Sprintf("the session table is full: least recently used (MaxSessions %d)", s.opts.MaxSessions), false)
	}
	s.table.established(sess)
	sess.established = true
}

// ended is a worker's word that a session's engine is closed: after its last TLS bytes, a
// peer that takes end-of-session notices (package internal/notice) learns it.
func (s *Server) ended(sess *session, err error, failed bool) {
	if !sess.removed {
		reason := "ended"
		if err != nil {
			reason = err.Error()
		}
		s.forget(sess, reason)
		if failed {
			s.stats.handshakesFailed.Add(1)
		}
		if isBudget(err) {
			s.stats.budget.Add(1) // after the log line: whoever sees the counter finds the line
		}
	}
	if o := sess.out; notice.Capable(sess.peer.Route) && !o.ended {
		if err := s.deliver(o, sess.peer.Route, notice.Payload(s.reasons[sess])); err != nil && isBudget(err) {
			s.endConnection(o, err)
		}
	}
	delete(s.reasons, sess)
	s.dropOutbox(sess.out)
}

// remove takes a session out of the table, logs why, and has its worker end it: with
// close_notify first if notify (where the session is established).
func (s *Server) remove(sess *session, reason string, notify bool) {
	s.forget(sess, reason)
	sess.w.give(job{kind: jobEnd, sess: sess, notify: notify})
}

// forget takes a session out of the table and the connection's live sessions, and logs why:
// frames from its route no longer reach it.
func (s *Server) forget(sess *session, reason string) {
	s.table.remove(sess)
	sess.removed = true
	sess.dead.Store(true)
	sess.w.sessions--
	delete(sess.out.sessions, sess)
	if notice.Capable(sess.peer.Route) {
		s.reasons[sess] = reason // for the notice, once the worker has ended it
	}
	// The line first, the counters after: whoever sees the counters move finds the line.
	s.log.Info("tlszmq: session removed", "server", s.endpoint, "peer", sess.peer.String(), "reason", reason)
	s.stats.sessions.Add(-1)
	s.stats.removed.Add(1)
}

// releaseAfter is how long a session stays quiet before the server lets its buffers go
// (Engine.ReleaseBuffers): long enough that a busy session keeps them between messages.
const releaseAfter = time.Second

// expire removes sessions whose handshake or idle time is up, and lets the buffers of
// sessions that have gone quiet go.
func (s *Server) expire(now time.Time) {
	for sess := s.table.quiet(now.Add(-releaseAfter)); sess != nil; sess = s.table.quiet(now.Add(-releaseAfter)) {
		sess.w.give(job{kind: jobRelease, sess: sess})
	}
	for sess := s.table.oldestHandshake(); sess != nil && now.Sub(sess.created) > s.opts.HandshakeTimeout; sess = s.table.oldestHandshake() {
		s.remove(sess, fmt.Sprintf("handshake not finished within %v", s.opts.HandshakeTimeout), false)
		s.stats.handshakesFailed.Add(1)
	}
	for h := s.hellos.oldest(); h != nil && now.Sub(h.since) > s.opts.HandshakeTimeout; h = s.hellos.oldest() {
		s.dropHello(h, fmt.Sprintf("ClientHello not complete within %v", s.opts.HandshakeTimeout))
		s.stats.handshakesFailed.Add(1)
	}
	for sess := s.table.oldest(); sess != nil && now.Sub(sess.lastSeen) > s.opts.IdleTimeout; sess = s.table.oldest() {
		s.remove(sess, fmt.Sprintf("idle for %v", s.opts.IdleTimeout), false)
	}
}
