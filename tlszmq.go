package tlszmq

/*
#include <stdlib.h>
#include "ssl.h"
*/
import "C"

import (
	"crypto/x509"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/tlszmq/tlszmq/bio"
)

// Engine is one TLS endpoint that owns no socket: the Go port of the C++ TLSZmq class. Bytes
// from the network go in with PutData, bytes for the network come out of GetData, the
// application's data goes in with Write and comes out of Read. OpenSSL does all of the TLS work
// over a pair of memory BIOs; each call that moves bytes runs the pump (Update) once, which is
// one cgo call: BIO_write of the network bytes, SSL_write of the application's data, the
// SSL_read loop and the drain of the write BIO.
//
// After a frame has been put in, everything SSL_read yields is returned by the next Read as one
// message, as the C++ peers deliver it.
//
// The first fatal error is sticky: every later call returns it, but GetData still hands out
// what OpenSSL queued, such as the alert that tells the peer why.
//
// An Engine is not safe for concurrent use. Close frees its C objects; a finalizer does it for an
// Engine that is dropped without Close.
type Engine struct {
	ctx     *ctxHandle
	c       *C.tz_conn
	cleanup runtime.Cleanup
	role    Role
	debug   io.Writer
	keyLog  io.Writer                   // Config.KeyLogWriter
	verify  func(ConnectionState) error // Config.VerifyConnection, run once the handshake is done
	// serverName is the name a client engine checks the server's certificate against ("" when
	// it checks none), for the error of a mismatch.
	serverName string

	out   bio.Buffer // ciphertext for ZeroMQ, drained from the write BIO
	plain bio.Buffer // plaintext for the application, from SSL_read
	app   bio.Buffer // application data waiting for the handshake to finish

	state     C.int
	pumps     int // tz_pump calls, for the tests that count crossings
	err       error
	closed    bool
	peerCerts []*x509.Certificate

	keyLogLines   []byte // the key-log lines of the current call, copied out of C
	keyLogDropped uint64 // the lines C has dropped that the writer was told of
}

// Room the pump offers for output beyond what the input can produce: a handshake flight, the
// session tickets, alerts. The pump asks for more when it is not enough.
const (
	flightRoom = 16 << 10
	recordRoom = 64 // the most a TLS record adds to its payload (header, tag, padding)
	maxRecord  = 16 << 10
)

// NewClientEngine makes a client engine from a client Context (the C++ TLSZmq client
// constructor): NewEngine with no options. It sends its ClientHello on the first Update, Write
// or PutData. A Context that verifies the server needs Config.ServerName to check the server's
// certificate against (or Config.VerifyChainOnly): without it NewClientEngine fails with
// ErrNoServerName.
func NewClientEngine(ctx *Context) (*Engine, error) {
	return newEngine(ctx, RoleClient, EngineOptions{})
}

// NewServerEngine makes a server engine from a server Context (the C++ TLSZmq server
// constructor): NewEngine with no options. It waits for a ClientHello.
func NewServerEngine(ctx *Context) (*Engine, error) {
	return newEngine(ctx, RoleServer, EngineOptions{})
}

// EngineOptions are what one engine may have of its own beyond its Context's Config. The zero
// value takes everything from the Context.
type EngineOptions struct {
	// ServerName is the name a client engine asks for (SNI) and checks the server's
	// certificate against, instead of Config.ServerName: one Context can serve engines that
	// talk to different servers. A server engine refuses it.
	ServerName string
	// NextProtos are ALPN protocols of the engine's own, preferred before the Context's
	// Config.NextProtos: a client offers them first, a server selects them first. They never
	// make a handshake fail by themselves: a server whose Config.NextProtos is empty takes a
	// client that offers none of them without ALPN. The ZeroMQ layer's Client and Server
	// give their engines ProtocolFramed here. The same bounds as Config.NextProtos apply.
	NextProtos []string
}

// NewEngine makes an engine of the Context's role (a client or a server engine) with options
// of its own. NewClientEngine and NewServerEngine are NewEngine without options.
func NewEngine(ctx *Context, opts EngineOptions) (*Engine, error) {
	return newEngine(ctx, ctx.role, opts)
}

// checksName reports whether a client Context's engines check the server's name.
func (ctx *Context) checksName() bool { return checksName(ctx.role, ctx.config()) }

// checksName reports whether the client engines of a Context made from cfg check the server's
// name.
func checksName(role Role, cfg *Config) bool {
	return role == RoleClient && !cfg.InsecureSkipVerify && !cfg.VerifyChainOnly
}

