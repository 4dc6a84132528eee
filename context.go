package tlszmq

/*
#cgo pkg-config: libssl libcrypto
#include <stdlib.h>
#include "ssl.h"
*/
import "C"

import (
	"crypto/sha256"
	"crypto/x509"
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
//
// The name is OpenSSL's (SSL_CTX) and the C++ TLSZMQ code's, which is why it stays although
// calls such as Client.Request also take a context.Context: the examples name a Context by
// its role (serverCtx, clientCtx) and leave ctx to the context.Context.
//
// Reload replaces the SSL_CTX with one made from a new Config, for the engines made after it:
// a Context is a slot that holds its current C context, and each engine holds the C context it
// was made from until it is closed.
type Context struct {
	role    Role
	slot    *ctxSlot
	cleanup runtime.Cleanup
}

// ctxSlot holds a Context's current C context, the one new engines are made from. Reload
// replaces it, Close lets it go. It is apart from the Context so that the Context's cleanup
// can let go of whichever handle is current then.
type ctxSlot struct {
	reload sync.Mutex // one Reload at a time, each from the handle the last one left
	mu     sync.Mutex // guards h and closed
	h      *ctxHandle // never nil; after Close, the last handle (for its Config)
	closed bool       // Close has let h go: no engine is made any more
}

// acquire returns the current handle and its C context, with a reference that the caller
// releases.
func (s *ctxSlot) acquire() (*ctxHandle, *C.tz_ctx, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, errContextClosed
	}
	c, err := s.h.acquire()
	if err != nil {
		return nil, nil, err
	}
	return s.h, c, nil
}

// current returns the current handle, for its Config.
func (s *ctxSlot) current() *ctxHandle {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.h
}

// swap makes h the current handle and lets the old one go: it is freed once the last engine
// made from it is closed. A closed slot refuses h, and lets it go.
func (s *ctxSlot) swap(h *ctxHandle) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		h.release()
		return errContextClosed
	}
	old := s.h
	s.h = h
	s.mu.Unlock()
	old.release()
	return nil
}

// close lets the current handle go; it is idempotent.
func (s *ctxSlot) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	h := s.h
	s.mu.Unlock()
	h.release()
}

// ctxHandle owns one C context. It is shared by the Context (while it is the current one) and
// the engines made from it, and freed when the last of them lets go.
type ctxHandle struct {
	mu   sync.Mutex
	c    *C.tz_ctx
	refs int
	cfg  *Config           // the Config c was made from: a copy of the caller's, never changed
	leaf *x509.Certificate // c's own certificate, as OpenSSL loaded it; nil if none
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
	if role != RoleClient && role != RoleServer {
		return nil, fmt.Errorf("%w: unknown role %d", ErrInvalidConfig, int(role))
	}
	h, err := newHandle(role, cfg, nil)
	if err != nil {
		return nil, err
	}
	ctx := &Context{role: role, slot: &ctxSlot{h: h}}
	ctx.cleanup = runtime.AddCleanup(ctx, (*ctxSlot).close, ctx.slot)
	return ctx, nil
}

// Reload loads cfg into a new OpenSSL context for the Context's role and, once everything in
// it has loaded (the certificate, the key, the CAs, the CRLs), puts it in the old one's
// place: the engines made from then on use it (a Server's new sessions, a Client's next
// connection), while the engines made before keep the context they were made from, which is
// freed when the last of them is closed. Live sessions go on untouched.
//
// If anything in cfg fails to load, Reload returns the error, which names the step and the
// file at fault as NewContext's do, and the Context keeps its configuration. Reload may be
// called from any goroutine while engines are being made; concurrent Reloads take effect one
// after the other.
//
// A server's session ticket keys are kept across a Reload unless cfg sets SessionTicketKey:
// tickets issued before it still resume sessions after it, provided the verification policy
// has not changed (see Config.SessionTicketKey: a new CA, ClientAuth or CRL changes the
// session id context, and sessions made under the old policy then make a full handshake).
func (ctx *Context) Reload(cfg *Config) error {
	s := ctx.slot
	s.reload.Lock()
	defer s.reload.Unlock()
	old, oldC, err := s.acquire() // held while the new context is made: its ticket keys are copied
	if err != nil {
		return err
	}
	defer old.release()
	var keysFrom *C.tz_ctx
	if ctx.role == RoleServer && (cfg == nil || cfg.SessionTicketKey == nil) {
		keysFrom = oldC
	}
	h, err := newHandle(ctx.role, cfg, keysFrom)
	if err != nil {
		return err
	}
	return s.swap(h)
}

