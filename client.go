package tlszmq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	zmq "github.com/pebbe/zmq4"
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
	// Timeout bounds the handshake and each Recv when their context has no deadline
	// (default DefaultTimeout).
	Timeout time.Duration
	// FinishedWait is how long a REQ client waits for a C++ server's answer to its last
	// handshake flight before it sends data without one (default 1 s); see Client.Handshake.
	// A tlszmq server always answers, and is waited for until the handshake's deadline.
	FinishedWait time.Duration
	// MaxMessageSize is the largest ZeroMQ message and message part accepted
	// (default DefaultMaxMessageSize).
	MaxMessageSize int
	// Raw offers no ALPN, so the session uses the C++ peers' format even with a tlszmq
	// server: one part per message, no empty messages.
	Raw bool
	// Reconnect makes the client start over by itself (see Client.Reconnect) before it sends
	// again after a failure: no answer within the timeout, a TLS error, the server's
	// close_notify. The failed call still returns its error: nothing is retried, so no
	// message is sent twice.
	Reconnect bool
}

// Client is a TLS client over a ZeroMQ REQ or DEALER socket. It is not safe for concurrent
// use.
type Client struct {
	ctx      *Context
	endpoint string
	opts     ClientOptions
	sock     *zmq.Socket
	poller   *zmq.Poller
	e        *Engine
	framed   bool
	deframer deframer
	inbox    [][][]byte
	queued   []byte // framed plaintext of the messages Queue has gathered, not yet sent
	batched  int    // how many messages queued holds
	owed     bool   // REQ: a request was sent and its reply not yet received
	broken   error  // what made the session unusable, for Reconnect
	closed   bool
}

// NewClient makes a client of endpoint (e.g. "tcp://localhost:5556") with a client Context.
// The handshake runs on the first Send, or explicitly with Handshake. The server's certificate
// is checked against ClientOptions.ServerName, else Config.ServerName, else the endpoint's
// host ("localhost" here); see ClientOptions.ServerName.
func NewClient(ctx *Context, endpoint string, opts *ClientOptions) (*Client, error) {
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
	c := &Client{ctx: ctx, endpoint: endpoint, opts: o}
	if err := c.open(); err != nil {
		return nil, err
	}
	return c, nil
}

// open makes the client's engine and socket, connected (or bound), with nothing sent yet.
func (c *Client) open() error {
	o := c.opts
	name := o.ServerName
	if name == "" {
		name = c.ctx.cfg.ServerName
	}
	if name == "" && !o.Bind {
		name = endpointHost(c.endpoint)
	}
	if name == "" && c.ctx.checksName() {
		why := "the endpoint has no host"
		if o.Bind {
			why = "a client that binds its endpoint has no server host"
		}
		return fmt.Errorf("tlszmq: client %s: %w: %s; set ClientOptions.ServerName or Config.ServerName "+
			"to the name in the server's certificate (Config.VerifyChainOnly checks the chain alone, which is dangerous)",
			c.endpoint, ErrNoServerName, why)
	}
	alpn := ProtocolFramed
	if o.Raw {
		alpn = ""
	}
	e, err := newEngine(c.ctx, RoleClient, name, alpn)
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
		return fmt.Errorf("tlszmq: client %s: %w", c.endpoint, err)
	}
	c.e, c.sock, c.poller = e, sock, zmq.NewPoller()
	c.poller.Add(sock, zmq.POLLIN)
	c.framed, c.deframer, c.inbox, c.queued, c.batched, c.owed, c.broken = false, deframer{max: o.MaxMessageSize, maxMsgs: replyBatch}, nil, nil, 0, false, nil
	return nil
}