// newEngine makes an engine of role from a Context of that role. A client engine without
// opts.ServerName takes the Config.ServerName of the C context it is made from: the Context's
// current one (see Context.Reload), which the engine keeps.
func newEngine(ctx *Context, role Role, opts EngineOptions) (*Engine, error) {
	if ctx.role != role {
		return nil, fmt.Errorf("%w: a %v engine needs a %v Context, not a %v one", ErrInvalidConfig, role, role, ctx.role)
	}
	if opts.ServerName != "" && role == RoleServer {
		return nil, fmt.Errorf("%w: EngineOptions.ServerName is for client engines", ErrInvalidConfig)
	}
	if err := checkProtos("EngineOptions.NextProtos", opts.NextProtos); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	h, cctx, err := ctx.slot.acquire()
	if err != nil {
		return nil, err
	}
	cfg := h.cfg
	serverName := opts.ServerName
	if serverName == "" && role == RoleClient {
		serverName = cfg.ServerName
	}
	if serverName == "" && checksName(role, cfg) {
		h.release()
		return nil, fmt.Errorf("%w: set Config.ServerName (the name in the server's certificate); "+
			"Config.VerifyChainOnly checks the chain alone, which is dangerous", ErrNoServerName)
	}
	var name *C.char
	if serverName != "" {
		name = C.CString(serverName)
		defer C.free(unsafe.Pointer(name))
	}
	verifyName := C.int(0)
	if checksName(role, cfg) {
		verifyName = 1
	}
	alpn := alpnWire(opts.NextProtos) // C copies it during the call
	var cerr C.tz_err
	c := C.tz_conn_new(cctx, name, verifyName, bytesPtr(alpn), C.size_t(len(alpn)), &cerr)
	if c == nil {
		h.release()
		return nil, newError(&cerr)
	}
	liveConns.Add(1)
	e := &Engine{ctx: h, c: c, role: role, debug: cfg.Debug, keyLog: cfg.KeyLogWriter, verify: cfg.VerifyConnection}
	if verifyName != 0 {
		e.serverName = serverName
	}
	e.cleanup = runtime.AddCleanup(e, freeConn, connHandle{c, h})
	return e, nil
}

// x509HostnameMismatch is OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH.
const x509HostnameMismatch = 62

// liveConns counts the C connections made and not yet freed, for the leak tests.
var liveConns atomic.Int64

// connHandle is what the safety finalizer needs to free an Engine's C objects.
type connHandle struct {
	c   *C.tz_conn
	ctx *ctxHandle
}

func freeConn(h connHandle) {
	C.tz_conn_free(h.c)
	liveConns.Add(-1)
	h.ctx.release()
}

// Role returns whether the engine is a client or a server.
func (e *Engine) Role() Role { return e.role }

// Write queues p as application data (the C++ write) and runs the pump: once the handshake is
// done, p is encrypted at once and its records wait in GetData; before that it is kept and
// sent when the handshake finishes. A 16 MiB p goes through OpenSSL in one call. Write starts
// the handshake of a client engine. It returns the sticky error, if any.
func (e *Engine) Write(p []byte) (int, error) {
	if err := e.usable(); err != nil {
		return 0, err
	}
	if e.state&C.TZ_SENT_CLOSE != 0 {
		return 0, fmt.Errorf("tlszmq: write after Shutdown: %w", errEngineClosed)
	}
	if e.app.Len() == 0 && e.state&C.TZ_HANDSHAKE_DONE != 0 {
		// The common case: encrypt straight from p, no copy.
		n, _ := e.pump(nil, p, 0, nil)
		if n < len(p) && e.err == nil {
			e.app.Write(p[n:])
		}
	} else {
		e.app.Write(p)
		e.pumpQueued(nil, 0)
	}
	if e.err != nil {
		return 0, e.err
	}
	return len(p), nil
}

// PutData takes bytes that arrived from the network, usually one ZeroMQ frame (the C++
// put_data), and runs the pump. Records may be split across frames in any way. It returns the
// sticky error, if any; GetData may still hold an alert for the peer.
func (e *Engine) PutData(p []byte) error {
	if err := e.usable(); err != nil {
		return err
	}
	e.pumpQueued(p, 0)
	return e.err
}

