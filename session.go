package tlszmq

import (
	"container/list"
	"context"
	"crypto/x509"
	"sync/atomic"
	"time"
)

// Peer is the client a server session belongs to, as the handler sees it.
type Peer struct {
	// Identity is the client's own routing id: the last envelope frame before the delimiter,
	// the identity furthest back, which the C++ server keys on.
	Identity []byte
	// Route is the whole envelope: the connection ids of the hops, then Identity. Replies
	// go back along it.
	Route [][]byte
	// Address is the remote address of the ZeroMQ connection the peer came by (libzmq's
	// Peer-Address: the IP address for tcp://; "" for transports without one, such as
	// inproc://). Behind a device it is the device's.
	Address string
	// Certificates is the chain the client presented, its own certificate first; Verified
	// reports whether it was verified against the server's CAs.
	Certificates []*x509.Certificate
	Verified     bool
	// Version and CipherSuite are the session's negotiated TLS version and cipher; DidResume
	// reports a resumed session.
	Version     uint16
	CipherSuite string
	DidResume   bool

	sess *session // for Server.Reply
}

// PeerCounters are one session's counters.
type PeerCounters struct {
	BytesIn, BytesOut       int64         // TLS bytes received and sent
	MessagesIn, MessagesOut int64         // application messages handed to the handler, and sent
	HandshakeTime           time.Duration // from its first ClientHello bytes to its end (0 before)
}

// Counters returns the session's counters so far. It is safe to call from any goroutine, and
// after the session has ended (the last counts stay).
func (p *Peer) Counters() PeerCounters {
	s := p.sess
	if s == nil {
		return PeerCounters{}
	}
	return PeerCounters{BytesIn: s.bytesIn.Load(), BytesOut: s.bytesOut.Load(), MessagesIn: s.msgsIn.Load(),
		MessagesOut: s.msgsOut.Load(), HandshakeTime: time.Duration(s.hsTime.Load())}
}

// Key identifies the peer's session: its whole route, so that two clients with one identity
// behind different hops never share a key.
func (p *Peer) Key() string { return routeKey(p.Route) }

// String returns the identity in a printable form.
func (p *Peer) String() string { return printable(p.Identity) }

// session is one client's TLS state in a server. Its fields belong to one goroutine each:
// the socket owner's (Serve's) and the worker's; the two speak through the worker's jobs and
// the server's events, never by touching each other's fields.
type session struct {
	key  string
	peer Peer    // Identity and Route are set once, before the session is shared
	w    *worker // the worker the session lives on, for its whole life
	ctx  context.Context
	stop context.CancelFunc // cancels ctx: the session has ended
	// The session's counters (Peer.Counters), from the goroutine that does each thing.
	bytesIn, bytesOut, msgsIn, msgsOut, hsTime atomic.Int64
	// dead is set by the socket owner when it removes the session: its worker skips the
	// frames still queued for it.
	dead atomic.Bool

	// The socket owner's.
	out         *outbox // the outbox of the connection the session comes by
	established bool    // the worker has said the handshake is done
	removed     bool    // out of the table: frames from its route no longer reach it
	created     time.Time
	lastSeen    time.Time
	lru         *list.Element // in sessionTable.lru once established, most recent at the front
	pending     *list.Element // in sessionTable.handshaking while the handshake runs
	busy        *list.Element // in sessionTable.busy while it has been used since its last trim

	// The worker's.
	e        *Engine
	codec    codec      // the session's message format, settled by the handshake (raw before)
	deframer deframer   // the framed protocol's decoder, with the server's budgets
	inbox    [][][]byte // messages received, not yet given to the handler
	inflight int        // messages given to the handler whose result has not come back
	deferred int        // requests whose Handler returned ErrDeferred, not yet answered
	frames   [][]byte   // frames received while the handler has messages, not yet fed
	held     int        // their bytes, within MaxMessageSize
	owed     bool       // a frame came in since the last reply went out
	closing  bool       // the peer sent close_notify: end once the handler is done
	slow     bool       // its handler outlasted handlerInline once: it runs on its own goroutine
	ended    bool       // the engine is closed; the server has been told
}

// sessionTable holds a server's sessions: the established ones, least recently used first
// out, and the half-open ones (handshake running), oldest first out, each kind within its own
// budget, so that a flood of half-open sessions never pushes out an established one.
type sessionTable struct {
	byKey       map[string]*session
	lru         *list.List // established *session, most recently used at the front
	handshaking *list.List // half-open *session, oldest first
	busy        *list.List // *session used since its buffers were last released, most recent at the front
}

func newSessionTable() *sessionTable {
	return &sessionTable{byKey: make(map[string]*session), lru: list.New(), handshaking: list.New(), busy: list.New()}
}

func (t *sessionTable) len() int { return len(t.byKey) }

// halfOpen is the number of sessions whose handshake runs; the rest are established.
func (t *sessionTable) halfOpen() int { return t.handshaking.Len() }

// add inserts a new, half-open s; the caller has made room.
func (t *sessionTable) add(s *session) {
	t.byKey[s.key] = s
	s.pending = t.handshaking.PushBack(s)
}

// touch marks s as just used.
func (t *sessionTable) touch(s *session, now time.Time) {
	s.lastSeen = now
	if s.lru != nil {
		t.lru.MoveToFront(s.lru)
	}
	if s.busy == nil {
		s.busy = t.busy.PushFront(s)
	} else {
		t.busy.MoveToFront(s.busy)
	}
}

// quiet returns the busy session used longest ago if that was before since, taking it off the
// busy list; nil if there is none.
func (t *sessionTable) quiet(since time.Time) *session {
	e := t.busy.Back()
	if e == nil || !e.Value.(*session).lastSeen.Before(since) {
		return nil
	}
	s := e.Value.(*session)
	t.busy.Remove(e)
	s.busy = nil
	return s
}

// established moves s from the half-open sessions to the established ones.
func (t *sessionTable) established(s *session) {
	if s.pending != nil {
		t.handshaking.Remove(s.pending)
		s.pending = nil
	}
	if s.lru == nil {
		s.lru = t.lru.PushFront(s)
	}
}

// remove takes s out of the table; the caller frees its engine.
func (t *sessionTable) remove(s *session) {
	delete(t.byKey, s.key)
	if s.pending != nil {
		t.handshaking.Remove(s.pending)
		s.pending = nil
	}
	if s.lru != nil {
		t.lru.Remove(s.lru)
		s.lru = nil
	}
	if s.busy != nil {
		t.busy.Remove(s.busy)
		s.busy = nil
	}
}

// oldest returns the least recently used established session, or nil.
func (t *sessionTable) oldest() *session {
	if e := t.lru.Back(); e != nil {
		return e.Value.(*session)
	}
	return nil
}

// oldestHandshake returns the half-open session whose handshake started first, or nil.
func (t *sessionTable) oldestHandshake() *session {
	if e := t.handshaking.Front(); e != nil {
		return e.Value.(*session)
	}
	return nil
}