// newHandle loads cfg into a new C context for role. A server context without a
// SessionTicketKey of its own takes keysFrom's ticket keys, when keysFrom is not nil.
func newHandle(role Role, cfg *Config, keysFrom *C.tz_ctx) (*ctxHandle, error) {
	if cfg == nil {
		cfg = &Config{}
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
	lo, hi := cfg.VersionRange()
	cc.min_version, cc.max_version = C.int(lo), C.int(hi)
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
	var uri keyURI
	if cfg.KeyURI != "" {
		uri, _ = parseKeyURI(cfg.KeyURI) // cfg.check has refused a URI that does not parse
		uri.module = modulePath(uri.module)
		cc.key_uri = cstr(uri.engine)
		cc.key_uri_name = cstr(uri.shown)
		cc.key_module = cstr(uri.module)
		if uri.pin != "" {
			cc.key_password = cstr(uri.pin) // the URI's pin-value overrides KeyPassword
		}
	}
	cc.ca_file = cstr(cfg.CAFile)
	cc.ca_dir = cstr(cfg.CADir)
	cc.crl_file = cstr(cfg.CRLFile)
	cc.crl_dir = cstr(cfg.CRLDir)
	cc.cert_pem, cc.cert_pem_len = cbytes(cfg.CertPEM)
	cc.key_pem, cc.key_pem_len = cbytes(cfg.KeyPEM)
	cc.ca_pem, cc.ca_pem_len = cbytes(cfg.CAPEM)
	cc.ticket_key, cc.ticket_key_len = cbytes(cfg.SessionTicketKey)
	cc.ticket_keys_from = keysFrom
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
		if cfg.KeyURI != "" {
			e.Reasons = append(e.Reasons, keyURIHints(e, cfg, uri)...)
		} else if strings.HasPrefix(e.Op, "loading the private key") && e.says("bad password read", "bad decrypt") {
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
	return &ctxHandle{c: c, refs: 1, cfg: cfg, leaf: leafCertificate(c)}, nil
}

// leafCertificate returns the certificate c presents, parsed from the DER OpenSSL holds: nil
// when c has none, or Go cannot parse it.
func leafCertificate(c *C.tz_ctx) *x509.Certificate {
	buf := make([]byte, 4096)
	n := int(C.tz_ctx_cert_der(c, (*C.uchar)(unsafe.Pointer(&buf[0])), C.int(len(buf))))
	if n > len(buf) {
		buf = make([]byte, n)
		n = int(C.tz_ctx_cert_der(c, (*C.uchar)(unsafe.Pointer(&buf[0])), C.int(len(buf))))
	}
	if n <= 0 || n > len(buf) {
		return nil
	}
	leaf, err := x509.ParseCertificate(buf[:n])
	if err != nil {
		return nil
	}
	return leaf
}

// modulePath returns the PKCS#11 module a key URI's module-path names, else the one
// PKCS11_MODULE_PATH names (libp11's own first choice), with symbolic links resolved, so
// that the shim tells one module reached by two names from two modules; "" leaves the choice
// to libp11 (p11-kit's proxy).
func modulePath(module string) string {
	if module == "" {
		module = os.Getenv("PKCS11_MODULE_PATH")
	}
	if module == "" {
		return ""
	}
	if abs, err := filepath.Abs(module); err == nil { // a relative PKCS11_MODULE_PATH: from here, not the loader's path
		module = abs
	}
	if resolved, err := filepath.EvalSymlinks(module); err == nil {
		return resolved
	}
	return module // it does not exist: libp11 says so when it loads it
}

// keyURIHints says in words why a key named by a PKCS#11 URI did not load, from OpenSSL's and
// libp11's reasons: a PIN the token refused (or none given), no such token or key, a module
// that could not be loaded (uri.module is the one modulePath chose).
func keyURIHints(e *Error, cfg *Config, uri keyURI) []string {
	var hints []string
	switch {
	case e.says("PIN incorrect", "PIN_INCORRECT", "PIN len range", "PIN_LEN_RANGE", "PIN invalid"):
		if cfg.KeyPassword == "" && !uri.hasPIN {
			hints = append(hints, "the token refused the login: no PIN was given (set Config.KeyPassword, or pin-value or pin-source in the URI)")
		} else {
			hints = append(hints, "the token refused the PIN (Config.KeyPassword, or the URI's pin-value or pin-source)")
		}
	case e.says("PIN locked", "PIN_LOCKED"):
		hints = append(hints, "the token's PIN is locked: its security officer must unlock it")
	case e.says("object not found"):
		hints = append(hints, "no token and private key match the URI: check its token= and object= (or id=) attributes, and the module")
	case e.says("Unable to load"):
		m := uri.module
		if m == "" {
			m = "libp11's default module (PKCS11_MODULE_PATH, else p11-kit-proxy)"
		}
		hints = append(hints, "the PKCS#11 module could not be loaded: "+m+" (set module-path in the URI)")
	}
	return hints
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
	// The CRLs: a session made before a certificate was revoked must not resume after the
	// CRL that revokes it is loaded. (Added only when set: the contexts of servers without
	// CRLs are as before.)
	if cfg.CRLFile != "" {
		file("CRLFile", cfg.CRLFile)
	}
	if cfg.CRLDir != "" {
		entries, err := os.ReadDir(cfg.CRLDir)
		if err != nil {
			field("CRLDir", []byte("unreadable: "+err.Error()))
		}
		for _, ent := range entries {
			if ent.IsDir() {
				continue
			}
			field("CRLDir file", []byte(ent.Name()))
			file("CRLDir contents", filepath.Join(cfg.CRLDir, ent.Name()))
		}
	}
	return h.Sum(nil)
}

// isFIPSStep tells the steps of the FIPS set-up from the rest: they all name FIPS. The steps
// that name a file the Config names are not FIPS steps, whatever the file's path says.
func isFIPSStep(op string) bool {
	for _, p := range fileSteps {
		if strings.HasPrefix(op, p) {
			return false
		}
	}
	return strings.Contains(strings.ToLower(op), "fips")
}

// fileSteps are the steps of tz_ctx_new that name the file (or the PKCS#11 URI) they read
// after their text.
var fileSteps = []string{"loading the certificate file", "loading the private key", "matching the private key",
	"loading the CA certificates", "loading the CRL"}

// Role returns the role the Context was made for.
func (ctx *Context) Role() Role { return ctx.role }

// Config returns a copy of the Config the Context was made from, or last reloaded with.
func (ctx *Context) Config() *Config { return ctx.config().Clone() }

// config returns the current Config, which nobody changes: callers read it, never write.
func (ctx *Context) config() *Config { return ctx.slot.current().cfg }

// Certificate returns the certificate the Context presents (the leaf of Config.CertFile or
// CertPEM, as OpenSSL loaded it), or last reloaded with; nil when it has none. It is shared:
// do not modify it. Its NotAfter is what to watch for expiry.
func (ctx *Context) Certificate() *x509.Certificate { return ctx.slot.current().leaf }

// FIPS reports whether the Context runs on OpenSSL's FIPS provider with fips=yes as its
// default property. It is false after Close.
func (ctx *Context) FIPS() bool {
	h, c, err := ctx.slot.acquire()
	if err != nil {
		return false
	}
	defer h.release()
	return C.tz_ctx_fips(c) == 1
}

// options returns the OpenSSL options of the Context's SSL_CTX, for the tests; 0 once the
// Context is gone (no option is set then).
func (ctx *Context) options() uint64 {
	h, c, err := ctx.slot.acquire()
	if err != nil {
		return 0
	}
	defer h.release()
	return uint64(C.tz_ctx_options(c))
}

// Close lets the Context go. Engines made from it keep working until they are closed; no new
// engine can be made, and Reload fails. Close is idempotent.
func (ctx *Context) Close() error {
	ctx.cleanup.Stop()
	ctx.slot.close()
	return nil
}

// FIPSMode reports whether the process's default OpenSSL library context is in FIPS mode (for
// example through the system's OpenSSL configuration). A Context made with Config.FIPS has a
// library context of its own: ask it with [Context.FIPS].
func FIPSMode() bool { return C.tz_default_fips() == 1 }