// PutEOF tells the engine that the transport has ended: no more bytes will come. If the peer
// had not sent close_notify, the stream was truncated, and ErrTruncated becomes the sticky
// error; after a close_notify it is a clean end.
func (e *Engine) PutEOF() error {
	if err := e.usable(); err != nil {
		return err
	}
	e.pumpQueued(nil, C.TZ_IN_EOF)
	if e.err == nil && e.state&C.TZ_PEER_CLOSED == 0 {
		e.err = &Error{Op: "reading", kind: ErrTruncated}
	}
	return e.err
}

// Update runs the pump once without new input (the C++ update): it retries application data
// held back by the handshake and collects whatever OpenSSL has to send.
func (e *Engine) Update() error {
	if err := e.usable(); err != nil {
		return err
	}
	e.pumpQueued(nil, 0)
	return e.err
}

// Read returns the application data that arrived since the last Read, as one message (the C++
// read). With none yet it returns ErrWouldBlock; once the data is drained, io.EOF after the
// peer's close_notify, or the sticky error.
func (e *Engine) Read() ([]byte, error) {
	if e.plain.Len() == 0 {
		return e.AppendRead(nil)
	}
	return e.AppendRead(make([]byte, 0, e.plain.Len()))
}

// AppendRead is Read appending to dst, so that a caller can reuse one buffer.
func (e *Engine) AppendRead(dst []byte) ([]byte, error) {
	if e.plain.Len() > 0 {
		return e.plain.Take(dst), nil
	}
	switch {
	case e.closed:
		return dst, errEngineClosed
	case e.err != nil:
		return dst, e.err
	case e.state&C.TZ_PEER_CLOSED != 0:
		return dst, io.EOF
	}
	return dst, ErrWouldBlock
}

// GetData returns the bytes that should leave as one ZeroMQ message (the C++ get_data), or nil
// when there are none. After a fatal error it still returns what OpenSSL queued, such as the
// alert.
func (e *Engine) GetData() []byte {
	if e.out.Len() == 0 {
		return nil
	}
	return e.AppendData(make([]byte, 0, e.out.Len()))
}

// AppendData is GetData appending to dst, so that a caller can reuse one buffer.
func (e *Engine) AppendData(dst []byte) []byte { return e.out.Take(dst) }

// TakeData is GetData without a copy: the bytes come in the engine's own storage, which
// becomes the caller's (nil when there are none). Storage given to bio.Recycle once the bytes
// have been sent serves a later engine's output; storage that is simply dropped is garbage.
func (e *Engine) TakeData() []byte { return e.out.Detach() }

// CanRecv reports whether Read has application data (the C++ can_recv).
func (e *Engine) CanRecv() bool { return e.plain.Len() > 0 }

// NeedsWrite reports whether GetData has bytes for the network (the C++ needs_write).
func (e *Engine) NeedsWrite() bool { return e.out.Len() > 0 }

// Shutdown queues close_notify (the C++ shutdown); GetData returns it. Writes fail after it.
// Before the handshake has finished there is no session to close and nothing is sent.
func (e *Engine) Shutdown() error {
	if err := e.usable(); err != nil {
		return err
	}
	e.pump(nil, nil, C.TZ_SHUTDOWN, nil)
	return e.err
}

// ReleaseBuffers lets the engine's buffers go where they are empty, so that an idle session
// holds no memory for the messages it carried: its Go buffers, and the storage of its memory
// BIOs (one cgo call). OpenSSL's record buffers are released by OpenSSL itself when idle
// (SSL_MODE_RELEASE_BUFFERS). Buffers grow again when needed. A Server calls it for every
// session that has been quiet for a second.
func (e *Engine) ReleaseBuffers() {
	e.out.Trim()
	e.plain.Trim()
	e.app.Trim()
	if e.c != nil {
		C.tz_trim(e.c)
		runtime.KeepAlive(e)
	}
}

// bioStorage is the storage the engine's memory BIOs hold, for the tests.
func (e *Engine) bioStorage() int {
	defer runtime.KeepAlive(e)
	return int(C.tz_bio_storage(e.c))
}

// State is what an engine's calls have left, in one value: what its transport has to do next.
// A transport loop needs nothing else: send Pending bytes (GetData) when there are any, Read
// when Readable, stop when Err is set or the peer has closed.
type State struct {
	HandshakeDone bool  // the handshake has finished
	Readable      int   // bytes of application data waiting for Read
	Pending       int   // bytes waiting for GetData, to leave as one message
	PeerClosed    bool  // the peer's close_notify came: no more data will
	Err           error // the first fatal error, sticky (ErrClosed after Close); nil while usable
}

