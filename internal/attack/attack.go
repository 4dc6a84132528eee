// Package attack holds the tools of the tests that abuse a TLSZMQ server: a net.Conn that
// carries Go's crypto/tls client over a ZeroMQ DEALER socket in the TLSZMQ framing (each TLS
// write leaves as one ["", bytes] message, behind an envelope of the attacker's choosing), the
// framed protocol's encoding written by hand, so that an attacker can send what no tlszmq
// client would, and the payloads of the ZeroMQ-level abuses.
//
// It does not import tlszmq, so that the package's own internal tests can use it.
package attack

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// ProtocolFramed is the ALPN name of the TLSZMQ framed protocol (tlszmq.ProtocolFramed).
const ProtocolFramed = "tlszmq/1"

// Options tune the DEALER socket under a Conn.
type Options struct {
	// Identity is the socket's routing id; empty lets the server's ROUTER assign one.
	Identity string
	// Envelope is sent before the delimiter of every message: forged hops, as a device
	// would put them. Empty is the REQ envelope, ["", bytes].
	Envelope [][]byte
	// RcvHWM is how many messages the socket takes off the network before it stops reading
	// (ZMQ_RCVHWM; 0 keeps ZeroMQ's default, 1,000). With a small value and a small RcvBuf,
	// a peer that never calls Read stops reading at the TCP level too, and what the server
	// sends it piles up on the server's side.
	RcvHWM int
	// RcvBuf is the kernel's receive buffer for the connection (ZMQ_RCVBUF; 0: the default).
	RcvBuf int
}

// Conn is a net.Conn over a ZeroMQ DEALER socket: Write sends one message, the envelope, an
// empty delimiter and the bytes; Read returns the payloads of the messages that arrive (the
// frame after the delimiter), in order, skipping empty ones (a lock-step server's "nothing to
// say"). Read and Write may be called from different goroutines; the socket is used by one at
// a time. A Conn on which Read is never called never takes a message off the socket.
type Conn struct {
	mu     sync.Mutex // the socket and the poller
	sock   *zmq.Socket
	poller *zmq.Poller
	env    [][]byte

	pending []byte // the rest of the payload Read is returning (Read's goroutine only)

	bmu      sync.Mutex
	batching bool   // Write gathers into batch instead of sending
	batch    []byte // what Write gathered since Batch

	dl       sync.Mutex
	readDL   time.Time
	writeDL  time.Time
	closed   chan struct{}
	closeErr error
	once     sync.Once
}

// Dial connects a DEALER socket to endpoint.
func Dial(endpoint string, o *Options) (*Conn, error) {
	if o == nil {
		o = &Options{}
	}
	sock, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		return nil, err
	}
	err = sock.SetLinger(0)
	if err == nil && o.Identity != "" {
		err = sock.SetIdentity(o.Identity)
	}
	if err == nil && o.RcvHWM > 0 {
		err = sock.SetRcvhwm(o.RcvHWM)
	}
	if err == nil && o.RcvBuf > 0 {
		err = sock.SetRcvbuf(o.RcvBuf)
	}
	if err == nil {
		err = sock.Connect(endpoint)
	}
	if err != nil {
		sock.Close()
		return nil, fmt.Errorf("attack: dealer to %s: %w", endpoint, err)
	}
	poller := zmq.NewPoller()
	poller.Add(sock, zmq.POLLIN)
	env := make([][]byte, len(o.Envelope))
	for i, f := range o.Envelope {
		env[i] = append([]byte(nil), f...)
	}
	return &Conn{sock: sock, poller: poller, env: env, closed: make(chan struct{})}, nil
}

// Send sends one message of the given frames, as they are: no envelope, no delimiter added.
// It blocks while the socket's queue is full, until the write deadline or Close.
func (c *Conn) Send(frames ...[]byte) error {
	if len(frames) == 0 {
		return errors.New("attack: an empty message")
	}
	for {
		c.mu.Lock()
		err := c.sendLocked(frames)
		c.mu.Unlock()
		if !errors.Is(err, zmq.Errno(syscall.EAGAIN)) {
			return err
		}
		// The queue toward the server is full: wait, without holding the socket.
		select {
		case <-c.closed:
			return net.ErrClosed
		case <-time.After(time.Millisecond):
		}
		c.dl.Lock()
		dl := c.writeDL
		c.dl.Unlock()
		if !dl.IsZero() && time.Now().After(dl) {
			return os.ErrDeadlineExceeded
		}
	}
}

