package tlszmq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq/bio"
	"github.com/tlszmq/tlszmq/internal/zmqendpoint"
	"github.com/tlszmq/tlszmq/internal/zmqpoll"
)

// Pattern is the ZeroMQ socket type of a Client.
type Pattern int

const (
	// REQ is the C++ client's pattern: one reply for each request, in lock-step.
	REQ Pattern = iota
	// DEALER pipelines: several messages may be in flight. It sends the same ["", tls-bytes]
	// envelope as REQ, so a C++ ROUTER server cannot tell the difference.
	DEALER
)

// String returns "REQ" or "DEALER".
func (p Pattern) String() string {
	if p == DEALER {
		return "DEALER"
	}
	return "REQ"
}

// ClientOptions tune a Client. The zero value is the C++ client's set-up: a REQ socket that
// connects.
type ClientOptions struct {
	Pattern Pattern
	// Bind makes the client bind the endpoint instead of connecting to it.
	Bind bool
	// Identity is the socket's routing id (the C++ fork's client uses "client2"); empty lets
	// the server's ROUTER assign one.
	Identity string
	// ServerName overrides Config.ServerName for this client (SNI and host name check). With
	// neither, a client that connects to a tcp:// endpoint uses the endpoint's host, name or
	// address; a client with no host to use (an ipc:// or inproc:// endpoint, or Bind) that
	// verifies the server fails with ErrNoServerName, unless Config.VerifyChainOnly is set.
	ServerName string
	// Timeout bounds each wait when the call's context has no deadline (default
	// DefaultTimeout): the handshake, a Request's or a Recv's wait for a message, a wait for
	// the client while another goroutine holds it (its handshake, a REQ Request's turn). A
	// wait that runs out fails with an error that is both ErrTimeout and
	// context.DeadlineExceeded, as when the context's deadline passes. It also bounds each
	// send, whatever the context: a message that no connection takes within Timeout (none
	// is up: a client that binds with no server connected, or one whose connection libzmq
	// dropped) fails the same way, and its bytes go first with the next send.
	Timeout time.Duration
	// FinishedWait is how long a REQ client waits for a C++ server's answer to its last
	// handshake flight before it sends data without one (default 1 s); see Client.Handshake.
	// A tlszmq server always answers, and is waited for until the handshake's deadline.
	FinishedWait time.Duration
	// MaxMessageSize is the largest ZeroMQ message and message part accepted
	// (default DefaultMaxMessageSize).
	MaxMessageSize int
	// Raw does not offer ProtocolFramed, so the session uses the C++ peers' format even with
	// a tlszmq server: one part per message, no empty messages. The client offers the
	// Context's Config.NextProtos alone then (none by default: no ALPN).
	Raw bool
	// Reconnect makes the client start over by itself (see Client.Reconnect) before it sends
	// again after a failure: no answer within the timeout, a TLS error, the server's
	// close_notify. The failed call still returns its error: nothing is retried, so no
	// message is sent twice.
	Reconnect bool
	// Session is a session to resume, from Client.Session of an earlier client of the same
	// server (OpenSSL's DER form). A session the server does not take means a full handshake.
	Session []byte
}