// State returns the engine's state. HandshakeComplete, CanRecv, NeedsWrite, PeerClosed and Err
// give the same facts one at a time, under the C++ TLSZmq names.
func (e *Engine) State() State {
	return State{HandshakeDone: e.HandshakeComplete(), Readable: e.plain.Len(), Pending: e.out.Len(),
		PeerClosed: e.PeerClosed(), Err: e.usable()}
}

// Err returns the sticky error, or nil.
func (e *Engine) Err() error { return e.err }

// HandshakeComplete reports whether the handshake has finished.
func (e *Engine) HandshakeComplete() bool { return e.state&C.TZ_HANDSHAKE_DONE != 0 }

// PeerClosed reports whether the peer has sent close_notify.
func (e *Engine) PeerClosed() bool { return e.state&C.TZ_PEER_CLOSED != 0 }

// ConnectionState describes an established session.
type ConnectionState struct {
	HandshakeComplete bool
	Version           uint16 // VersionTLS12 or VersionTLS13
	VersionName       string // OpenSSL's name, e.g. "TLSv1.3"
	CipherSuite       string // OpenSSL's name, e.g. "TLS_AES_256_GCM_SHA384"
	DidResume         bool   // the handshake resumed an earlier session
	// NegotiatedProtocol is the ALPN protocol agreed on (see Config.NextProtos), "" for
	// none: ProtocolFramed between tlszmq's ZeroMQ peers, "" with the C++ peers.
	NegotiatedProtocol string
	// PeerCertificates is the chain the peer sent, its own certificate first; empty when the
	// peer sent none.
	PeerCertificates []*x509.Certificate
	// Verified is true when the peer's chain was verified (the Context asks for verification
	// and OpenSSL's result is X509_V_OK); VerifyResult and VerifyText hold OpenSSL's result.
	Verified     bool
	VerifyResult int
	VerifyText   string
	PeerClosed   bool
}

// ConnectionState returns the negotiated version and cipher, the peer's certificates and their
// verification result. Before the handshake has finished only HandshakeComplete is set.
func (e *Engine) ConnectionState() ConnectionState {
	st := ConnectionState{HandshakeComplete: e.HandshakeComplete(), PeerClosed: e.PeerClosed()}
	if !st.HandshakeComplete || e.closed {
		return st
	}
	c := e.c
	st.Version = uint16(c.version)
	st.VersionName = C.GoString(c.version_name)
	st.CipherSuite = C.GoString(c.cipher)
	st.DidResume = e.state&C.TZ_RESUMED != 0
	st.NegotiatedProtocol = C.GoStringN((*C.char)(unsafe.Pointer(c.alpn)), C.int(c.alpn_len))
	st.VerifyResult = int(c.verify_result)
	st.VerifyText = C.GoString(c.verify_text)
	st.PeerCertificates = e.peerChain()
	st.Verified = st.VerifyResult == 0 && len(st.PeerCertificates) > 0 && e.verifies()
	return st
}

// verifies reports whether this engine verifies the peer.
func (e *Engine) verifies() bool { return e.c.verify_peer != 0 }

// peerChain reads the peer's certificates out of OpenSSL once and keeps them.
func (e *Engine) peerChain() []*x509.Certificate {
	if e.peerCerts != nil {
		return e.peerCerts
	}
	n := int(C.tz_peer_chain_len(e.c))
	certs := make([]*x509.Certificate, 0, n)
	for i := range n {
		size := C.tz_peer_cert_der(e.c, C.int(i), nil, 0)
		der := make([]byte, int(size))
		if size == 0 || C.tz_peer_cert_der(e.c, C.int(i), (*C.uchar)(unsafe.Pointer(&der[0])), size) != size {
			continue
		}
		if cert, err := x509.ParseCertificate(der); err == nil {
			certs = append(certs, cert)
		}
	}
	runtime.KeepAlive(e)
	e.peerCerts = certs
	return certs
}

// Session returns the current session in OpenSSL's DER form, for resuming it from another
// client engine with SetSession. With TLS 1.3 the session arrives in a ticket after the
// handshake, with the server's first reply.
func (e *Engine) Session() ([]byte, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	if !e.HandshakeComplete() {
		return nil, ErrHandshakeIncomplete
	}
	n := C.tz_session_der(e.c, nil, 0)
	if n == 0 {
		return nil, fmt.Errorf("tlszmq: no resumable session (tickets disabled, or none received yet)")
	}
	der := make([]byte, int(n))
	C.tz_session_der(e.c, (*C.uchar)(unsafe.Pointer(&der[0])), n)
	runtime.KeepAlive(e)
	return der, nil
}

