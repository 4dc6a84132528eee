// Package tlszmq runs TLS over ZeroMQ with OpenSSL doing all of the cryptography: the Go port
// of the C++ TLSZMQ design.
//
// # Layers
//
// An [Engine] is one TLS endpoint that owns no socket. Bytes that arrive from ZeroMQ go in with
// [Engine.PutData] (OpenSSL's BIO_write into a memory BIO), [Engine.Read] yields the
// application's data (SSL_read), [Engine.Write] takes the application's data (SSL_write), and
// [Engine.GetData] hands out what OpenSSL's write BIO holds, to leave as a ZeroMQ message. Each
// of these runs the pump, one cgo call into the C shim (ssl.c), which does every one of those
// OpenSSL steps and captures OpenSSL's errors before it returns. Because OpenSSL never owns a
// socket, any ZeroMQ pattern, transport or chain of hops can carry the bytes.
//
// A [Context] is an OpenSSL SSL_CTX made once per program for one [Role] from a [Config],
// shaped like crypto/tls.Config: certificates, CA, server name, client-certificate policy, TLS
// versions, cipher lists, groups, security level, session tickets and FIPS mode.
//
// # Ownership and concurrency
//
// C objects are freed exactly once: by Close, or by a finalizer for a value dropped without
// Close. C never keeps a pointer to Go memory. A Context and a [Client] are safe for
// concurrent use; an Engine is not, and belongs to one goroutine at a time. A [Server]'s socket
// belongs to the goroutine that calls Serve; its sessions' TLS work is spread over worker
// goroutines (ServerOptions.Workers), each engine touched by its own worker only, and its
// handlers run on goroutines of their own, several sessions at once. [Server.Reply] may be
// called from any goroutine.
//
// # Errors
//
// Failures are [*Error] values carrying OpenSSL's own reason strings, with [*AlertError] and
// [*CertificateVerificationError] reachable through errors.As, and [ErrTruncated],
// [ErrFIPSUnavailable] and [ErrInvalidConfig] through errors.Is. A clean close_notify reads as
// io.EOF from an Engine, and as [ErrPeerClosed] (which wraps io.EOF) from a Client.
package tlszmq
