package tlszmq

/*
#include "ssl.h"
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
*/
import "C"

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tlszmq/tlszmq/bio"
)

// ErrClosed is wrapped by the error of an Engine, Context, Client or Server used after Close;
// the error names which.
var ErrClosed = errors.New("tlszmq: use of a closed engine, context, client or server")

// closedError is the error of one kind of value used after Close: errors.Is finds ErrClosed.
type closedError string

func (c closedError) Error() string        { return "tlszmq: use of a closed " + string(c) }
func (c closedError) Is(target error) bool { return target == ErrClosed }

const (
	errEngineClosed  = closedError("engine")
	errContextClosed = closedError("context")
	errClientClosed  = closedError("client")
	errServerClosed  = closedError("server")
)

// OpError is the error of a Client or Server call: what it was doing, on which endpoint (or
// for which peer), and why. Err is the cause: an [*Error] from OpenSSL, ErrTimeout,
// ErrPeerClosed, ErrClosed, ErrNoServerName, a ZeroMQ error, which errors.Is and errors.As
// find through it.
type OpError struct {
	Op       string // "request", "send", "receive", "handshake", "serve", "reply", ...
	Endpoint string // the Client's or Server's endpoint, or the peer a reply was for
	Err      error
}

// Error returns "tlszmq: <op> <endpoint>: <cause>", with one "tlszmq:" prefix.
func (e *OpError) Error() string {
	return "tlszmq: " + e.Op + " " + e.Endpoint + ": " + strings.TrimPrefix(e.Err.Error(), "tlszmq: ")
}

// Unwrap returns the cause.
func (e *OpError) Unwrap() error { return e.Err }

// opError wraps err, unless it is an OpError already.
func opError(op, endpoint string, err error) error {
	if _, ok := err.(*OpError); ok || err == nil {
		return err
	}
	return &OpError{Op: op, Endpoint: endpoint, Err: err}
}

// timedOut is the cause of a wait that ran out of time, by a Timeout option or a context's
// deadline: errors.Is finds both ErrTimeout and context.DeadlineExceeded.
type timedOut struct{}

func (timedOut) Error() string { return "timed out" }
func (timedOut) Is(target error) bool {
	return target == ErrTimeout || target == context.DeadlineExceeded
}

// Timeout reports true, as net.Error's does.
func (timedOut) Timeout() bool { return true }

// ErrWouldBlock is returned by Engine.Read when no application data has arrived yet: more may
// come with the next PutData. It is the memory BIO's "retry", never the end of the stream
// (that is io.EOF, after the peer's close_notify). It is bio.ErrWouldBlock.
var ErrWouldBlock = bio.ErrWouldBlock

// ErrTruncated reports a transport that ended (see [Engine.PutEOF]) without the peer's
// close_notify: the data may have been cut short by an attacker or a crash. A clean end reads
// as io.EOF instead. It wraps io.ErrUnexpectedEOF.
var ErrTruncated = fmt.Errorf("tlszmq: stream truncated: the transport ended without close_notify: %w", io.ErrUnexpectedEOF)

// ErrFIPSUnavailable is wrapped by the error of a FIPS Context whose FIPS provider could not be
// loaded or failed its checks. The error quotes OpenSSL's reason.
var ErrFIPSUnavailable = errors.New("tlszmq: FIPS mode unavailable")

// ErrTooManyKeyUpdates is wrapped by the error of a session whose peer sent more TLS 1.3
// KeyUpdate messages in one frame than Config.MaxKeyUpdates allows. The error's reason gives
// the count.
var ErrTooManyKeyUpdates = errors.New("tlszmq: peer sent too many KeyUpdate messages")

// ErrTooManyRecords is wrapped by the error of a session whose peer sent more TLS records in
// one frame than Config.MaxRecordsPerPump allows. The error's reason gives the count.
var ErrTooManyRecords = errors.New("tlszmq: peer sent too many TLS records in one frame")

// ErrNoServerName is returned when a client that verifies the server's certificate has no
// name to check it against: no Config.ServerName, no ClientOptions.ServerName, and no host in
// the endpoint (ipc://, inproc://, a bound endpoint). The error says how to give one; a client
// that means to check the chain alone sets Config.VerifyChainOnly.
var ErrNoServerName = errors.New("tlszmq: no server name to verify the server's certificate against")