// SetSession offers a session from Session for resumption. Call it on a client engine before
// its handshake starts.
func (e *Engine) SetSession(der []byte) error {
	if err := e.usable(); err != nil {
		return err
	}
	if len(der) == 0 {
		return fmt.Errorf("%w: empty session", ErrInvalidConfig)
	}
	var cerr C.tz_err
	ok := C.tz_session_set(e.c, (*C.uchar)(unsafe.Pointer(&der[0])), C.size_t(len(der)), &cerr)
	runtime.KeepAlive(e)
	if ok == 0 {
		return newError(&cerr)
	}
	return nil
}

// Close frees the engine's C objects. It sends nothing: call Shutdown and send GetData first for
// a clean close. Close is idempotent and safe after errors.
func (e *Engine) Close() error {
	if e.closed {
		return nil
	}
	e.closed = true
	e.cleanup.Stop()
	freeConn(connHandle{e.c, e.ctx})
	e.c = nil
	e.out.Release()
	e.plain.Release()
	e.app.Release()
	return nil
}

func (e *Engine) usable() error {
	if e.closed {
		return errEngineClosed
	}
	return e.err
}

// PutDataInPlace is PutData for a frame the caller gives up, the engine's zero-copy path:
// once the handshake is done, and when nothing is left over from earlier frames, its records
// are decrypted into the frame's own memory and the plaintext returned as a slice of it, with
// no copy and no buffer of the engine's. Plaintext it could not place there (before the
// handshake is done, or with bytes left over) waits in the engine as after PutData, for Read.
// The frame must not be used after the call, except through the returned slice.
func (e *Engine) PutDataInPlace(frame []byte) ([]byte, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	if e.state&(C.TZ_HANDSHAKE_DONE|C.TZ_IN_PENDING) != C.TZ_HANDSHAKE_DONE || e.app.Len() > 0 || e.plain.Len() > 0 {
		return nil, e.PutData(frame)
	}
	_, placed := e.pump(frame, nil, 0, frame)
	return frame[:placed], e.err
}

// pumpQueued runs the pump with the application data that waits in e.app. With
// Config.VerifyConnection, data written before the handshake has finished waits for the hook
// to pass the peer: a second pump sends it, after the one that finished the handshake.
func (e *Engine) pumpQueued(in []byte, flags C.int) {
	app := e.app.Bytes()
	held := e.verify != nil && e.state&C.TZ_HANDSHAKE_DONE == 0 && len(app) > 0
	if held {
		app = nil
	}
	written, _ := e.pump(in, app, flags, nil)
	if held && e.err == nil && e.state&C.TZ_HANDSHAKE_DONE != 0 {
		written, _ = e.pump(nil, e.app.Bytes(), flags&C.TZ_IN_EOF, nil)
	}
	e.app.Discard(written)
	if e.err != nil {
		e.app.Release()
	}
}

// pump runs tz_pump once, and again only while OpenSSL has more than the room offered, which
// the sizes below make rare. It returns how many bytes of app OpenSSL took. Plaintext goes to
// e.plain; with dst, the first call's plaintext goes to dst instead (in may be dst: see
// tz_pump) and placed says how much, and only what did not fit there goes to e.plain.
func (e *Engine) pump(in, app []byte, flags C.int, dst []byte) (written, placed int) {
	wasDone := e.state&C.TZ_HANDSHAKE_DONE != 0
	outRoom := flightRoom + len(app) + (len(app)/maxRecord+1)*recordRoom
	plainRoom := len(in) + maxRecord + recordRoom
	for {
		out := e.out.Spare(outRoom)
		plain := dst
		if dst == nil {
			plain = e.plain.Spare(plainRoom)
		}
		e.pumps++
		e.state = C.tz_pump(e.c, bytesPtr(in), C.size_t(len(in)), bytesPtr(app), C.size_t(len(app)),
			bytesPtr(out), C.size_t(len(out)), bytesPtr(plain), C.size_t(len(plain)), flags)
		c := e.c
		aw, ol, pl := int(c.app_written), int(c.out_len), int(c.plain_len)
		e.out.Commit(ol)
		if dst != nil {
			placed, dst = pl, nil
		} else {
			e.plain.Commit(pl)
			plainRoom = 2 * len(plain)
		}
		if e.debug != nil {
			e.trace(len(in), len(app), aw, ol)
		}
		if c.keylog_len > 0 { // copied now: the next tz_pump starts the buffer again
			e.keyLogLines = append(e.keyLogLines, unsafe.Slice((*byte)(unsafe.Pointer(c.keylog)), int(c.keylog_len))...)
		}
		written += aw
		app = app[aw:]
		in, flags = nil, flags&C.TZ_IN_EOF
		if e.state&(C.TZ_PLAIN_MORE|C.TZ_OUT_MORE) == 0 {
			break
		}
		outRoom = 2 * len(out)
	}
	if e.state&C.TZ_FATAL != 0 && e.err == nil {
		ce := connError(e.c)
		if ce.Verify != nil {
			ce.Verify.UnverifiedChain = e.peerChain()
			if ce.Verify.Code == x509HostnameMismatch {
				ce.Verify.ServerName = e.serverName
			}
		}
		e.err = ce
	}
	if e.keyLog != nil && (len(e.keyLogLines) > 0 || uint64(e.c.keylog_dropped) != e.keyLogDropped) {
		e.writeKeyLog()
	}
	if !wasDone && e.verify != nil && e.err == nil && e.state&C.TZ_HANDSHAKE_DONE != 0 {
		e.verifyConnection()
	}
	// Storage borrowed for output that did not come goes back to the pool at once.
	e.out.Trim()
	e.plain.Trim()
	runtime.KeepAlive(e)
	return written, placed
}

