// Package tlszmq runs TLS over ZeroMQ with OpenSSL 3 doing all of the cryptography: the Go port
// of the C++ TLSZMQ design (Ian Barber, "TLS and ZeroMQ" (2012),
// https://github.com/ianbarber/TLSZMQ). The bytes on the wire are the C++ peers', so a Go
// client works with a C++ server and a C++ client with a Go server.
//
// # Layers
//
// The engine. An [Engine] is one TLS endpoint that owns no socket. Bytes that arrive from the
// network go in with [Engine.PutData] (OpenSSL's BIO_write into a memory BIO), [Engine.Read]
// yields the application's data (SSL_read), [Engine.Write] takes the application's data
// (SSL_write), and [Engine.GetData] hands out what OpenSSL's write BIO holds, to leave as one
// ZeroMQ message. Each of these runs the pump, one cgo call into the C shim (ssl.c), which does
// every one of those OpenSSL steps and captures OpenSSL's errors before it returns. Because
// OpenSSL never owns a socket, any ZeroMQ pattern, transport or chain of hops can carry the
// bytes. A [Context] is the OpenSSL SSL_CTX that engines are made from, once per program and
// [Role], from a [Config] shaped like crypto/tls.Config.
//
// The ZeroMQ layer. A [Client] is a TLS client over a ZeroMQ REQ or DEALER socket; a [Server]
// is a TLS server over a ROUTER socket, with one engine (a session) per peer, keyed on the whole
// envelope, and a [Handler] that answers each request. Both speak the C++ peers' format: every
// message is ["", tls-bytes], and with a C++ peer a message is one part. Two tlszmq peers
// also agree by ALPN on [ProtocolFramed], which carries multi-part and empty messages; the
// shim knows no message format, and [Config.NextProtos] gives engines ALPN of the user's own.
// The ZeroMQ layer drives its engines through the public Engine API alone ([NewEngine],
// [Engine.State], [Engine.TakeData], [Engine.PutDataInPlace]), as a transport of a user's own
// would.
//
// The commands. tlsserver, tlsclient and tlsdevice (under cmd/) are drop-in replacements for
// the C++ programs, built on the ZeroMQ layer; the tlszmq command holds a demo, a key and
// certificate generator, a benchmark and a TCP bridge. They are programs, not API.
//
// # Ownership
//
// Every C object is owned by the Go value that made it and freed exactly once: by Close, which
// is idempotent, or by a cleanup for an [Engine] or [Context] dropped without Close. (The
// library contexts of FIPS mode are shared by the Contexts with the same configuration and
// kept for the life of the process.) C never keeps a pointer to Go memory: a cgo call uses the
// Go buffers it is given for the length of the call and keeps none of them. An Engine keeps its
// Context alive, so a Context may be closed while its engines still run. A Client and a Server
// own their socket and engines: close them when done, so that close_notify is sent and the
// socket is freed.
//
// # Concurrency
//
//	Context  safe for concurrent use.
//	Config   read by NewContext, which keeps a copy: do not change it during the call. One
//	         Config may serve several Contexts.
//	Engine   not safe for concurrent use: one goroutine at a time.
//	Client   safe for concurrent use. Over DEALER, concurrent Requests pipeline on one TLS
//	         session and each gets its own reply; over REQ they take turns. Close from any
//	         goroutine ends the others' waits.
//	Server   Serve on one goroutine, which owns the ROUTER socket; Reply, Close, Stats and
//	         Endpoint from any goroutine.
//	Handler  called concurrently for different sessions; within one session one call at a
//	         time, in the order the requests came. A call that takes more than a millisecond
//	         leaves its worker to the other sessions (see ServerOptions.Workers).
//	Peer     the same *Peer for a session's whole life; read it, do not change it.
//
// A ZeroMQ socket must not be used by two threads at once: the Client moves its socket between
// goroutines under one lock, and the Server's socket stays with Serve's goroutine while the
// sessions' TLS work runs on the workers, each session on one worker for its whole life.
//
// # Argument lifetimes
//
// Slices passed in may be reused by the caller once the call returns; slices returned are the
// caller's:
//
//   - [Engine.Write] encrypts p at once, or copies it to wait for the handshake; [Engine.PutData]
//     hands p to OpenSSL's read BIO, which copies it. [Engine.GetData] and [Engine.Read] return
//     new slices; [Engine.AppendData] and [Engine.AppendRead] append to the caller's.
//   - The zero-copy pair: [Engine.TakeData] hands over the engine's own storage, which is the
//     caller's from then on; [Engine.PutDataInPlace] takes a frame the caller gives up and may
//     decrypt it where it lies, returning the plaintext as a slice of it.
//   - [Client.Send], [Client.Queue] and [Client.Request] encrypt their parts, or copy them into
//     the batch Queue gathers, before they return. The messages [Client.Recv] and
//     [Client.Request] return are not touched by the client again.
//   - A Handler's request is the handler's to keep: the server neither reuses nor changes its
//     parts after the handler returns. The parts of one message may share one array, each
//     capped at its length, so appending to one never writes over another.
//   - A Handler's reply is encrypted after the handler returns: do not change it afterwards.
//     [Server.Reply] has encrypted its reply when it returns.
//   - [NewContext] copies the Config, byte slices included, and [NewClient] its
//     ClientOptions; ClientOptions.Session is read by NewClient only.
//
// # Errors
//
// Every error message starts with one "tlszmq:". There are two error types and a set of
// sentinels:
//
//   - [*Error] is a failed OpenSSL step: Op names the step, Reasons carries OpenSSL's own
//     reasons, captured in the failing call; Alert ([*AlertError]) and Verify
//     ([*CertificateVerificationError], with the peer's UnverifiedChain, its text naming the
//     certificate's subject and issuer) are reachable through errors.As.
//   - [*OpError] is the error of a Client or Server call: Op, Endpoint (or the peer a reply was
//     for) and the cause, which errors.Is and errors.As find through it.
//   - errors.Is finds the sentinels: [ErrTimeout] (with context.DeadlineExceeded for a
//     Client's wait), [ErrPeerClosed] (with io.EOF), [ErrClosed], [ErrTruncated] (with
//     io.ErrUnexpectedEOF), [ErrWouldBlock] (nothing to read yet, from an Engine),
//     [ErrFIPSUnavailable], [ErrInvalidConfig], [ErrNoServerName], [ErrReplyOwed],
//     [ErrMessageTooLarge], [ErrHandshakeIncomplete], [ErrTooManyKeyUpdates] and
//     [ErrTooManyRecords]. [ErrDeferred] is returned by a Handler, not to one.
//
// An Engine's first fatal error is sticky: every later call returns it, while GetData still
// hands out the alert OpenSSL queued for the peer. A clean close_notify reads as io.EOF from
// an Engine, and as ErrPeerClosed from a Client. An encrypted private key needs
// Config.KeyPassword: without it NewContext fails with an error that says so, and OpenSSL
// never asks for a password on the terminal.
package tlszmq