// ErrHandshakeIncomplete is returned by calls that need an established session, such as
// [Engine.Session] before the handshake has finished.
var ErrHandshakeIncomplete = errors.New("tlszmq: the handshake has not finished")

// AlertError is a TLS alert that ended the session: one the peer sent (Sent false, the peer
// rejected us) or one this side sent (Sent true, we rejected the peer).
type AlertError struct {
	Code uint8  // the alert description, e.g. 48 for unknown_ca
	Text string // OpenSSL's long text, e.g. "unknown CA"
	Sent bool   // true: sent to the peer; false: received from it
}

// Error returns "tlszmq: alert received: unknown CA" or "tlszmq: alert sent: ...".
func (a *AlertError) Error() string {
	dir := "received"
	if a.Sent {
		dir = "sent"
	}
	return fmt.Sprintf("tlszmq: alert %s: %s", dir, a.Text)
}

// CertificateVerificationError is a failed verification of the peer's certificate chain.
type CertificateVerificationError struct {
	Code   int    // OpenSSL's X509_V_ERR_* code, e.g. 20
	Reason string // OpenSSL's text, e.g. "unable to get local issuer certificate"
	// UnverifiedChain is the chain the peer presented, its own certificate first (empty if
	// it presented none).
	UnverifiedChain []*x509.Certificate
	// ServerName is the name a client checked the certificate against, for a hostname
	// mismatch (Code 62); "" otherwise.
	ServerName string
}

// Error returns "tlszmq: certificate verify failed: <reason>", followed by the name checked
// for a hostname mismatch and the subject and issuer of the peer's certificate:
// "hostname mismatch: not valid for "db.example" (subject CN=localhost; issuer CN=Test CA)".
func (v *CertificateVerificationError) Error() string {
	return "tlszmq: certificate verify failed: " + v.details()
}

// details is the reason, the name checked for a hostname mismatch, and the names of the peer's
// certificate.
func (v *CertificateVerificationError) details() string {
	reason := v.Reason
	if v.ServerName != "" {
		reason += fmt.Sprintf(": not valid for %q", v.ServerName)
	}
	return reason + v.names()
}

// names is " (subject ...; issuer ...)" for the peer's certificate, or "".
func (v *CertificateVerificationError) names() string {
	if len(v.UnverifiedChain) == 0 {
		return ""
	}
	c := v.UnverifiedChain[0]
	return fmt.Sprintf(" (subject %s; issuer %s)", c.Subject, c.Issuer)
}

// Error is the error of a failed OpenSSL step. It carries OpenSSL's own reasons, captured in
// the C call that failed, and, where they apply, the TLS alert and the certificate
// verification failure, which errors.As finds; errors.Is finds ErrTruncated,
// ErrFIPSUnavailable, ErrTooManyKeyUpdates, ErrTooManyRecords, and the error with which
// Config.VerifyConnection refused a session.
type Error struct {
	Op      string                        // the step that failed, e.g. "handshake"
	Reasons []string                      // OpenSSL's reasons, oldest first: "SSL routines: no shared cipher"
	Alert   *AlertError                   // the alert that ended the session, if any
	Verify  *CertificateVerificationError // the certificate verification failure, if any
	kind    error                         // a sentinel such as ErrTruncated, a hookError, or nil
}

// Error returns "tlszmq: <op>: <cause> [<OpenSSL reasons>] (<alert>)".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("tlszmq: ")
	b.WriteString(e.Op)
	switch {
	case e.Verify != nil:
		b.WriteString(": certificate verify failed: ")
		b.WriteString(e.Verify.details())
	case e.kind != nil:
		b.WriteString(": ")
		b.WriteString(strings.TrimPrefix(e.kind.Error(), "tlszmq: "))
	}
	if len(e.Reasons) > 0 {
		if e.Verify != nil || e.kind != nil {
			b.WriteString(" [")
			b.WriteString(strings.Join(e.Reasons, "; "))
			b.WriteString("]")
		} else {
			b.WriteString(": ")
			b.WriteString(strings.Join(e.Reasons, "; "))
		}
	}
	if e.Alert != nil {
		dir := "received"
		if e.Alert.Sent {
			dir = "sent"
		}
		fmt.Fprintf(&b, " (alert %s: %s)", dir, e.Alert.Text)
	}
	return b.String()
}