// sendLocked sends frames without waiting. Only the first frame can fail for a full queue:
// ZeroMQ takes the rest of a message whose first frame it has taken.
func (c *Conn) sendLocked(frames [][]byte) error {
	select {
	case <-c.closed:
		return net.ErrClosed
	default:
	}
	for i, f := range frames {
		flags := zmq.DONTWAIT
		if i < len(frames)-1 {
			flags |= zmq.SNDMORE
		}
		if _, err := c.sock.SendBytes(f, flags); err != nil {
			return err
		}
	}
	return nil
}

// Recv returns the next message, whole, waiting at most d (or until the read deadline). It is
// for the ZeroMQ-level attackers, which read their answers themselves; don't mix it with Read.
func (c *Conn) Recv(d time.Duration) ([][]byte, error) {
	until := time.Now().Add(d)
	for {
		c.mu.Lock()
		msg, err := c.recvLocked(until)
		c.mu.Unlock()
		if err != nil || msg != nil {
			return msg, err
		}
	}
}

// Drain takes every message that has arrived and returns how many it took, without waiting.
func (c *Conn) Drain() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for {
		if _, err := c.sock.RecvMessageBytes(zmq.DONTWAIT); err != nil {
			return n
		}
		n++
	}
}

// recvLocked waits a little (a few milliseconds, at most until until) for a message: nil, nil
// if none came yet.
func (c *Conn) recvLocked(until time.Time) ([][]byte, error) {
	select {
	case <-c.closed:
		return nil, net.ErrClosed
	default:
	}
	c.dl.Lock()
	if !c.readDL.IsZero() && c.readDL.Before(until) {
		until = c.readDL
	}
	c.dl.Unlock()
	wait := time.Until(until)
	if wait <= 0 {
		return nil, os.ErrDeadlineExceeded
	}
	if msg, err := c.sock.RecvMessageBytes(zmq.DONTWAIT); err == nil {
		return msg, nil
	}
	// Hold the socket for a few milliseconds at most, so that a writer gets its turn.
	if _, err := c.poller.Poll(min(wait, 5*time.Millisecond)); err != nil {
		return nil, err
	}
	if msg, err := c.sock.RecvMessageBytes(zmq.DONTWAIT); err == nil {
		return msg, nil
	}
	return nil, nil
}

// Read returns the bytes of the payloads that arrive, in order.
func (c *Conn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		msg, err := c.Recv(time.Hour)
		if err != nil {
			return 0, err
		}
		if payload := payloadOf(msg); len(payload) > 0 {
			c.pending = payload
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// payloadOf is the frame after the delimiter (the last frame), or nil for a message without one.
func payloadOf(msg [][]byte) []byte {
	if len(msg) < 2 || len(msg[len(msg)-2]) != 0 {
		return nil
	}
	return msg[len(msg)-1]
}

// Write sends p as one message behind the envelope; after Batch, it gathers p for Flush.
func (c *Conn) Write(p []byte) (int, error) {
	c.bmu.Lock()
	if c.batching {
		c.batch = append(c.batch, p...)
		c.bmu.Unlock()
		return len(p), nil
	}
	c.bmu.Unlock()
	return c.send(p)
}

// Batch makes the following Writes gather their bytes, until Flush sends them as one message:
// one ZeroMQ frame with many TLS records in it, as a tlszmq client sends a large write.
func (c *Conn) Batch() {
	c.bmu.Lock()
	c.batching = true
	c.bmu.Unlock()
}

// Flush sends what Write gathered since Batch as one message, and ends the batch.
func (c *Conn) Flush() error {
	c.bmu.Lock()
	b := c.batch
	c.batching, c.batch = false, nil
	c.bmu.Unlock()
	if len(b) == 0 {
		return nil
	}
	_, err := c.send(b)
	return err
}

func (c *Conn) send(p []byte) (int, error) {
	frames := make([][]byte, 0, len(c.env)+2)
	frames = append(frames, c.env...)
	frames = append(frames, nil, p)
	if err := c.Send(frames...); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close closes the socket. It is idempotent.
func (c *Conn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.mu.Lock()
		c.closeErr = c.sock.Close()
		c.mu.Unlock()
	})
	return c.closeErr
}

// LocalAddr and RemoteAddr are placeholders: ZeroMQ hides the connection.
func (c *Conn) LocalAddr() net.Addr  { return zmqAddr{} }
func (c *Conn) RemoteAddr() net.Addr { return zmqAddr{} }

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.dl.Lock()
	c.readDL, c.writeDL = t, t
	c.dl.Unlock()
	return nil
}

