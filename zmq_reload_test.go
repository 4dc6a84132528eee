package tlszmq

import (
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq/internal/certgen"
	"github.com/tlszmq/tlszmq/internal/waitfor"
)

// clientSerial returns the serial number of the server certificate a Client's session has.
func clientSerial(t *testing.T, c *Client) *big.Int {
	t.Helper()
	st := c.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		t.Fatal("no server certificate")
	}
	return st.PeerCertificates[0].SerialNumber
}

// A Server's certificate reloaded under load: clients keep sending requests and making new
// handshakes throughout, and none fails; a session made before the reload keeps its
// certificate and goes on; a new session gets the new certificate.
func TestServerReloadUnderLoad(t *testing.T) {
	p := newPKI(t, "reload CA")
	aCrt, aKey := p.server("a")
	bCrt, bKey := p.server("b")
	aSerial, bSerial := serialOf(t, aCrt), serialOf(t, bCrt)
	sctx := mustContext(t, RoleServer, &Config{CertFile: aCrt, KeyFile: aKey})
	srv := serveOn(t, sctx, "tcp://127.0.0.1:*", echo, nil)
	ccfg := &Config{CAFile: p.caFile, ServerName: "localhost"}
	ctx := ctxTimeout(t, 60*time.Second)

	before := newClient(t, ccfg, srv.Endpoint(), nil)
	if _, err := before.Request(ctx, []byte("before")); err != nil {
		t.Fatal(err)
	}
	if got := clientSerial(t, before); got.Cmp(aSerial) != 0 {
		t.Fatalf("serial %x before the reload", got)
	}

	var requests, handshakes, failures atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		c := newClient(t, ccfg, srv.Endpoint(), nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if n%4 == 3 { // a new handshake, with whichever context is current
					if err := c.Reconnect(ctx); err != nil {
						failures.Add(1)
						t.Errorf("client %d: reconnect: %v", i, err)
						return
					}
					handshakes.Add(1)
				}
				msg := fmt.Sprintf("client %d request %d", i, n)
				got, err := c.Request(ctx, []byte(msg))
				if err != nil || string(got[0]) != msg {
					failures.Add(1)
					t.Errorf("client %d: request %d: %q, %v", i, n, got, err)
					return
				}
				requests.Add(1)
			}
		}()
	}
	reloads := 10
	for i := range reloads {
		time.Sleep(20 * time.Millisecond)
		crt, key := bCrt, bKey
		if i%2 == 1 {
			crt, key = aCrt, aKey
		}
		if err := sctx.Reload(&Config{CertFile: crt, KeyFile: key}); err != nil {
			t.Fatal(err)
		}
	}
	if err := sctx.Reload(&Config{CertFile: bCrt, KeyFile: bKey}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d requests and %d new handshakes during %d reloads, %d failed", requests.Load(), handshakes.Load(), reloads+1, failures.Load())
	if failures.Load() != 0 || requests.Load() == 0 || handshakes.Load() == 0 {
		t.Fatalf("%d failures, %d requests, %d handshakes", failures.Load(), requests.Load(), handshakes.Load())
	}

	if got, err := before.Request(ctx, []byte("after")); err != nil || string(got[0]) != "after" {
		t.Fatalf("the session made before the reloads: %q, %v", got, err)
	}
	if got := clientSerial(t, before); got.Cmp(aSerial) != 0 {
		t.Errorf("the session made before the reloads now has serial %x", got)
	}
	after := newClient(t, ccfg, srv.Endpoint(), nil)
	if _, err := after.Request(ctx, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if got := clientSerial(t, after); got.Cmp(bSerial) != 0 {
		t.Errorf("a new session got serial %x, want the reloaded certificate's %x", got, bSerial)
	}
	if st := srv.Stats(); st.HandshakesFailed != 0 {
		t.Errorf("stats %+v: handshakes failed", st)
	}
}

// A Server's CRL reloaded: the client it now revokes keeps its live session, and is refused
// when it makes a new handshake.
func TestServerReloadCRL(t *testing.T) {
	p := newPKI(t, "reload CA")
	scrt, skey := p.server("server")
	revoked, ccrt, ckey := p.client("soon revoked")
	crl := p.crl("ca.crl", certgen.CRLSpec{ThisUpdate: -time.Minute})
	scfg := &Config{CertFile: scrt, KeyFile: skey, CAFile: p.caFile, ClientAuth: RequireAndVerifyClientCert, CRLFile: crl}
	sctx := mustContext(t, RoleServer, scfg)
	srv := serveOn(t, sctx, "tcp://127.0.0.1:*", echo, nil)
	ctx := ctxTimeout(t, 30*time.Second)
	c := newClient(t, &Config{CertFile: ccrt, KeyFile: ckey, CAFile: p.caFile, ServerName: "localhost"}, srv.Endpoint(),
		&ClientOptions{Timeout: 5 * time.Second})
	if _, err := c.Request(ctx, []byte("before")); err != nil {
		t.Fatal(err)
	}

	p.crl(crl, revoking(revoked))
	if err := sctx.Reload(scfg); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Request(ctx, []byte("live")); err != nil || string(got[0]) != "live" {
		t.Fatalf("the live session after the CRL reload: %q, %v", got, err)
	}
	if err := c.Reconnect(ctx); err == nil {
		if _, err = c.Request(ctx, []byte("new session")); err == nil {
			t.Fatal("a revoked client made a new session after the CRL reload")
		}
	}
	waitfor.Cond(t, func() bool { return srv.Counters().FailedByCause["verify"] == 1 }, "the refused handshake counted under verify")
}