// Client is a TLS client over a ZeroMQ REQ or DEALER socket.
//
// # Concurrency
//
// A Client is safe for concurrent use by several goroutines:
//
//   - Over DEALER, concurrent Requests pipeline on the one TLS session. The server answers a
//     session's messages in order, so replies are matched to Requests in the order their
//     messages left: each Request takes the next message that arrives after its own has left
//     and that an earlier Request does not take. A Request that gives up (its context ends,
//     or the client's Timeout passes) keeps its place: its reply is read when it comes, so
//     that the TLS stream stays whole, and dropped.
//   - Over REQ, Requests take turns: one is in flight at a time, as REQ demands, and the
//     others wait for their turn within their own context (or Timeout).
//   - Recv returns the messages that no Request takes: those that arrive while no Request
//     waits (replies to Send and Queue, messages a server sends of itself), and those a frame
//     carries beyond a REQ Request's reply. Matching is by order alone, so on a DEALER client
//     do not have replies to Send or Queue outstanding while Requests are in flight: a
//     Request would take one of them. One goroutine doing Send and Recv while others do
//     Requests works when the server does not answer what Send sends (a one-way message).
//   - Send, Queue, Flush, Handshake and Reconnect are each one step under the client's lock;
//     messages that several goroutines Queue go out together. Over REQ, a Send or Queue
//     while a reply is owed (to a Send, or to a Request in flight) fails with ErrReplyOwed,
//     and so does a Request while the reply to a Send is owed.
//   - Close ends every wait (ErrClosed); a Reconnect ends the waits of the Requests in flight
//     on the old session, and a server's close_notify those of all (ErrPeerClosed).
//
// One lock guards the socket and the engine, and whoever holds it is the only goroutine that
// touches them: a ZeroMQ socket must not be used by two threads at once. A goroutine that
// waits for a message reads the socket for every waiter while nobody else does, handing each
// message to its Request, and gives the lock up while it polls whenever another goroutine
// wants it. The socket thus moves from goroutine to goroutine, and so from OS thread to OS
// thread: libzmq allows that behind a full memory barrier, which the lock (a channel
// operation) provides. What Engine returns is the client's engine: use it only while no other
// goroutine uses the client.
//
// # After a timeout
//
// A Request that gave up leaves the session usable, and the next call works without the
// caller doing anything:
//
//   - DEALER: the next Request goes at once; the late reply is read when it comes (its TLS
//     records come before those of the next reply, and the engine must read them in order)
//     and dropped.
//   - REQ: the socket still owes the late reply. The next Request, Send or Queue first waits
//     for it, within its own context, reads it and drops it, and then sends. ZMQ_REQ_RELAXED
//     would let the socket send at once, but libzmq then discards the part of the late reply
//     that has arrived (and with ZMQ_REQ_CORRELATE the part that arrives later): TLS records
//     would be lost and the session broken. So the client reads the late reply instead of
//     skipping it, which keeps the session and costs no handshake. With
//     ClientOptions.Reconnect the client starts a new session instead (ZeroMQ's "lazy pirate":
//     a new socket, and a new, resumed where the server allows, TLS session), which also
//     gets past a server that will never answer; without it, a reply that never comes makes
//     the next calls time out too, until Reconnect.
//   - A handshake that ran out of time (REQ or DEALER) is started over by the next call, on a
//     new socket, whatever ClientOptions.Reconnect says: the session never began, so nothing
//     is lost, while the server's answer may never come (it restarted, or the ClientHello
//     went with a dropped connection). A client that binds its endpoint waits on instead.
//
// A wait that runs out of time, by the client's Timeout or a context's deadline, fails with
// an error that is both ErrTimeout and context.DeadlineExceeded (errors.Is); a cancelled
// context gives context.Canceled; the server's close_notify gives ErrPeerClosed (also
// io.EOF). Each error names the endpoint.
type Client struct {
	ctx      *Context
	endpoint string
	opts     ClientOptions

	lk      chan struct{} // the client's lock (see lock); guards everything below it
	turn    chan struct{} // REQ: held by a Request from its turn to its reply
	want    atomic.Int32  // goroutines waiting for lk
	polling atomic.Bool   // the holder of lk polls, and gives lk up when woken (wake)
	closing atomic.Bool   // Close has been called: waits end
	wake    wakeup

	sock       *zmq.Socket
	poller     *zmq.Poller
	wakePolled bool // poller holds wake's receiving socket
	e          *Engine
	codec      codec      // the session's message format, settled by the handshake (raw before)
	deframer   deframer   // the framed protocol's decoder, with the client's budgets
	inbox      [][][]byte // messages no Request took, for Recv
	queued     []byte     // framed plaintext of the messages Queue has gathered, not yet sent
	batched    int        // how many messages queued holds
	owed       bool       // REQ: a request was sent and its reply not yet received
	unsent     []byte     // TLS bytes a send could not give to any connection in time: sent first, next time
	broken     error      // what made the session unusable, for Reconnect
	closed     bool
	pending    fifo      // Requests waiting for their replies, in the order their messages left
	sleepers   []*waiter // goroutines waiting without the lock, to be woken
	reader     *waiter   // the goroutine that reads the socket for the waiters, if any
	counts     clientCounts
}

// ClientStats are a Client's counters, over all its sessions.
type ClientStats struct {
	BytesIn, BytesOut       int64 // TLS bytes received and sent
	MessagesIn, MessagesOut int64 // application messages received and sent
	Handshakes, Reconnects  int64 // handshakes completed; sessions started over (Reconnect)
}

type clientCounts struct {
	bytesIn, bytesOut, msgsIn, msgsOut, handshakes, reconnects atomic.Int64
}

