package tlszmq

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq/internal/certgen"
)

// serialOf returns the serial number of the certificate in the PEM file path.
func serialOf(t testing.TB, path string) *big.Int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}

// peerSerial returns the serial number of an engine's peer's certificate.
func peerSerial(t testing.TB, e *Engine) *big.Int {
	t.Helper()
	st := e.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		t.Fatal("no peer certificate")
	}
	return st.PeerCertificates[0].SerialNumber
}

// connect makes a client engine of cctx and a server engine of sctx and runs their handshake.
func connect(t testing.TB, cctx, sctx *Context) (c, s *Engine, cerr, serr error) {
	t.Helper()
	c, err := NewClientEngine(cctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err = NewServerEngine(sctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	cerr, serr = handshake(c, s)
	return c, s, cerr, serr
}

// A certificate reload: new handshakes see the new certificate, a session made before keeps
// working on the old context, which is freed once its last engine is closed.
func TestReloadCertificate(t *testing.T) {
	p := newPKI(t, "reload CA")
	oldCrt, oldKey := p.server("old")
	newCrt, newKey := p.server("new")
	sctx := mustContext(t, RoleServer, &Config{CertFile: oldCrt, KeyFile: oldKey})
	cctx := mustContext(t, RoleClient, &Config{CAFile: p.caFile, ServerName: "localhost"})

	c1, s1, cerr, serr := connect(t, cctx, sctx)
	if cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	if got, want := peerSerial(t, c1), serialOf(t, oldCrt); got.Cmp(want) != 0 {
		t.Fatalf("serial %x before the reload, want %x", got, want)
	}
	old := sctx.slot.current()
	if err := sctx.Reload(&Config{CertFile: newCrt, KeyFile: newKey}); err != nil {
		t.Fatal(err)
	}
	if freed, refs := handleState(old); freed || refs != 1 {
		t.Errorf("the replaced context: freed %v, %d references; want it kept for the live session's engine", freed, refs)
	}
	if got := sctx.Config().CertFile; got != newCrt {
		t.Errorf("Config().CertFile %q after the reload", got)
	}
	c2, _, cerr, serr := connect(t, cctx, sctx)
	if cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	if got, want := peerSerial(t, c2), serialOf(t, newCrt); got.Cmp(want) != 0 {
		t.Errorf("serial %x after the reload, want the new certificate's %x", got, want)
	}
	// The old session goes on, both ways.
	for i := range 3 {
		msg := fmt.Sprintf("old session %d", i)
		if got := roundTrip(t, c1, s1, []byte(msg)); string(got) != msg {
			t.Fatalf("client to server: %q", got)
		}
		if got := roundTrip(t, s1, c1, []byte(msg)); string(got) != msg {
			t.Fatalf("server to client: %q", got)
		}
	}
	if got := peerSerial(t, c1); got.Cmp(serialOf(t, oldCrt)) != 0 {
		t.Errorf("the old session's peer changed: %x", got)
	}
	s1.Close()
	if freed, _ := handleState(old); !freed {
		t.Error("the replaced context was not freed once its last engine closed")
	}
}

// handleState reports whether a handle's C context has been freed, and its references.
func handleState(h *ctxHandle) (freed bool, refs int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.c == nil, h.refs
}

// A reload that cannot load is refused, naming the file at fault, and the Context keeps its
// configuration: new handshakes still get the old certificate.
func TestReloadRefused(t *testing.T) {
	p := newPKI(t, "reload CA")
	oldCrt, oldKey := p.server("old")
	otherCrt, _ := p.server("other")
	missing := p.dir + "/missing.key"
	sctx := mustContext(t, RoleServer, &Config{CertFile: oldCrt, KeyFile: oldKey})
	cctx := mustContext(t, RoleClient, &Config{CAFile: p.caFile, ServerName: "localhost"})
	live := liveContexts.Load()
	cases := []struct {
		name string
		cfg  *Config
		want []string
	}{
		{"missing key", &Config{CertFile: otherCrt, KeyFile: missing}, []string{"loading the private key file", missing, "No such file"}},
		{"mismatched key", &Config{CertFile: otherCrt, KeyFile: oldKey},
			[]string{"loading the private key file " + oldKey + " (for the certificate " + otherCrt + ")", "key values mismatch"}},
		{"missing CA", &Config{CertFile: oldCrt, KeyFile: oldKey, ClientAuth: RequireAndVerifyClientCert, CAFile: missing},
			[]string{"loading the CA certificates " + missing}},
		{"missing CRL", &Config{CertFile: oldCrt, KeyFile: oldKey, ClientAuth: RequireAndVerifyClientCert, CAFile: p.caFile, CRLFile: missing},
			[]string{"loading the CRL file " + missing}},
		{"no certificate", &Config{}, []string{"invalid configuration", "a server needs a certificate"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := sctx.Reload(tc.cfg)
			if err == nil {
				t.Fatal("the reload was taken")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
			if got := sctx.Config().CertFile; got != oldCrt {
				t.Errorf("Config().CertFile %q after a refused reload", got)
			}
			c, _, cerr, serr := connect(t, cctx, sctx)
			if cerr != nil || serr != nil {
				t.Fatal(cerr, serr)
			}
			if got := peerSerial(t, c); got.Cmp(serialOf(t, oldCrt)) != 0 {
				t.Errorf("serial %x after a refused reload, want the old certificate's", got)
			}
		})
	}
	// Other tests' contexts may be freed meanwhile (by their cleanups): only more is a leak.
	if got := liveContexts.Load(); got > live {
		t.Errorf("%d contexts live after refused reloads, more than the %d before: a half-made one leaked", got, live)
	}
	h := sctx.slot.current()
	sctx.Close()
	if err := sctx.Reload(&Config{CertFile: oldCrt, KeyFile: oldKey}); !errors.Is(err, ErrClosed) {
		t.Errorf("Reload after Close: %v, want ErrClosed", err)
	}
	if freed, _ := handleState(h); !freed || sctx.slot.current() != h {
		t.Error("Close did not free the current context, or a Reload after it replaced it")
	}
}

// A CRL reload: a client accepted before is refused on its next handshake, a resumption with
// the session it holds included (the CRL is part of the session id context), while its live
// session goes on.
func TestReloadCRL(t *testing.T) {
	p := newPKI(t, "reload CA")
	scrt, skey := p.server("server")
	client, ccrt, ckey := p.client("soon revoked")
	crl := p.crl("ca.crl", certgen.CRLSpec{ThisUpdate: -time.Minute})
	for _, ver := range bothVersions {
		t.Run(ver.name, func(t *testing.T) {
			p.crl(crl, certgen.CRLSpec{ThisUpdate: -time.Minute}) // nothing revoked
			scfg := &Config{CertFile: scrt, KeyFile: skey, CAFile: p.caFile, ClientAuth: RequireAndVerifyClientCert, CRLFile: crl}
			sctx := mustContext(t, RoleServer, scfg)
			cctx := mustContext(t, RoleClient, &Config{CertFile: ccrt, KeyFile: ckey, CAFile: p.caFile, ServerName: "localhost", MaxVersion: ver.v})
			c1, s1, cerr, serr := connect(t, cctx, sctx)
			if cerr != nil || serr != nil {
				t.Fatal(cerr, serr)
			}
			roundTrip(t, s1, c1, []byte("ticket")) // TLS 1.3: the tickets come with it
			session, err := c1.Session()
			if err != nil {
				t.Fatal(err)
			}
			// The session resumes before the CRL changes.
			c, err := NewClientEngine(cctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			if err := c.SetSession(session); err != nil {
				t.Fatal(err)
			}
			s, _ := NewServerEngine(sctx)
			t.Cleanup(func() { s.Close() })
			if cerr, serr := handshake(c, s); cerr != nil || serr != nil || !c.ConnectionState().DidResume {
				t.Fatalf("resumption before the CRL changed: resumed %v, %v / %v", c.ConnectionState().DidResume, cerr, serr)
			}

			p.crl(crl, revoking(client))
			if err := sctx.Reload(scfg); err != nil {
				t.Fatal(err)
			}
			_, _, cerr, serr = connect(t, cctx, sctx)
			checkRevoked(t, "server, after the CRL reload", serr)
			checkAlert(t, "client, after the CRL reload", cerr, "certificate revoked", false)

			c, _ = NewClientEngine(cctx)
			t.Cleanup(func() { c.Close() })
			if err := c.SetSession(session); err != nil {
				t.Fatal(err)
			}
			s, _ = NewServerEngine(sctx)
			t.Cleanup(func() { s.Close() })
			_, serr = handshake(c, s)
			checkRevoked(t, "server, offered the session made before the CRL", serr)

			if got := roundTrip(t, c1, s1, []byte("still here")); string(got) != "still here" {
				t.Errorf("the live session after the CRL reload: %q", got)
			}
		})
	}
}

// Session ticket keys survive a reload that sets none: a session made before resumes after a
// certificate reload. A reload with a SessionTicketKey of its own replaces them.
func TestReloadKeepsTicketKeys(t *testing.T) {
	p := newPKI(t, "reload CA")
	oldCrt, oldKey := p.server("old")
	newCrt, newKey := p.server("new")
	for _, ver := range bothVersions {
		t.Run(ver.name, func(t *testing.T) {
			sctx := mustContext(t, RoleServer, &Config{CertFile: oldCrt, KeyFile: oldKey})
			cctx := mustContext(t, RoleClient, &Config{CAFile: p.caFile, ServerName: "localhost", MaxVersion: ver.v})
			c1, s1, cerr, serr := connect(t, cctx, sctx)
			if cerr != nil || serr != nil {
				t.Fatal(cerr, serr)
			}
			roundTrip(t, s1, c1, []byte("ticket"))
			session, err := c1.Session()
			if err != nil {
				t.Fatal(err)
			}
			resume := func() bool {
				t.Helper()
				c, err := NewClientEngine(cctx)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				if err := c.SetSession(session); err != nil {
					t.Fatal(err)
				}
				s, _ := NewServerEngine(sctx)
				t.Cleanup(func() { s.Close() })
				if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
					t.Fatal(cerr, serr)
				}
				return c.ConnectionState().DidResume
			}
			if err := sctx.Reload(&Config{CertFile: newCrt, KeyFile: newKey}); err != nil {
				t.Fatal(err)
			}
			if !resume() {
				t.Error("a session made before a certificate reload did not resume after it")
			}
			if err := sctx.Reload(&Config{CertFile: newCrt, KeyFile: newKey, SessionTicketKey: make([]byte, SessionTicketKeyLen)}); err != nil {
				t.Fatal(err)
			}
			if resume() {
				t.Error("a session resumed after a reload with a new SessionTicketKey")
			}
		})
	}
}

// Reloads from one goroutine while others make engines and run handshakes: every handshake
// succeeds, with one certificate or the other. Run with -race.
func TestReloadConcurrent(t *testing.T) {
	p := newPKI(t, "reload CA")
	aCrt, aKey := p.server("a")
	bCrt, bKey := p.server("b")
	serials := map[string]bool{serialOf(t, aCrt).String(): true, serialOf(t, bCrt).String(): true}
	sctx := mustContext(t, RoleServer, &Config{CertFile: aCrt, KeyFile: aKey})
	cctx := mustContext(t, RoleClient, &Config{CAFile: p.caFile, ServerName: "localhost"})
	live := liveContexts.Load()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := NewClientEngine(cctx)
				if err != nil {
					errs <- err
					return
				}
				s, err := NewServerEngine(sctx)
				if err != nil {
					c.Close()
					errs <- err
					return
				}
				cerr, serr := handshake(c, s)
				st := c.ConnectionState()
				c.Close()
				s.Close()
				if cerr != nil || serr != nil {
					errs <- fmt.Errorf("handshake %d: %v / %v", i, cerr, serr)
					return
				}
				if !serials[st.PeerCertificates[0].SerialNumber.String()] {
					errs <- fmt.Errorf("handshake %d: an unknown certificate", i)
					return
				}
			}
		}()
	}
	n := 50
	if testing.Short() {
		n = 20
	}
	for i := range n {
		crt, key := aCrt, aKey
		if i%2 == 0 {
			crt, key = bCrt, bKey
		}
		if err := sctx.Reload(&Config{CertFile: crt, KeyFile: key}); err != nil {
			t.Fatal(err)
		}
		_ = sctx.Config()
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Other tests' contexts may be freed meanwhile (by their cleanups): only more is a leak.
	if got := liveContexts.Load(); got > live {
		t.Errorf("%d contexts live once the engines are closed, more than the %d before: a replaced one was not freed", got, live)
	}
}