// Unwrap returns the alert, the verification failure and the sentinel the error carries.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.kind != nil {
		errs = append(errs, e.kind)
	}
	if e.Alert != nil {
		errs = append(errs, e.Alert)
	}
	if e.Verify != nil {
		errs = append(errs, e.Verify)
	}
	return errs
}

// hookError is the cause of an engine's error when Config.VerifyConnection refused the peer:
// errors.Is and errors.As find the hook's own error through it.
type hookError struct{ err error }

func (h hookError) Error() string { return "refused by Config.VerifyConnection: " + h.err.Error() }
func (h hookError) Unwrap() error { return h.err }

// refusedByHook reports whether err is an engine's error after Config.VerifyConnection
// refused the peer.
func refusedByHook(err error) bool {
	var h hookError
	return errors.As(err, &h)
}

// says reports whether one of OpenSSL's reasons contains one of the texts.
func (e *Error) says(texts ...string) bool {
	for _, r := range e.Reasons {
		for _, t := range texts {
			if strings.Contains(r, t) {
				return true
			}
		}
	}
	return false
}

// newError turns a tz_err that C filled into an Error.
func newError(ce *C.tz_err) *Error {
	e := &Error{Op: C.GoString(&ce.where[0])}
	if text := C.GoString(&ce.text[0]); text != "" {
		e.Reasons = strings.Split(text, "\n")
	}
	switch ce.cause {
	case C.TZ_CAUSE_KEY_UPDATES:
		e.kind = ErrTooManyKeyUpdates
	case C.TZ_CAUSE_RECORDS:
		e.kind = ErrTooManyRecords
	}
	if ce.lib == C.ERR_LIB_SSL {
		switch ce.reason {
		case C.SSL_R_UNEXPECTED_EOF_WHILE_READING:
			e.kind = ErrTruncated
		case C.SSL_R_CERTIFICATE_VERIFY_FAILED:
			if ce.verify_result != C.X509_V_OK {
				e.Verify = &CertificateVerificationError{Code: int(ce.verify_result), Reason: C.GoString(ce.verify_text)}
			}
		}
	}
	return e
}

// connError builds the sticky error of a connection from its captured error and alerts.
func connError(c *C.tz_conn) *Error {
	var e *Error
	if c.err != nil {
		e = newError(c.err)
	} else {
		e = &Error{Op: "the connection", Reasons: []string{"failed without a recorded error"}}
	}
	switch {
	case c.alert_recv >= 0 && c.alert_recv_fatal != 0:
		e.Alert = &AlertError{Code: uint8(c.alert_recv), Text: alertText(uint8(c.alert_recv))}
	case c.alert_sent >= 0 && c.alert_sent_fatal != 0:
		e.Alert = &AlertError{Code: uint8(c.alert_sent), Text: alertText(uint8(c.alert_sent)), Sent: true}
	}
	return e
}

// alertTexts holds OpenSSL's long alert texts, completed with the TLS 1.3 alerts that OpenSSL
// 3.0's SSL_alert_desc_string_long calls "unknown" (RFC 8446, section 6).
var alertTexts = map[uint8]string{
	0: "close notify", 10: "unexpected_message", 20: "bad record mac", 21: "decryption failed",
	22: "record overflow", 30: "decompression failure", 40: "handshake failure",
	41: "no certificate", 42: "bad certificate", 43: "unsupported certificate",
	44: "certificate revoked", 45: "certificate expired", 46: "certificate unknown",
	47: "illegal parameter", 48: "unknown CA", 49: "access denied", 50: "decode error",
	51: "decrypt error", 60: "export restriction", 70: "protocol version",
	71: "insufficient security", 80: "internal error", 86: "inappropriate fallback",
	90: "user canceled", 100: "no renegotiation", 109: "missing extension",
	110: "unsupported extension", 111: "certificate unobtainable", 112: "unrecognized name",
	113: "bad certificate status response", 114: "bad certificate hash value",
	115: "unknown PSK identity", 116: "certificate required", 120: "no application protocol",
}

// alertText returns the text of a TLS alert description, e.g. "unknown CA" for 48.
func alertText(code uint8) string {
	if s, ok := alertTexts[code]; ok {
		return s
	}
	return fmt.Sprintf("alert %d", code)
}