// Stats returns the client's counters. It is safe to call from any goroutine, at any time.
func (c *Client) Stats() ClientStats {
	k := &c.counts
	return ClientStats{BytesIn: k.bytesIn.Load(), BytesOut: k.bytesOut.Load(), MessagesIn: k.msgsIn.Load(),
		MessagesOut: k.msgsOut.Load(), Handshakes: k.handshakes.Load(), Reconnects: k.reconnects.Load()}
}

// ErrPeerClosed is wrapped by the error of a client call that finds the session closed by the
// server's close_notify: a Recv with no message left, a Request whose reply cannot come any
// more. The error names the endpoint. It wraps io.EOF, so errors.Is(err, io.EOF) holds too.
var ErrPeerClosed error = &wrapped{"tlszmq: the peer closed the session (close_notify)", io.EOF}

// wrapped is an error with a message of its own around another.
type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }

func (c *Client) peerClosedErr() error {
	return &OpError{Op: "session with", Endpoint: c.endpoint, Err: ErrPeerClosed}
}

func (c *Client) noMessageErr() error {
	return &OpError{Op: "reply from", Endpoint: c.endpoint, Err: errors.New("the reply carried no message")}
}

// NewClient makes a client of endpoint (e.g. "tcp://localhost:5556") with a client Context.
// The handshake runs on the first Send, or explicitly with Handshake. The server's certificate
// is checked against ClientOptions.ServerName, else Config.ServerName, else the endpoint's
// host ("localhost" here); see ClientOptions.ServerName.
func NewClient(ctx *Context, endpoint string, opts *ClientOptions) (*Client, error) {
	if ctx.Role() != RoleClient {
		return nil, fmt.Errorf("%w: NewClient needs a client Context", ErrInvalidConfig)
	}
	var o ClientOptions
	if opts != nil {
		o = *opts
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.FinishedWait <= 0 {
		o.FinishedWait = time.Second
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	c := &Client{ctx: ctx, endpoint: endpoint, opts: o, lk: make(chan struct{}, 1), turn: make(chan struct{}, 1)}
	if err := c.open(); err != nil {
		return nil, err
	}
	if o.Session != nil {
		if err := c.e.SetSession(o.Session); err != nil {
			c.Close()
			return nil, opError("client for", endpoint, err)
		}
	}
	return c, nil
}

// open makes the client's engine and socket, connected (or bound), with nothing sent yet.
func (c *Client) open() error {
	o := c.opts
	name := o.ServerName
	if name == "" {
		name = c.ctx.config().ServerName
	}
	if name == "" && !o.Bind {
		name = zmqendpoint.Host(c.endpoint)
	}
	if name == "" && c.ctx.checksName() {
		why := "the endpoint has no host"
		if o.Bind {
			why = "a client that binds its endpoint has no server host"
		}
		return &OpError{Op: "client for", Endpoint: c.endpoint, Err: fmt.Errorf("%w: %s; set ClientOptions.ServerName or "+
			"Config.ServerName to the name in the server's certificate (Config.VerifyChainOnly checks the chain alone, "+
			"which is dangerous)", ErrNoServerName, why)}
	}
	eo := EngineOptions{ServerName: name, NextProtos: framedProtos} // offered before the Context's
	if o.Raw {
		eo.NextProtos = nil
	}
	e, err := NewEngine(c.ctx, eo)
	if err != nil {
		return err
	}
	typ := zmq.REQ
	if o.Pattern == DEALER {
		typ = zmq.DEALER
	}
	sock, err := newSocket(typ, o.Identity, o.MaxMessageSize)
	if err == nil && typ == zmq.REQ {
		// Lets a REQ client send its data after a handshake flight that got no answer (see
		// Handshake); it changes nothing on the wire (ZMQ_REQ_CORRELATE would).
		err = sock.SetReqRelaxed(1)
	}
	if err == nil {
		// A send blocks while the socket has no connection to give the message to (the
		// server is down, or refuses this client's address): never longer than Timeout.
		err = sock.SetSndtimeo(o.Timeout)
	}
	if err == nil {
		if o.Bind {
			err = sock.Bind(c.endpoint)
		} else {
			err = sock.Connect(c.endpoint)
		}
	}
	if err != nil {
		if sock != nil {
			sock.Close()
		}
		e.Close()
		return opError("connecting to", c.endpoint, err)
	}
	c.e, c.sock, c.poller, c.wakePolled = e, sock, zmq.NewPoller(), false
	c.poller.Add(sock, zmq.POLLIN)
	c.codec, c.deframer, c.inbox, c.queued, c.batched, c.owed, c.broken = rawCodec{}, deframer{max: o.MaxMessageSize, maxMsgs: replyBatch}, nil, nil, 0, false, nil
	c.unsent = nil
	return nil
}

// Reconnect drops the client's socket and session and starts over with new ones, resuming
// the old session where the server allows (a server that kept its session ticket key: the
// same process, or one given the same SessionTicketKey). Messages not yet answered are lost
// with the old socket: each of them has had, or gets, an error (the Requests still waiting for
// theirs get it at once). With ClientOptions.Reconnect a client does this by itself before it
// sends again after a failure.
func (c *Client) Reconnect(ctx context.Context) error {
	if err := c.lock(ctx, "reconnecting to"); err != nil {
		return err
	}
	defer c.unlock()
	if err := c.usable(); err != nil {
		return err
	}
	return c.reconnect(ctx)
}

func (c *Client) reconnect(ctx context.Context) error {
	c.counts.reconnects.Add(1)
	var session []byte
	if c.e.HandshakeComplete() {
		session, _ = c.e.Session()
	}
	c.failPending(&OpError{Op: "reply from", Endpoint: c.endpoint, Err: errors.New("the session was restarted (Reconnect) before the reply came")})
	// The old socket goes at once with whatever it still queues: those messages have had
	// their errors. Its close cannot fail in a way that matters to the new one.
	c.sock.SetLinger(0)
	c.sock.Close()
	c.e.Close()
	if err := c.open(); err != nil {
		c.closed = true // nothing left to close
		c.wake.close()
		c.kickAll()
		return err
	}
	if session != nil {
		c.e.SetSession(session) // a session OpenSSL will not take means a full handshake
	}
	return c.fail(opError("handshake with", c.endpoint, c.handshake(ctx)))
}

// fail records an error that ends the session's usefulness (no answer in time, a TLS error,
// a failed send), so that a client with ClientOptions.Reconnect starts over before it sends
// again, and returns err.
func (c *Client) fail(err error) error {
	if err != nil && c.broken == nil && !errors.Is(err, ErrReplyOwed) {
		c.broken = err
	}
	return err
}

// recover starts a broken client over: after any failure with ClientOptions.Reconnect, and
// after a handshake that ran out of time in any case (see Client, "After a timeout"), unless
// the client binds its endpoint (a new socket could not bind it again at once).
func (c *Client) recover(ctx context.Context) error {
	if c.broken == nil || c.closed {
		return nil
	}
	if !c.opts.Reconnect && (c.opts.Bind || c.e.HandshakeComplete() || !errors.Is(c.broken, ErrTimeout)) {
		return nil
	}
	return c.reconnect(ctx)
}

func newSocket(typ zmq.Type, identity string, maxMsg int) (*zmq.Socket, error) {
	sock, err := zmq.NewSocket(typ)
	if err != nil {
		return nil, err
	}
	err = sock.SetLinger(500 * time.Millisecond)
	if err == nil && identity != "" {
		err = sock.SetIdentity(identity)
	}
	if err == nil && maxMsg > 0 {
		// The TLS bytes of the largest message, with room for record overhead.
		err = sock.SetMaxmsgsize(int64(maxMsg) + int64(maxMsg)/maxRecord*recordRoom + flightRoom)
	}
	if err != nil {
		sock.Close()
		return nil, err
	}
	return sock, nil
}

// Endpoint returns the endpoint the client was made for.
func (c *Client) Endpoint() string { return c.endpoint }

// Session returns the current session in OpenSSL's DER form, for ClientOptions.Session of a
// later client. With TLS 1.3 it arrives after the handshake, with the server's first reply.
func (c *Client) Session() ([]byte, error) {
	c.lockWait()
	defer c.unlock()
	return c.e.Session()
}

// ConnectionState returns the engine's ConnectionState. It waits for a handshake in progress.
func (c *Client) ConnectionState() ConnectionState {
	c.lockWait()
	defer c.unlock()
	return c.e.ConnectionState()
}

// Handshake runs the TLS handshake, if it has not run yet, within ctx (or the client's
// Timeout when ctx has no deadline). A server that never answers gives an error wrapping
// ErrTimeout (and context.DeadlineExceeded) that names the endpoint. Other goroutines' calls
// wait for the handshake to end.
//
// The client finishes the handshake before it sends any data: its last flight (TLS 1.3's
// Finished) goes alone, and it takes the server's answer to it (the session tickets) before
// the first message. The C++ original server loses the tickets when Finished and data arrive
// in one frame, which breaks the session. A C++ server without tickets answers nothing to that
// flight: a REQ client that gets no answer within FinishedWait sends its data anyway (a
// tlszmq server always answers, and is waited for).
func (c *Client) Handshake(ctx context.Context) error {
	if err := c.lock(ctx, "handshake with"); err != nil {
		return err
	}
	defer c.unlock()
	if err := c.usable(); err != nil {
		return err
	}
	return c.prepare(ctx)
}

// prepare makes the session ready to send, with the lock held: a broken one started over
// (ClientOptions.Reconnect), the handshake done.
func (c *Client) prepare(ctx context.Context) error {
	if c.e.PeerClosed() && c.broken == nil {
		c.broken = c.peerClosedErr() // nothing sent now would be answered
	}
	if err := c.recover(ctx); err != nil {
		return err
	}
	if c.e.PeerClosed() {
		return c.peerClosedErr()
	}
	return c.fail(opError("handshake with", c.endpoint, c.handshake(ctx)))
}

// handshake runs the handshake with the lock held, which it keeps throughout: nobody else can
// use the session before it is done.
func (c *Client) handshake(ctx context.Context) error {
	if c.e.HandshakeComplete() {
		return nil
	}
	until := deadline(ctx, c.opts.Timeout)
	if err := c.e.Update(); err != nil {
		return err
	}
	for !c.e.HandshakeComplete() {
		if err := c.flush(); err != nil {
			return err
		}
		if c.opts.Pattern == REQ && !c.owed {
			return &OpError{Op: "handshake with", Endpoint: c.endpoint, Err: errors.New("stalled: the reply carried no handshake data")}
		}
		payload, err := c.recvFrame(ctx, until, "handshake with")
		if err != nil {
			return err
		}
		c.counts.bytesIn.Add(int64(len(payload)))
		if err := c.e.PutData(payload); err != nil {
			c.flushQuiet()
			return err
		}
	}
	c.codec = codecFor(c.e.ConnectionState().NegotiatedProtocol, &c.deframer)
	c.counts.handshakes.Add(1)
	if !c.e.NeedsWrite() {
		return nil
	}
	// The last flight, alone.
	if err := c.flush(); err != nil {
		return err
	}
	if c.opts.Pattern == DEALER {
		return nil // the answer, if any, arrives before the replies to what follows
	}
	// A tlszmq server (the framed protocol was negotiated) answers every frame, so its answer
	// is waited for as long as the handshake may take; only a server without it, a C++ one,
	// may never answer, and gets FinishedWait.
	answers := c.codec.answers()
	wait := until
	if short := time.Now().Add(c.opts.FinishedWait); !answers && short.Before(until) {
		wait = short
	}
	payload, err := c.recvFrame(ctx, wait, "answer to the last handshake flight from")
	switch {
	case errors.Is(err, ErrTimeout) && !answers && ctx.Err() == nil:
		c.owed = false // REQ_RELAXED lets the next request go
		return nil
	case err != nil:
		return err
	}
	return c.absorb(payload)
}

// recvFrame waits for one frame until the time given, with the lock held throughout, and
// returns its payload; what names the wait in errors, before the endpoint ("reply from").
func (c *Client) recvFrame(ctx context.Context, until time.Time, what string) ([]byte, error) {
	for {
		if err := c.waitErr(ctx, until, what); err != nil {
			return nil, err
		}
		frame, err := c.poll(until, what)
		if err != nil {
			return nil, err
		}
		if frame {
			return c.recvPayload(what)
		}
	}
}

// settle readies a REQ socket that owes the reply to Requests that gave up (see Client,
// "After a timeout"): it waits for that reply, within ctx or the client's Timeout, reads it
// and drops it. The socket must receive it before it sends again, and the engine must read its
// records before those of the next reply.
func (c *Client) settle(ctx context.Context) error {
	if c.opts.Pattern != REQ || !c.owed || !c.pending.onlyGone() {
		return nil
	}
	w := getWaiter(waitOwed)
	err := c.await(ctx, deadline(ctx, c.opts.Timeout), w, "late reply (to a request that gave up) from")
	putWaiter(w)
	if err == nil {
		err = c.e.Err()
	}
	return c.fail(err)
}

// Send sends one message of one or more parts, with any that Queue has gathered before it.
// Multi-part and empty messages need a tlszmq server (the framed protocol, see
// ProtocolFramed); with a C++ server a message is one non-empty part. A REQ client must Recv
// the reply before the next Send. The wait for the client (another goroutine's handshake, a
// REQ reply owed to a Request that gave up) ends with ctx, or the client's Timeout.
func (c *Client) Send(ctx context.Context, parts ...[]byte) error {
	if err := c.lock(ctx, "sending to"); err != nil {
		return err
	}
	defer c.unlock()
	if err := c.ready2send(ctx); err != nil {
		return err
	}
	return c.send(parts)
}

// send sends a message, with what Queue has gathered before it, with the lock held.
func (c *Client) send(parts [][]byte) error {
	if err := c.fail(c.queue(parts)); err != nil {
		return err
	}
	if len(c.queued) == 0 {
		return nil
	}
	return c.fail(c.flushQueued())
}

// ready2send makes the client ready to send, with the lock held.
func (c *Client) ready2send(ctx context.Context) error {
	if err := c.usable(); err != nil {
		return err
	}
	if err := c.prepare(ctx); err != nil {
		return err
	}
	return c.settle(ctx)
}

// queueLimit is how much plaintext Queue gathers before it sends by itself: four full TLS
// records in one ZeroMQ message (or defaultMaxMessagesPerFrame messages, whichever is first).
const queueLimit = 4 * maxRecord

// replyBatch is how many messages a client takes from one frame: a server answers the
// messages of one frame in one (up to its MaxMessagesPerFrame), and of several when its
// handler defers answers meanwhile; four times the default leaves room for that.
const replyBatch = 4 * defaultMaxMessagesPerFrame

// Queue gathers a message to go out with the next ones, in one TLS write and one ZeroMQ
// message, which is how a DEALER client streams small messages fast: Flush (or Send) sends
// what is gathered, and Queue sends by itself once 64 KiB are waiting. A tlszmq server takes
// such a batch as the separate messages it holds and answers them in one reply. A REQ client
// has one batch in flight: once one has gone out, Queue returns ErrReplyOwed until its reply
// is received. With a C++ server (no framed protocol) there is nothing to gather messages
// into: Queue sends at once. Messages that several goroutines Queue go out together, each
// whole, in the order Queue took them.
func (c *Client) Queue(ctx context.Context, parts ...[]byte) error {
	if err := c.lock(ctx, "sending to"); err != nil {
		return err
	}
	defer c.unlock()
	if err := c.ready2send(ctx); err != nil {
		return err
	}
	return c.fail(c.queue(parts))
}

func (c *Client) queue(parts [][]byte) error {
	if err := c.e.Err(); err != nil {
		return err
	}
	if err := c.replyOwed(); err != nil {
		return err // before anything is gathered: the message is not sent, and not kept
	}
	if !c.codec.batches() {
		// The raw format: each message goes alone, one frame's plaintext, of one part.
		if len(parts) != 1 || len(parts[0]) == 0 {
			return &OpError{Op: "sending to", Endpoint: c.endpoint,
				Err: fmt.Errorf("the server does not speak %s: a message must be one non-empty part, not %d part(s)", ProtocolFramed, len(parts))}
		}
		if _, _, err := c.codec.write(c.e, nil, parts); err != nil {
			return err
		}
		c.counts.msgsOut.Add(1)
		return c.flush()
	}
	// A large message goes in a batch of its own, so that no ZeroMQ message is larger than
	// the largest message and its records' overhead (the peer's ZMQ_MAXMSGSIZE), and is
	// encrypted where it lies.
	if n := framedLen(parts); len(c.queued)+n > queueLimit {
		if len(c.queued) > 0 {
			if err := c.flushQueued(); err != nil {
				return err
			}
		}
		if err := c.replyOwed(); err != nil {
			return err // REQ: what was gathered went out just now, and is owed a reply first
		}
		if n >= queueLimit {
			var err error
			if c.queued, _, err = c.codec.write(c.e, c.queued, parts); err != nil {
				return err
			}
			c.counts.msgsOut.Add(1)
			return c.flush()
		}
	}
	c.queued = appendFramed(c.queued, parts)
	c.counts.msgsOut.Add(1)
	if c.batched++; len(c.queued) >= queueLimit || c.batched >= defaultMaxMessagesPerFrame {
		return c.flushQueued() // within a server's default MaxMessagesPerFrame too
	}
	return nil
}

// ErrReplyOwed is returned by a REQ client's Send, Queue or Flush while the reply to what it
// sent last has not been received: lock-step allows one message in flight.
var ErrReplyOwed = errors.New("tlszmq: a REQ client must receive the reply before it sends again")

// replyOwed returns ErrReplyOwed when a REQ client may not send yet.
func (c *Client) replyOwed() error {
	if c.opts.Pattern == REQ && c.owed {
		return fmt.Errorf("%w (%s)", ErrReplyOwed, c.endpoint)
	}
	return nil
}

// Flush sends the messages Queue has gathered, if any, as one ZeroMQ message. Over REQ, a
// reply owed to a Request that gave up is waited for first, within the client's Timeout.
func (c *Client) Flush() error {
	c.lockWait()
	defer c.unlock()
	if err := c.usable(); err != nil || len(c.queued) == 0 {
		return err
	}
	if err := c.settle(context.Background()); err != nil {
		return err
	}
	return c.fail(c.flushQueued())
}

func (c *Client) flushQueued() error {
	if err := c.replyOwed(); err != nil {
		return err
	}
	_, err := c.e.Write(c.queued)
	c.queued, c.batched = reuse(c.queued), 0
	if err != nil {
		return err
	}
	return c.flush()
}

// Recv returns the next message that no Request takes (see Client), waiting within ctx (or
// the client's Timeout). Once the server has closed the session (close_notify) and its
// messages have all been returned, it returns an error wrapping ErrPeerClosed (and io.EOF).
// Several goroutines may Recv at once: each message goes to one of them.
func (c *Client) Recv(ctx context.Context) ([][]byte, error) {
	if err := c.lock(ctx, "reply from"); err != nil {
		return nil, err
	}
	defer c.unlock()
	if err := c.usable(); err != nil {
		return nil, err
	}
	w := getWaiter(waitRecv)
	err := c.await(ctx, deadline(ctx, c.opts.Timeout), w, "reply from")
	putWaiter(w)
	if len(c.inbox) > 0 {
		msg := c.inbox[0]
		c.inbox[0] = nil
		c.inbox = c.inbox[1:]
		return msg, nil
	}
	switch {
	case err != nil && c.opts.Pattern == DEALER && (errors.Is(err, ErrTimeout) || errors.Is(err, context.Canceled)):
		return nil, err // a DEALER may wait for messages that were never owed
	case err != nil:
		return nil, c.fail(err) // a REQ client's reply is lost with it
	case c.e.Err() != nil:
		return nil, c.fail(c.e.Err())
	case c.e.PeerClosed():
		return nil, c.fail(c.peerClosedErr())
	}
	return nil, c.noMessageErr() // REQ: the reply came, with no message in it
}

// Request sends a message and returns its reply: over DEALER, the next message to arrive
// that no earlier Request takes, with other goroutines' Requests in flight at the same time;
// over REQ, the first message of the reply to this request, one Request at a time (see
// Client). The wait for the reply ends with ctx, or after the client's Timeout when ctx has no
// deadline, with an error that is both ErrTimeout and context.DeadlineExceeded; the reply
// that comes later is dropped, and the next Request works (see Client, "After a timeout").
//
// Replies are matched by their order alone, so Request relies on the server answering every
// message of the session with exactly one message, as a tlszmq Handler that returns a reply
// does. A handler that answers some messages with nothing (a nil reply, an error) shifts every
// later reply of the session over DEALER: use Send and Recv with such a server. Messages
// gathered by Queue go out with the next Request, ahead of its own, and their replies come
// first: do not Queue from one goroutine while another calls Request.
func (c *Client) Request(ctx context.Context, parts ...[]byte) ([][]byte, error) {
	if c.opts.Pattern == REQ {
		if err := c.takeTurn(ctx); err != nil {
			return nil, err
		}
		defer c.giveTurn()
	}
	if err := c.lock(ctx, "sending to"); err != nil {
		return nil, err
	}
	defer c.unlock()
	if err := c.ready2send(ctx); err != nil {
		return nil, err
	}
	if ctx.Err() != nil { // given up already: nothing is sent
		return nil, c.ctxErr(ctx, "sending to")
	}
	if err := c.send(parts); err != nil {
		return nil, err
	}
	w := getWaiter(waitReply)
	c.pending.push(w)
	err := c.await(ctx, deadline(ctx, c.opts.Timeout), w, "reply from")
	switch {
	case w.done:
		reply := w.reply
		putWaiter(w)
		return reply, nil
	case w.err != nil:
		// The wait ended for what the session did or had done to it (a reply without a
		// message, a restart, Close): nothing to record against the session.
		err = w.err
		putWaiter(w)
		return nil, err
	}
	// A gone waiter stays in pending until its reply comes: it is not recycled.
	if c.opts.Pattern == REQ {
		return nil, c.fail(err) // with ClientOptions.Reconnect, the next call starts over
	}
	return nil, err
}

// Close sends close_notify if the session is established, then closes the socket and frees
// the engine. A tlszmq server answers close_notify with its own: Close waits for it (half a
// second at most), so that when Close returns the server has the client's close_notify. A C++
// server answers nothing: the close_notify is sent while the process lives (the socket's
// linger, half a second), and a program that exits at once may cut it short. Close is
// idempotent. The calls of other goroutines waiting in the client end with ErrClosed.
func (c *Client) Close() error {
	c.closing.Store(true)
	c.lockWait()
	defer c.unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if c.e.HandshakeComplete() && c.e.Err() == nil {
		if c.e.Shutdown() == nil && c.flush() == nil && c.codec.answers() {
			c.awaitCloseNotify(time.Now().Add(closeWait))
		}
	}
	c.failPending(c.usable())
	err := c.sock.Close()
	c.e.Close()
	c.wake.close()
	return err
}

// closeWait bounds how long Close waits for a tlszmq server's answer to its close_notify.
const closeWait = 500 * time.Millisecond

// awaitCloseNotify takes what the server sends until its close_notify comes, or until.
func (c *Client) awaitCloseNotify(until time.Time) {
	p := zmq.NewPoller()
	p.Add(c.sock, zmq.POLLIN)
	for !c.e.PeerClosed() && c.e.Err() == nil {
		wait := time.Until(until)
		if wait <= 0 {
			return
		}
		polled, err := zmqpoll.Poll(p, wait)
		if err != nil || len(polled) == 0 {
			return
		}
		frames, err := c.sock.RecvMessageBytes(0)
		if err != nil || c.absorb(payloadOf(frames)) != nil {
			return
		}
	}
}

func (c *Client) usable() error {
	if c.closed {
		return &OpError{Op: "client for", Endpoint: c.endpoint, Err: errClientClosed}
	}
	return nil
}

// absorb feeds a received payload to the engine and hands out the messages it completes (see
// deliver).
func (c *Client) absorb(payload []byte) error {
	c.counts.bytesIn.Add(int64(len(payload)))
	if err := c.codec.put(c.e, payload); err != nil { // the frame is ours: it may be decrypted where it lies
		c.flushQuiet()
		return err
	}
	// Reading after the peer's close_notify gives io.EOF, which is seen through PeerClosed;
	// any other error is the sticky one put has just returned.
	msgs, err := c.codec.take(c.e, nil)
	c.counts.msgsIn.Add(int64(len(msgs)))
	c.deliver(msgs)
	if err != nil && err != io.EOF {
		return opError("reply from", c.endpoint, err)
	}
	c.afterFrame()
	if c.opts.Pattern == DEALER && c.e.NeedsWrite() {
		return c.flush() // e.g. a KeyUpdate answer
	}
	return nil
}

// flush sends what the engine has for the network as one ["", tls-bytes] message. Bytes that
// no connection took within the client's Timeout (the send failed with EAGAIN: nothing of
// them left) are kept, and go first with the next flush: the TLS stream stays whole.
func (c *Client) flush() error {
	out := c.unsent
	c.unsent = nil
	if more := c.e.TakeData(); len(more) > 0 {
		if out == nil {
			out = more
		} else {
			out = append(out, more...)
			bio.Recycle(more)
		}
	}
	if len(out) == 0 {
		return nil
	}
	var err error
	if c.opts.Pattern == DEALER {
		if _, err = c.sock.SendBytes(nil, zmq.SNDMORE); err == nil {
			_, err = c.sock.SendBytes(out, 0)
		}
	} else {
		_, err = c.sock.SendBytes(out, 0)
		c.owed = err == nil
	}
	if errors.Is(err, zmq.Errno(syscall.EAGAIN)) {
		c.unsent = out
		return opError("sending to", c.endpoint, fmt.Errorf("%w: no connection took the message within %v "+
			"(the server is down or unreachable, or refuses this client)", timedOut{}, c.opts.Timeout))
	}
	bio.Recycle(out) // zmq4 has copied it; or the send failed for good, and the session with it
	if err != nil {
		return opError("sending to", c.endpoint, err)
	}
	c.counts.bytesOut.Add(int64(len(out)))
	return nil
}

// flushQuiet sends a pending alert or close_notify, ignoring failures: the session is over
// either way. A REQ socket may send while a reply is owed: it is ZMQ_REQ_RELAXED.
func (c *Client) flushQuiet() { c.flush() }