// Reconnect drops the client's socket and session and starts over with new ones, resuming
// the old session where the server allows (a server that kept its session ticket key: the
// same process, or one given the same SessionTicketKey). Messages not yet answered are lost
// with the old socket: each of them has had, or gets, an error. With
// ClientOptions.Reconnect a client does this by itself before it sends again after a failure.
func (c *Client) Reconnect(ctx context.Context) error {
	if err := c.usable(); err != nil {
		return err
	}
	var session []byte
	if c.e.HandshakeComplete() {
		session, _ = c.e.Session()
	}
	// The old socket goes at once with whatever it still queues: those messages have had
	// their errors. Its close cannot fail in a way that matters to the new one.
	c.sock.SetLinger(0)
	c.sock.Close()
	c.e.Close()
	if err := c.open(); err != nil {
		c.closed = true // nothing left to close
		return err
	}
	if session != nil {
		c.e.SetSession(session) // a session OpenSSL will not take means a full handshake
	}
	return c.fail(c.handshake(ctx))
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

// recover reconnects a broken client that was asked to (ClientOptions.Reconnect).
func (c *Client) recover(ctx context.Context) error {
	if c.broken == nil || !c.opts.Reconnect || c.closed {
		return nil
	}
	return c.Reconnect(ctx)
}

// endpointHost returns the host of a tcp:// endpoint a client connects to ("localhost" for
// "tcp://localhost:5556", "::1" for "tcp://[::1]:5556", the destination of
// "tcp://source;host:port"), or "" for other transports and for a wildcard.
func endpointHost(endpoint string) string {
	rest, ok := strings.CutPrefix(endpoint, "tcp://")
	if !ok {
		return ""
	}
	if i := strings.LastIndexByte(rest, ';'); i >= 0 {
		rest = rest[i+1:]
	}
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		rest = rest[:i]
	}
	rest = strings.TrimSuffix(strings.TrimPrefix(rest, "["), "]")
	if rest == "*" {
		return ""
	}
	return rest
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

// Engine returns the client's TLS engine, for its ConnectionState and the like.
func (c *Client) Engine() *Engine { return c.e }

// ConnectionState returns the engine's ConnectionState.
func (c *Client) ConnectionState() ConnectionState { return c.e.ConnectionState() }

// Handshake runs the TLS handshake, if it has not run yet, within ctx (or the client's
// Timeout when ctx has no deadline). A server that never answers gives an error wrapping
// ErrTimeout that names the endpoint.
//
// The client finishes the handshake before it sends any data: its last flight (TLS 1.3's
// Finished) goes alone, and it takes the server's answer to it (the session tickets) before
// the first message. The C++ original server loses the tickets when Finished and data arrive
// in one frame, which breaks the session. A C++ server without tickets answers nothing to that
// flight: a REQ client that gets no answer within FinishedWait sends its data anyway (a
// tlszmq server always answers, and is waited for).
func (c *Client) Handshake(ctx context.Context) error {
	if err := c.usable(); err != nil {
		return err
	}
	if err := c.recover(ctx); err != nil {
		return err
	}
	return c.fail(c.handshake(ctx))
}

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
			return fmt.Errorf("tlszmq: handshake with %s stalled: its reply carried no handshake data", c.endpoint)
		}
		payload, err := c.recvFrame(ctx, until, "handshake with")
		if err != nil {
			return err
		}
		if err := c.e.PutData(payload); err != nil {
			c.flushQuiet()
			return err
		}
	}
	c.framed = c.e.ConnectionState().NegotiatedProtocol == ProtocolFramed
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
	wait := until
	if short := time.Now().Add(c.opts.FinishedWait); !c.framed && short.Before(until) {
		wait = short
	}
	payload, err := c.recvFrame(ctx, wait, "answer to the last handshake flight from")
	switch {
	case errors.Is(err, ErrTimeout) && !c.framed:
		c.owed = false // REQ_RELAXED lets the next request go
		return nil
	case err != nil:
		return err
	}
	return c.absorb(payload)
}

