package tlszmq

import (
	"errors"
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

// established counts a completed handshake (by version, and its time) and moves the session
// among the established ones, making room under MaxSessions. The worker set sess.peer.Version
// before it posted the event.
func (s *Server) established(sess *session) {
	took := time.Since(sess.created)
	sess.hsTime.Store(int64(took))
	p := &sess.peer
	subject := ""
	if len(p.Certificates) > 0 {
		subject = p.Certificates[0].Subject.String()
	}
	s.log.Info("tlszmq: handshake done", "server", s.endpoint, "peer", p.String(), "address", p.Address,
		"version", VersionName(p.Version), "cipher", p.CipherSuite, "resumed", p.DidResume, "subject", subject,
		"verified", p.Verified, "took", took)
	s.stats.countVersion(p.Version)
	s.stats.hsTime.observe(took)
	if sess.removed {
		return
	}
	for s.table.len()-s.table.halfOpen() >= s.opts.MaxSessions {
		s.remove(s.table.oldest(), removedEvicted, fmt.Sprintf("the session table is full: least recently used (MaxSessions %d)", s.opts.MaxSessions), false)
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
		cause := removedFailed
		switch {
		case errors.Is(err, errCloseNotify):
			cause = removedCloseNotify
		case isBudget(err):
			cause = removedBudget
		}
		if failed {
			var alert *AlertError
			attrs := []any{"server", s.endpoint, "peer", sess.peer.String(), "reason", reason,
				"address", sess.peer.Address, "took", time.Since(sess.created)}
			if errors.As(err, &alert) {
				attrs = append(attrs, "alert", alert.Text, "alert_sent", alert.Sent)
			}
			s.log.Warn("tlszmq: handshake failed", attrs...)
		}
		s.forget(sess, cause, reason)
		// The counters after the log line: whoever sees them move finds the line.
		if failed {
			s.stats.failed[failCauseOf(err)].Add(1)
		}
		if cause == removedBudget {
			s.countBudget(err)
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
// close_notify first if notify (where the session is established). A half-open session
// removed for a reason of the peer's counts as a failed handshake.
func (s *Server) remove(sess *session, cause removeCause, reason string, notify bool) {
	s.forget(sess, cause, reason)
	if !sess.established {
		if fc, ok := halfOpenFailCause[cause]; ok {
			s.stats.failed[fc].Add(1)
		}
	}
	sess.w.give(job{kind: jobEnd, sess: sess, notify: notify})
}

// forget takes a session out of the table and the connection's live sessions, logs why and
// counts it by cause: frames from its route no longer reach it.
func (s *Server) forget(sess *session, cause removeCause, reason string) {
	s.table.remove(sess)
	sess.removed = true
	sess.dead.Store(true)
	sess.w.sessions--
	delete(sess.out.sessions, sess)
	if notice.Capable(sess.peer.Route) {
		s.reasons[sess] = reason // for the notice, once the worker has ended it
	}
	// The line first, the counters after: whoever sees the counters move finds the line.
	s.log.Info("tlszmq: session removed", "server", s.endpoint, "peer", sess.peer.String(), "reason", reason,
		"cause", cause.String(), "address", sess.peer.Address)
	s.stats.sessions.Add(-1)
	s.stats.removed[cause].Add(1)
}

// countBudget counts a session ended because its peer went past a budget, by the budget.
func (s *Server) countBudget(err error) {
	if k, ok := budgetKindOf(err); ok {
		s.stats.budgetBy[k].Add(1)
	}
	s.stats.budget.Add(1)
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
		reason := fmt.Sprintf("handshake not finished within %v", s.opts.HandshakeTimeout)
		s.log.Warn("tlszmq: handshake failed", "server", s.endpoint, "peer", sess.peer.String(), "reason", reason,
			"address", sess.peer.Address, "took", now.Sub(sess.created))
		s.remove(sess, removedHandshakeTimeout, reason, false)
	}
	for h := s.hellos.oldest(); h != nil && now.Sub(h.since) > s.opts.HandshakeTimeout; h = s.hellos.oldest() {
		s.dropHello(h, fmt.Sprintf("ClientHello not complete within %v", s.opts.HandshakeTimeout))
		s.stats.failed[failTimeout].Add(1)
	}
	for sess := s.table.oldest(); sess != nil && now.Sub(sess.lastSeen) > s.opts.IdleTimeout; sess = s.table.oldest() {
		s.remove(sess, removedIdle, fmt.Sprintf("idle for %v", s.opts.IdleTimeout), false)
	}
}

// removeCause is why a session left the table, for Counters.RemovedByCause.
type removeCause uint8

const (
	removedCloseNotify      removeCause = iota // the peer sent close_notify
	removedIdle                                // quiet for IdleTimeout
	removedHandshakeTimeout                    // the handshake outlasted HandshakeTimeout
	removedEvicted                             // room made under MaxSessions or MaxHalfOpen
	removedRestarted                           // a new ClientHello on an established route
	removedBudget                              // the peer went past a budget
	removedUnsendable                          // a reply could not be sent
	removedStopping                            // the server is stopping
	removedFailed                              // a TLS error (handshake, record, alert)
	numRemoveCauses
)

// removeCauseNames are the causes as Counters.RemovedByCause names them.
var removeCauseNames = [numRemoveCauses]string{
	"close_notify", "idle", "handshake_timeout", "evicted", "restarted", "budget", "unsendable", "stopping", "failed",
}

// String returns the cause's name in Counters.RemovedByCause, e.g. "idle".
func (c removeCause) String() string {
	if c < numRemoveCauses {
		return removeCauseNames[c]
	}
	return fmt.Sprintf("removeCause(%d)", uint8(c))
}

// failCause is why a handshake did not finish, for Counters.FailedByCause.
type failCause uint8

const (
	failTimeout       failCause = iota // not finished within HandshakeTimeout
	failAlertSent                      // the server rejected the peer with an alert
	failAlertReceived                  // the peer rejected the server with an alert
	failVerify                         // the peer's certificate failed verification
	failBudget                         // the peer went past a budget
	failEvicted                        // a newer half-open session took its place
	failOther                          // any other error
	numFailCauses
)

// failCauseNames are the causes as Counters.FailedByCause names them.
var failCauseNames = [numFailCauses]string{"timeout", "alert_sent", "alert_received", "verify", "budget", "evicted", "other"}

// String returns the cause's name in Counters.FailedByCause, e.g. "verify".
func (c failCause) String() string {
	if c < numFailCauses {
		return failCauseNames[c]
	}
	return fmt.Sprintf("failCause(%d)", uint8(c))
}

// halfOpenFailCause is the failed handshake a half-open session's removal by the socket owner
// counts as; the server's own stop counts as none.
var halfOpenFailCause = map[removeCause]failCause{
	removedHandshakeTimeout: failTimeout,
	removedEvicted:          failEvicted,
	removedBudget:           failBudget,
	removedUnsendable:       failOther,
}

// failCauseOf classifies the error a worker ended a handshake with: a budget first, then a
// failed verification (which comes with the alert the server sent for it), then an alert.
// Timeouts and evictions are the socket owner's own decisions, counted where it makes them.
func failCauseOf(err error) failCause {
	var (
		verify *CertificateVerificationError
		alert  *AlertError
	)
	switch {
	case err == nil:
		return failOther
	case isBudget(err):
		return failBudget
	case errors.As(err, &verify), refusedByHook(err):
		return failVerify
	case errors.As(err, &alert):
		if alert.Sent {
			return failAlertSent
		}
		return failAlertReceived
	}
	return failOther
}
