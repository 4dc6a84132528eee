package tlszmq

import (
	"bytes"
	"errors"
	"syscall"

	zmq "github.com/pebbe/zmq4"
)

// serverSendDepth is the high-water mark of a server's ROUTER socket: how many messages
// ZeroMQ queues toward one connection. Replies beyond it wait in the connection's outbox,
// bounded in bytes with ZeroMQ's share by MaxPendingOutput, instead of being dropped: a frame
// dropped from a TLS stream would break the session.
const serverSendDepth = 256

// outbox is what a server sends toward one ZeroMQ connection (the first envelope frame: the
// ROUTER's id for it). ZeroMQ's queue belongs to the connection, shared by every session
// behind it (the clients behind a device, or routes a peer made up), and so does the budget:
// a connection that does not read holds at most MaxPendingOutput of the server's memory,
// whatever number of sessions it carries.
type outbox struct {
	id       string
	sessions map[*session]struct{} // the live sessions behind the connection
	held     []heldReply           // replies ZeroMQ could not take yet, oldest first
	queued   int                   // what they cost
	recent   []int32               // the sizes of the last serverSendDepth replies ZeroMQ took, a ring
	next     int
	inZMQ    int    // their sum: at most what ZeroMQ holds for the connection
	blocked  bool   // listed in Server.blocked
	ended    bool   // given up (endConnection): what comes for it is dropped
	addr     string // the peer's address (libzmq's Peer-Address), "" where it has none
}

// heldReply is one reply waiting in an outbox.
type heldReply struct {
	route   [][]byte
	payload []byte
}

// heldCost is what a held reply counts towards MaxPendingOutput: its bytes and its envelope,
// so that empty replies are not free.
func heldCost(r heldReply) int {
	n := len(r.payload) + 16
	for _, f := range r.route {
		n += len(f)
	}
	return n
}

// took records a reply ZeroMQ took.
func (o *outbox) took(n int) {
	if o.recent == nil {
		o.recent = make([]int32, serverSendDepth)
	}
	n = min(n, 1<<31-1)
	o.inZMQ += n - int(o.recent[o.next])
	o.recent[o.next] = int32(n)
	o.next = (o.next + 1) % serverSendDepth
}

// outboxFor returns the outbox of the connection a route comes by, made if need be.
func (s *Server) outboxFor(route [][]byte) *outbox {
	id := string(route[0])
	o := s.outboxes[id]
	if o == nil {
		o = &outbox{id: id, sessions: map[*session]struct{}{}}
		s.outboxes[id] = o
	}
	return o
}

// deliver sends a reply on a session's route, or holds it in the connection's outbox behind
// the replies held already (so that each session's replies keep their order). ZeroMQ
// answers EAGAIN when the connection's queue is full, or when it has not yet heard how much
// the peer has read: asked for its events, it hears, and is tried once more. A reply that
// must wait is copied (payload is the engine's buffer). It fails with a budget error when the
// connection holds more than MaxPendingOutput, counting what ZeroMQ holds (at most the last
// serverSendDepth replies it took, since its queue is full).
func (s *Server) deliver(o *outbox, route [][]byte, payload []byte) error {
	if len(o.held) == 0 {
		err := s.send(route, payload)
		if errors.Is(err, zmq.Errno(syscall.EAGAIN)) {
			s.sock.GetEvents()
			err = s.send(route, payload)
		}
		if !errors.Is(err, zmq.Errno(syscall.EAGAIN)) {
			if err == nil {
				o.took(len(payload))
			}
			return err
		}
	}
	r := heldReply{route: route, payload: bytes.Clone(payload)}
	if r.payload == nil {
		r.payload = []byte{}
	}
	o.held = append(o.held, r)
	o.queued += heldCost(r)
	if !o.blocked {
		o.blocked = true
		s.blocked = append(s.blocked, o)
	}
	return s.checkOutbox(o)
}

// checkOutbox fails when a connection holds more than MaxPendingOutput.
func (s *Server) checkOutbox(o *outbox) error {
	if len(o.held) > 0 && o.queued+o.inZMQ > s.opts.MaxPendingOutput {
		return overBudget("MaxPendingOutput", "more than %d bytes of replies its connection does not read", s.opts.MaxPendingOutput)
	}
	return nil
}

// flushOutbox sends what a connection's outbox holds, oldest first, as far as ZeroMQ takes it.
func (s *Server) flushOutbox(o *outbox) error {
	retried := false
	for len(o.held) > 0 {
		r := o.held[0]
		err := s.send(r.route, r.payload)
		if errors.Is(err, zmq.Errno(syscall.EAGAIN)) && !retried {
			s.sock.GetEvents()
			retried = true
			continue
		}
		if errors.Is(err, zmq.Errno(syscall.EAGAIN)) {
			break
		}
		if err != nil {
			return err
		}
		o.took(len(r.payload))
		o.held[0] = heldReply{}
		o.held = o.held[1:]
		o.queued -= heldCost(r)
	}
	if len(o.held) == 0 {
		o.held = nil
	}
	return s.checkOutbox(o)
}

// unblock retries the outboxes of the connections that were slow to read: one pass each,
// stopping at the first reply ZeroMQ cannot take.
func (s *Server) unblock() {
	blocked := s.blocked
	s.blocked = nil
	for _, o := range blocked {
		if err := s.flushOutbox(o); err != nil {
			s.endConnection(o, err)
			continue
		}
		if len(o.held) > 0 {
			s.blocked = append(s.blocked, o)
			continue
		}
		o.blocked = false
		s.dropOutbox(o)
	}
}

// endConnection ends every session behind a connection whose replies could not be sent or
// went past MaxPendingOutput, and drops what it held: the peer does not read, or is gone.
// Nothing more goes its way, from those sessions' workers either.
func (s *Server) endConnection(o *outbox, err error) {
	reason := "the reply could not be sent: " + err.Error()
	budget := errors.Is(err, errBudget)
	if budget {
		reason = err.Error()
	}
	cause := removedUnsendable
	if budget {
		cause = removedBudget
	}
	for sess := range o.sessions {
		s.remove(sess, cause, reason, false)
		if budget {
			s.countBudget(err)
		}
	}
	o.ended = true
	o.held, o.queued = nil, 0 // notices included
	if s.outboxes[o.id] == o {
		delete(s.outboxes, o.id)
	}
}

// unsendable ends the session a reply could not be sent to, and with a budget error every
// session of its connection.
func (s *Server) unsendable(sess *session, err error) {
	if errors.Is(err, errBudget) {
		s.endConnection(sess.out, err)
		return
	}
	s.remove(sess, removedUnsendable, "the reply could not be sent: "+err.Error(), false)
}

// dropOutbox forgets the outbox of a connection without live sessions or held replies: the
// next session by it starts a new one.
func (s *Server) dropOutbox(o *outbox) {
	if len(o.sessions) == 0 && !o.blocked && s.outboxes[o.id] == o {
		delete(s.outboxes, o.id)
	}
}
