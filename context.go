package tlszmq

/*
#cgo pkg-config: libssl libcrypto
#include <stdlib.h>
#include "ssl.h"
*/
import "C"

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// errInit is why OpenSSL could not be initialised, if it could not: NewContext returns it.
var errInit error

func init() {
	if C.tz_init() != 1 {
		errInit = &Error{Op: "initialising OpenSSL", Reasons: []string{"OPENSSL_init_ssl failed"}}
	}
}

// Role says which side of the handshake a Context's engines play.
type Role int

const (
	// RoleClient makes client engines (the C++ TLSZmq client constructor).
	RoleClient Role = iota
	// RoleServer makes server engines (the C++ TLSZmq server constructor).
	RoleServer
)

// String returns "client" or "server".
func (r Role) String() string {
	if r == RoleServer {
		return "server"
	}
	return "client"
}

// Context is an OpenSSL SSL_CTX set up from a Config for one role: the C++ init_ctx, made once
// per program rather than once per connection. Certificates and keys are loaded into it once.
// A Context is safe for concurrent use; engines made from it keep it alive until they are
// closed, so Close may be called while engines are still in use.
type Context struct {
	role    Role
	cfg     *Config
	h       *ctxHandle
	cleanup runtime.Cleanup
	closed  atomic.Bool
}

// ctxHandle owns the C context. It is shared by the Context and its engines and freed when the
// last of them lets go.
type ctxHandle struct {
	mu   sync.Mutex
	c    *C.tz_ctx
	refs int
}

func (h *ctxHandle) acquire() (*C.tz_ctx, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.c == nil {
		return nil, errContextClosed
	}
	h.refs++
	return h.c, nil
}

func (h *ctxHandle) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refs--; h.refs == 0 && h.c != nil {
		C.tz_ctx_free(h.c)
		h.c = nil
		liveContexts.Add(-1)
	}
}

// cHeapInUse returns the bytes the C heap has in use, -1 where the C library cannot tell.
func cHeapInUse() int64 { return int64(C.tz_c_heap_in_use()) }

// liveContexts counts the C contexts made and not yet freed, for the leak tests.
var liveContexts atomic.Int64