// Send sends one message of one or more parts, with any that Queue has gathered before it.
// Multi-part and empty messages need a tlszmq server (the framed protocol, see
// ProtocolFramed); with a C++ server a message is one non-empty part. A REQ client must Recv
// the reply before the next Send.
func (c *Client) Send(ctx context.Context, parts ...[]byte) error {
	if err := c.Queue(ctx, parts...); err != nil {
		return err
	}
	return c.Flush()
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
// into: Queue sends at once.
func (c *Client) Queue(ctx context.Context, parts ...[]byte) error {
	if err := c.Handshake(ctx); err != nil {
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
	if !c.framed {
		if len(parts) != 1 || len(parts[0]) == 0 {
			return fmt.Errorf("tlszmq: %s does not speak %s: a message must be one non-empty part, not %d part(s)", c.endpoint, ProtocolFramed, len(parts))
		}
		if _, err := c.e.Write(parts[0]); err != nil {
			return err
		}
		return c.flush()
	}
	// A large message goes in a batch of its own, so that no ZeroMQ message is larger than
	// the largest message and its records' overhead (the peer's ZMQ_MAXMSGSIZE), and is
	// encrypted where it lies.
	if n := framedLen(parts); len(c.queued)+n > queueLimit {
		if err := c.Flush(); err != nil {
			return err
		}
		if err := c.replyOwed(); err != nil {
			return err // REQ: what was gathered went out just now, and is owed a reply first
		}
		if n >= queueLimit {
			var err error
			if c.queued, err = writeFramed(c.e, c.queued, parts); err != nil {
				return err
			}
			return c.flush()
		}
	}
	c.queued = appendFramed(c.queued, parts)
	if c.batched++; len(c.queued) >= queueLimit || c.batched >= defaultMaxMessagesPerFrame {
		return c.Flush() // within a server's default MaxMessagesPerFrame too
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

// Flush sends the messages Queue has gathered, if any, as one ZeroMQ message.
func (c *Client) Flush() error {
	if err := c.usable(); err != nil || len(c.queued) == 0 {
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

// Recv returns the next message, waiting within ctx (or the client's Timeout). It returns
// io.EOF once the server has closed the session.
func (c *Client) Recv(ctx context.Context) ([][]byte, error) {
	if err := c.usable(); err != nil {
		return nil, err
	}
	until := deadline(ctx, c.opts.Timeout)
	for len(c.inbox) == 0 {
		if c.opts.Pattern == REQ && !c.owed {
			if c.e.PeerClosed() {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("tlszmq: the reply from %s carried no message", c.endpoint)
		}
		payload, err := c.recvFrame(ctx, until, "reply from")
		if err != nil {
			if c.opts.Pattern == DEALER && errors.Is(err, ErrTimeout) {
				return nil, err // a DEALER may wait for messages that were never owed
			}
			return nil, c.fail(err) // a REQ client's reply is lost with it
		}
		if err := c.absorb(payload); err != nil {
			return nil, c.fail(err)
		}
		if len(c.inbox) == 0 && c.e.PeerClosed() {
			return nil, c.fail(io.EOF)
		}
	}
	msg := c.inbox[0]
	c.inbox = c.inbox[1:]
	return msg, nil
}

// Request sends a message and returns the reply.
func (c *Client) Request(ctx context.Context, parts ...[]byte) ([][]byte, error) {
	if err := c.Send(ctx, parts...); err != nil {
		return nil, err
	}
	return c.Recv(ctx)
}

// Close sends close_notify if the session is established, then closes the socket (queued
// messages get half a second to leave; see FlushZMQ) and frees the engine. It is idempotent.
func (c *Client) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	if c.e.HandshakeComplete() && c.e.Err() == nil {
		if c.e.Shutdown() == nil {
			c.flushQuiet()
		}
	}
	err := c.sock.Close()
	c.e.Close()
	return err
}

func (c *Client) usable() error {
	if c.closed {
		return fmt.Errorf("tlszmq: client %s: %w", c.endpoint, ErrClosed)
	}
	return nil
}

// absorb feeds a received payload to the engine and queues the messages it completes.
func (c *Client) absorb(payload []byte) error {
	var err error
	if c.framed {
		err = c.deframer.put(c.e, payload) // decrypted where it lies: the frame is ours
	} else {
		err = c.e.PutData(payload)
	}
	if err != nil {
		c.flushQuiet()
		return err
	}
	// Reading after the peer's close_notify gives io.EOF, which Recv sees through PeerClosed;
	// any other error is the sticky one PutData has just returned.
	if c.framed {
		msgs, err := c.deframer.take(c.e)
		c.inbox = append(c.inbox, msgs...)
		if err != nil && err != io.EOF {
			return fmt.Errorf("tlszmq: from %s: %w", c.endpoint, err)
		}
	} else if plain, _ := c.e.Read(); plain != nil {
		c.inbox = append(c.inbox, [][]byte{plain})
	}
	if c.opts.Pattern == DEALER && c.e.NeedsWrite() {
		return c.flush() // e.g. a KeyUpdate answer
	}
	return nil
}

// flush sends what the engine has for the network as one ["", tls-bytes] message.
func (c *Client) flush() error {
	_, err := c.e.sendData(func(out []byte) error {
		if c.opts.Pattern == DEALER {
			if _, err := c.sock.SendBytes(nil, zmq.SNDMORE); err != nil {
				return err
			}
			_, err := c.sock.SendBytes(out, 0)
			return err
		}
		_, err := c.sock.SendBytes(out, 0)
		c.owed = err == nil
		return err
	})
	if err != nil {
		return fmt.Errorf("tlszmq: sending to %s: %w", c.endpoint, err)
	}
	return nil
}

// flushQuiet sends a pending alert or close_notify, ignoring failures: the session is over
// either way. A REQ socket may send while a reply is owed: it is ZMQ_REQ_RELAXED.
func (c *Client) flushQuiet() { c.flush() }

// recvFrame waits for one message until the time given and returns its payload; what names
// the wait in errors, before the endpoint ("reply from").
func (c *Client) recvFrame(ctx context.Context, until time.Time, what string) ([]byte, error) {
	if err := waitReadable(ctx, c.poller, until, what, c.endpoint); err != nil {
		return nil, err
	}
	frames, err := c.sock.RecvMessageBytes(0)
	if err != nil {
		return nil, fmt.Errorf("tlszmq: %s %s: %w", what, c.endpoint, err)
	}
	c.owed = false
	return payloadOf(frames), nil
}