// SetReadDeadline bounds Read and Recv.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.dl.Lock()
	c.readDL = t
	c.dl.Unlock()
	return nil
}

// SetWriteDeadline bounds how long Write and Send wait for room in the socket's queue.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.dl.Lock()
	c.writeDL = t
	c.dl.Unlock()
	return nil
}

type zmqAddr struct{}

func (zmqAddr) Network() string { return "zmq" }
func (zmqAddr) String() string  { return "zmq" }

// FramedConfig is a crypto/tls client configuration for a TLSZMQ server: the framed protocol
// offered through ALPN, and records always as large as a write allows (no dynamic record
// sizing), so that a write of up to 16 KiB leaves as one record, hence one ZeroMQ frame.
func FramedConfig(roots []byte, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: serverName, NextProtos: []string{ProtocolFramed},
		DynamicRecordSizingDisabled: true, MinVersion: tls.VersionTLS12}
	if roots != nil {
		cfg.RootCAs = x509Pool(roots)
		if cfg.RootCAs == nil {
			return nil, errors.New("attack: no certificate in the roots")
		}
	}
	return cfg, nil
}

// DialFramed connects a crypto/tls client to a TLSZMQ server over a DEALER socket and runs the
// handshake, within timeout. It fails unless the framed protocol was agreed.
func DialFramed(endpoint string, cfg *tls.Config, o *Options, timeout time.Duration) (*tls.Conn, *Conn, error) {
	conn, err := Dial(endpoint, o)
	if err != nil {
		return nil, nil, err
	}
	tc := tls.Client(conn, cfg)
	tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("attack: handshake with %s: %w", endpoint, err)
	}
	tc.SetDeadline(time.Time{})
	if p := tc.ConnectionState().NegotiatedProtocol; p != ProtocolFramed {
		conn.Close()
		return nil, nil, fmt.Errorf("attack: %s agreed on protocol %q, not %q", endpoint, p, ProtocolFramed)
	}
	return tc, conn, nil
}

// AppendPart appends one part in the framed encoding: uvarint(len<<1 | more), then the bytes.
func AppendPart(dst, part []byte, more bool) []byte {
	h := uint64(len(part)) << 1
	if more {
		h |= 1
	}
	dst = binary.AppendUvarint(dst, h)
	return append(dst, part...)
}

// AppendMessage appends a whole message (at least one part) in the framed encoding.
func AppendMessage(dst []byte, parts ...[]byte) []byte {
	if len(parts) == 0 {
		parts = [][]byte{nil}
	}
	for i, p := range parts {
		dst = AppendPart(dst, p, i < len(parts)-1)
	}
	return dst
}

// RecordHeader is the header of a TLS handshake record of 512 bytes and nothing more: five
// bytes, too short to say what the record holds.
var RecordHeader = []byte{0x16, 0x03, 0x01, 0x02, 0x00}

// HelloPrefix returns the first n bytes (n ≥ 11) of what looks like a ClientHello in a
// 512-byte handshake record: the record header, the handshake header (type 1, 508 bytes), the
// client version 3.3, then zeros (16 03 01 02 00 01 00 01 fc 03 03 00 ...). A server cannot
// tell it from the start of a real one, and waits for the rest.
func HelloPrefix(n int) []byte { return HelloRecordPrefix(512, n) }

// HelloRecordPrefix is HelloPrefix for a handshake record of recordLen bytes (at most 16 KiB,
// TLS's limit, so that a server waits for it): the first n bytes, n ≥ 11 and below
// 5+recordLen.
func HelloRecordPrefix(recordLen, n int) []byte {
	p := make([]byte, max(n, 11))
	body := recordLen - 4 // the ClientHello's length: the record less the handshake header
	copy(p, []byte{0x16, 0x03, 0x01, byte(recordLen >> 8), byte(recordLen),
		0x01, byte(body >> 16), byte(body >> 8), byte(body), 0x03, 0x03})
	return p
}

// x509Pool parses PEM roots; nil if none.
func x509Pool(pem []byte) *x509.CertPool {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil
	}
	return pool
}

// Repeat is a payload of n bytes b: the attacks' raw material.
func Repeat(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