// NewContext loads cfg into a new OpenSSL context for role. A nil cfg is the zero Config. Every
// failure names the step and quotes OpenSSL's reasons: a missing file, a key that does not match
// its certificate, a certificate too weak for the security level, an unknown cipher or group,
// a FIPS provider that is not there.
func NewContext(role Role, cfg *Config) (*Context, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	if role != RoleClient && role != RoleServer {
		return nil, fmt.Errorf("%w: unknown role %d", ErrInvalidConfig, int(role))
	}
	if errInit != nil {
		return nil, errInit
	}
	if err := cfg.check(role); err != nil { // before the copy: a refused PEM is not copied
		return nil, err
	}
	if cfg.KeyLogWriter != nil && FIPSMode() {
		return nil, fmt.Errorf("%w: KeyLogWriter is set and OpenSSL's default library context is in FIPS mode: "+
			"a key log exports the session secrets, which FIPS mode forbids", ErrInvalidConfig)
	}
	cfg = cfg.Clone()

	var strs []unsafe.Pointer
	cstr := func(s string) *C.char {
		if s == "" {
			return nil
		}
		p := C.CString(s)
		strs = append(strs, unsafe.Pointer(p))
		return p
	}
	cbytes := func(b []byte) (*C.uchar, C.size_t) {
		if b == nil {
			return nil, 0
		}
		p := C.CBytes(b)
		strs = append(strs, p)
		return (*C.uchar)(p), C.size_t(len(b))
	}
	defer func() {
		for _, p := range strs {
			C.free(p)
		}
	}()

	var cc C.tz_ctx_cfg
	if role == RoleServer {
		cc.server = 1
		cc.verify = C.int(cfg.ClientAuth)
	} else if !cfg.InsecureSkipVerify {
		cc.verify = 1
	}
	cc.min_version = C.int(cfg.MinVersion)
	if cfg.MinVersion == 0 {
		cc.min_version = C.int(VersionTLS12)
	}
	cc.max_version = C.int(cfg.MaxVersion) // 0: the highest OpenSSL knows, TLS 1.3
	switch cfg.SecurityLevel {
	case 0:
		cc.security_level = -1
	case SecurityLevelZero:
		cc.security_level = 0
	default:
		cc.security_level = C.int(cfg.SecurityLevel)
	}
	if cfg.SessionTicketsDisabled {
		cc.no_tickets = 1
	}
	cc.max_key_updates = C.int(min(cfg.MaxKeyUpdates, math.MaxInt32)) // a C int: never wrapped
	if cfg.MaxKeyUpdates == 0 {
		cc.max_key_updates = DefaultMaxKeyUpdates
	}
	switch {
	case cfg.MaxRecordsPerPump > 0:
		cc.max_records = C.longlong(cfg.MaxRecordsPerPump)
	case cfg.MaxRecordsPerPump == 0 && role == RoleServer:
		cc.max_records = DefaultMaxRecordsPerPump
	}
	if role == RoleServer {
		sid := sessionContext(cfg)
		cc.sid_ctx, cc.sid_ctx_len = cbytes(sid)
	}
	ciphers := cfg.CipherList
	if ciphers == "" {
		ciphers = DefaultCipherList
	}
	cc.cipher_list = cstr(ciphers)
	cc.ciphersuites = cstr(cfg.CipherSuites)
	cc.groups = cstr(cfg.Groups)
	cc.cert_file = cstr(cfg.CertFile)
	cc.key_file = cstr(cfg.KeyFile)
	cc.key_password = cstr(cfg.KeyPassword)
	cc.ca_file = cstr(cfg.CAFile)
	cc.ca_dir = cstr(cfg.CADir)
	cc.cert_pem, cc.cert_pem_len = cbytes(cfg.CertPEM)
	cc.key_pem, cc.key_pem_len = cbytes(cfg.KeyPEM)
	cc.ca_pem, cc.ca_pem_len = cbytes(cfg.CAPEM)
	cc.ticket_key, cc.ticket_key_len = cbytes(cfg.SessionTicketKey)
	cc.alpn, cc.alpn_len = cbytes(alpnWire(cfg.NextProtos))
	if cfg.KeyLogWriter != nil {
		cc.keylog = 1
	}
	if cfg.FIPS {
		cc.fips = 1
		cc.fips_config = cstr(cfg.FIPSConfigFile)
		cc.fips_modules = cstr(cfg.FIPSModuleDir)
	}

	var cerr C.tz_err
	c := C.tz_ctx_new(&cc, &cerr)
	if c == nil {
		e := newError(&cerr)
		if cfg.FIPS && e.kind == nil && isFIPSStep(e.Op) {
			e.kind = ErrFIPSUnavailable
		}
		if strings.HasPrefix(e.Op, "loading the private key") && e.says("bad password read", "bad decrypt") {
			if cfg.KeyPassword == "" {
				e.Reasons = append(e.Reasons, "the key is encrypted and Config.KeyPassword is not set")
			} else {
				e.Reasons = append(e.Reasons, "Config.KeyPassword does not decrypt the key")
			}
		}
		return nil, e
	}
	liveContexts.Add(1)
	if logger := cfg.Logger; logger != nil && role == RoleClient && (cfg.InsecureSkipVerify || cfg.VerifyChainOnly) {
		if cfg.InsecureSkipVerify {
			logger.Warn("tlszmq: this client Context does not verify servers' certificates (InsecureSkipVerify): anyone in the path can read and change the traffic")
		} else {
			logger.Warn("tlszmq: this client Context verifies servers' certificate chains but not their names (VerifyChainOnly): whoever holds any certificate from these CAs can read and change the traffic")
		}
	}
	ctx := &Context{role: role, cfg: cfg, h: &ctxHandle{c: c, refs: 1}}
	ctx.cleanup = runtime.AddCleanup(ctx, (*ctxHandle).release, ctx.h)
	return ctx, nil
}

