// Package cbench runs the engine benchmarks' loops in plain C against OpenSSL: two SSL objects
// over memory BIOs in one thread, with no Go in the loop. It is the limit that the Go engine's
// figures are compared with.
package cbench

/*
#cgo pkg-config: libssl libcrypto
#include <stdlib.h>
#include "cbench.h"
*/
import "C"

import (
	"errors"
	"time"
	"unsafe"
)

// Pair is a client and a server OpenSSL context in C.
type Pair struct{ p *C.cb_pair }

// NewPair loads the server's certificate and key; suite is a TLS 1.3 suite name, or with
// tls12 a TLS 1.2 cipher name ("" for OpenSSL's default).
func NewPair(certFile, keyFile, suite string, tls12 bool) (*Pair, error) {
	cc, ck := C.CString(certFile), C.CString(keyFile)
	defer C.free(unsafe.Pointer(cc))
	defer C.free(unsafe.Pointer(ck))
	var cs *C.char
	if suite != "" {
		cs = C.CString(suite)
		defer C.free(unsafe.Pointer(cs))
	}
	t := C.int(0)
	if tls12 {
		t = 1
	}
	p := C.cb_pair_new(cc, ck, cs, t)
	if p == nil {
		return nil, errors.New("cbench: setting up the OpenSSL contexts failed")
	}
	return &Pair{p}, nil
}

// Close frees the contexts.
func (p *Pair) Close() { C.cb_pair_free(p.p); p.p = nil }

// Handshakes runs n full handshakes in C.
func (p *Pair) Handshakes(n int) error {
	if C.cb_handshakes(p.p, C.int(n)) != 1 {
		return errors.New("cbench: handshake failed")
	}
	return nil
}

// ServerTime is how long the last Handshakes spent on the server's side: its SSL objects'
// creation, handshake steps and freeing. n divided by it is the server side's limit.
func (p *Pair) ServerTime() time.Duration { return time.Duration(C.cb_server_ns(p.p)) }

// Bulk sends n messages of size bytes from client to server in C (after one handshake).
func (p *Pair) Bulk(size, n int) error {
	if C.cb_bulk(p.p, C.size_t(size), C.int(n)) != 1 {
		return errors.New("cbench: transfer failed")
	}
	return nil
}