// verifyConnection runs Config.VerifyConnection at the end of the pump that finished the
// handshake, before anything of the session reaches the application. If the hook refuses the
// peer, what that pump read is dropped, close_notify is queued for the peer (OpenSSL has no
// call that sends bad_certificate, as crypto/tls does, once the handshake is over: an alert
// is only sent by OpenSSL's own checks), and the hook's error becomes the sticky error.
func (e *Engine) verifyConnection() {
	err := e.verify(e.ConnectionState())
	if err == nil {
		return
	}
	e.plain.Release()
	e.pump(nil, nil, C.TZ_SHUTDOWN, nil)
	e.err = &Error{Op: "handshake", kind: hookError{err}}
}

// writeKeyLog hands the key-log lines of the current call to Config.KeyLogWriter, with a
// comment line after them when C dropped lines, and wipes Go's copy. The writer's error is
// ignored: a key log never fails a session.
func (e *Engine) writeKeyLog() {
	if dropped := uint64(e.c.keylog_dropped); dropped != e.keyLogDropped {
		e.keyLogLines = fmt.Appendf(e.keyLogLines, "# tlszmq: %d key log lines dropped: more than %d bytes of them in one call\n",
			dropped-e.keyLogDropped, C.TZ_KEYLOG_MAX)
		e.keyLogDropped = dropped
	}
	_, _ = e.keyLog.Write(e.keyLogLines)
	clear(e.keyLogLines)
	e.keyLogLines = nil // a handshake writes once or twice; the engine keeps no storage for it
}

// trace writes the original article's DEBUG lines for one pump.
func (e *Engine) trace(in, app, appWritten, out int) {
	if in > 0 {
		fmt.Fprintf(e.debug, "DEBUG: %d written to BIO\n", in)
	}
	if app > 0 {
		if appWritten == 0 {
			appWritten = -1
		}
		fmt.Fprintf(e.debug, "DEBUG: %d written to SSL\n", appWritten)
	}
	if out > 0 {
		fmt.Fprintf(e.debug, "DEBUG: %d read from BIO\n", out)
	}
}

// bytesPtr returns the address of b's first byte for C, nil for an empty b.
func bytesPtr(b []byte) *C.uchar {
	if len(b) == 0 {
		return nil
	}
	return (*C.uchar)(unsafe.Pointer(unsafe.SliceData(b)))
}

// testFlood makes an established engine send n times a KeyUpdate (keyUpdate 1: not requested,
// 2: requested, 0: none) followed by a record of appLen bytes of application data (none when
// appLen is 0), as a hostile peer would, and returns the bytes for the other side: OpenSSL
// is the flooding peer. For the tests.
func (e *Engine) testFlood(n, keyUpdate, appLen, room int) ([]byte, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	out := make([]byte, room)
	ok := C.tz_test_flood(e.c, C.int(n), C.int(keyUpdate), C.size_t(appLen), bytesPtr(out), C.size_t(len(out)))
	runtime.KeepAlive(e)
	if ok == 0 {
		return nil, connError(e.c)
	}
	return out[:int(e.c.out_len)], nil
}