// sessionContext returns a server's session id context: a SHA-256 of its verification
// policy, so that OpenSSL resumes a session (from the cache or a ticket) only on a server that
// verifies clients as the one that made it did. It covers ClientAuth, the versions, the
// security level and the CA certificates: the bytes of CAFile and CAPEM, and the names and
// bytes of the files in CADir (read now: OpenSSL reads that folder's files when it needs them,
// so a file added later changes verification but not the context). A file that cannot be read
// enters as its error; OpenSSL then fails to load it anyway.
func sessionContext(cfg *Config) []byte {
	h := sha256.New()
	field := func(name string, value []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(name)))
		h.Write(n[:])
		h.Write([]byte(name))
		binary.BigEndian.PutUint64(n[:], uint64(len(value)))
		h.Write(n[:])
		h.Write(value)
	}
	file := func(name, path string) {
		b, err := os.ReadFile(path)
		if err != nil {
			b = []byte("unreadable: " + err.Error())
		}
		field(name, b)
	}
	field("tlszmq session policy", []byte("1"))
	field("client auth", []byte(cfg.ClientAuth.String()))
	field("versions", fmt.Appendf(nil, "%04x-%04x", cfg.MinVersion, cfg.MaxVersion))
	field("security level", fmt.Appendf(nil, "%d", cfg.SecurityLevel))
	if cfg.CAFile != "" {
		file("CAFile", cfg.CAFile)
	}
	if cfg.CADir != "" {
		entries, err := os.ReadDir(cfg.CADir) // sorted by name
		if err != nil {
			field("CADir", []byte("unreadable: "+err.Error()))
		}
		for _, ent := range entries {
			if ent.IsDir() {
				continue
			}
			field("CADir file", []byte(ent.Name()))
			file("CADir contents", filepath.Join(cfg.CADir, ent.Name()))
		}
	}
	if cfg.CAPEM != nil {
		field("CAPEM", cfg.CAPEM)
	}
	return h.Sum(nil)
}

// isFIPSStep tells the steps of the FIPS set-up from the rest: they all name FIPS.
func isFIPSStep(op string) bool { return strings.Contains(strings.ToLower(op), "fips") }

// Role returns the role the Context was made for.
func (ctx *Context) Role() Role { return ctx.role }

// Config returns a copy of the Config the Context was made from.
func (ctx *Context) Config() *Config { return ctx.cfg.Clone() }

// FIPS reports whether the Context runs on OpenSSL's FIPS provider with fips=yes as its
// default property. It is false after Close.
func (ctx *Context) FIPS() bool {
	if ctx.closed.Load() {
		return false
	}
	c, err := ctx.h.acquire()
	if err != nil {
		return false
	}
	defer ctx.h.release()
	return C.tz_ctx_fips(c) == 1
}

// options returns the OpenSSL options of the Context's SSL_CTX, for the tests; 0 once the
// Context is gone (no option is set then).
func (ctx *Context) options() uint64 {
	c, err := ctx.h.acquire()
	if err != nil {
		return 0
	}
	defer ctx.h.release()
	return uint64(C.tz_ctx_options(c))
}

// Close lets the Context go. Engines made from it keep working until they are closed; no new
// engine can be made. Close is idempotent.
func (ctx *Context) Close() error {
	if ctx.closed.CompareAndSwap(false, true) {
		ctx.cleanup.Stop()
		ctx.h.release()
	}
	return nil
}

// FIPSMode reports whether the process's default OpenSSL library context is in FIPS mode (for
// example through the system's OpenSSL configuration). A Context made with Config.FIPS has a
// library context of its own: ask it with [Context.FIPS].
func FIPSMode() bool { return C.tz_default_fips() == 1 }
