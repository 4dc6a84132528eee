package tlszmq

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// engineListener serves TCP connections on 127.0.0.1 with server engines of sctx, echoing
// every message: a TLS server for peers that share no code with tlszmq (Go's crypto/tls,
// `openssl s_client`). Each connection's engine error, once it has one, goes to errs.
type engineListener struct {
	ln   net.Listener
	mu   sync.Mutex
	errs []error
	wg   sync.WaitGroup
}

func listenEngines(t *testing.T, sctx *Context) *engineListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &engineListener{ln: ln}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				defer conn.Close()
				if err := serveConn(sctx, conn); err != nil {
					l.mu.Lock()
					l.errs = append(l.errs, err)
					l.mu.Unlock()
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); l.wg.Wait() })
	return l
}

// serveConn pumps one connection through a server engine until the peer goes or the session
// fails; it returns the engine's error.
func serveConn(sctx *Context, conn net.Conn) error {
	s, err := NewServerEngine(sctx)
	if err != nil {
		return err
	}
	defer s.Close()
	buf := make([]byte, 64<<10)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	for {
		n, rerr := conn.Read(buf)
		if n > 0 {
			perr := s.PutData(buf[:n])
			if msg, _ := s.Read(); perr == nil && len(msg) > 0 {
				s.Write(msg)
			}
			if out := s.GetData(); len(out) > 0 {
				conn.Write(out)
			}
			if perr != nil {
				return perr
			}
		}
		if rerr != nil {
			return nil
		}
	}
}

// lastErr returns the last engine error, waiting a little for it.
func (l *engineListener) lastErr() error {
	for range 100 {
		l.mu.Lock()
		n := len(l.errs)
		var err error
		if n > 0 {
			err = l.errs[n-1]
		}
		l.mu.Unlock()
		if err != nil {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// goTLSExchange connects a crypto/tls client, sends a message and reads the echo (which, over
// TLS 1.3, also reads the session tickets). It returns whether the session was resumed and the
// first error.
func goTLSExchange(addr string, cfg *tls.Config) (resumed bool, err error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	resumed = conn.ConnectionState().DidResume
	if _, err := conn.Write([]byte("ping")); err != nil {
		return resumed, err
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(conn, got); err != nil {
		return resumed, err
	}
	if string(got) != "ping" {
		return resumed, errors.New("echo: " + string(got))
	}
	return resumed, nil
}

func caPool(t *testing.T) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(cert("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return pool
}

// A session made by a server that asks no client certificate is never resumed by one that
// requires a certificate, though both hold the same ticket key: the client, which has no
// certificate, gets a full handshake there and is refused. The same policy twice does resume,
// with and without client certificates. crypto/tls is the client, over TLS 1.2 and 1.3.
func TestTicketsBoundToVerificationPolicy(t *testing.T) {
	key := make([]byte, SessionTicketKeyLen)
	rand.Read(key)
	open := serverConfig("server")
	open.SessionTicketKey = key
	strict := open.Clone()
	strict.ClientAuth, strict.CAFile = RequireAndVerifyClientCert, cert("ca.crt")
	serve := func(cfg *Config) *engineListener { return listenEngines(t, mustContext(t, RoleServer, cfg)) }
	openA, openB, strictA, strictB := serve(open), serve(open), serve(strict), serve(strict)
	clientCert, err := tls.LoadX509KeyPair(cert("client.crt"), cert("client.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ver := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		name := map[uint16]string{tls.VersionTLS12: "TLS1.2", tls.VersionTLS13: "TLS1.3"}[ver]
		t.Run(name, func(t *testing.T) {
			client := func(certs ...tls.Certificate) *tls.Config {
				return &tls.Config{RootCAs: caPool(t), ServerName: "localhost", MinVersion: ver, MaxVersion: ver,
					ClientSessionCache: tls.NewLRUClientSessionCache(8), Certificates: certs}
			}
			// No client certificate: a ticket from an open server.
			ccfg := client()
			if resumed, err := goTLSExchange(openA.ln.Addr().String(), ccfg); err != nil || resumed {
				t.Fatalf("first session: resumed %v, %v", resumed, err)
			}
			if resumed, err := goTLSExchange(openB.ln.Addr().String(), ccfg); err != nil || !resumed {
				t.Fatalf("same policy, same key: resumed %v, %v; want a resumption", resumed, err)
			}
			resumed, err := goTLSExchange(strictA.ln.Addr().String(), ccfg)
			if resumed || err == nil {
				t.Fatalf("a server requiring client certificates took an open server's ticket: resumed %v, %v", resumed, err)
			}
			t.Logf("crypto/tls offering the open server's ticket to the strict one: %v", err)
			if serr := strictA.lastErr(); serr == nil || !strings.Contains(serr.Error(), "certificate") {
				t.Errorf("strict server's error: %v, want one about the missing certificate", serr)
			}
			// With a client certificate, between the strict servers: resumed.
			ccfg = client(clientCert)
			if resumed, err := goTLSExchange(strictA.ln.Addr().String(), ccfg); err != nil || resumed {
				t.Fatalf("strict, first session: resumed %v, %v", resumed, err)
			}
			if resumed, err := goTLSExchange(strictB.ln.Addr().String(), ccfg); err != nil || !resumed {
				t.Fatalf("strict, same policy: resumed %v, %v; want a resumption", resumed, err)
			}
		})
	}
}

// The session id context changes with every part of the verification policy, CA contents
// included, and with nothing else.
func TestSessionContextCoversPolicy(t *testing.T) {
	dir := t.TempDir()
	read := func(path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	caPEM, otherPEM := read(cert("ca.crt")), read(cert("other-ca.crt"))
	write("a.pem", caPEM)
	base := func() *Config {
		c := serverConfig("server")
		c.ClientAuth, c.CAFile = RequireAndVerifyClientCert, cert("ca.crt")
		return c
	}
	ref := sessionContext(base())
	if len(ref) > 32 {
		t.Fatalf("%d bytes: OpenSSL takes at most 32", len(ref))
	}
	same := base()
	same.CertFile, same.KeyFile, same.SessionTicketKey, same.CipherList = cert("server-ec.crt"), cert("server-ec.key"), make([]byte, 80), "ECDHE-RSA-AES128-GCM-SHA256"
	if !bytes.Equal(sessionContext(same), ref) {
		t.Error("the context changed with settings that are not the verification policy")
	}
	variants := map[string]func(*Config){
		"ClientAuth optional": func(c *Config) { c.ClientAuth = VerifyClientCertIfGiven },
		"CAFile other":        func(c *Config) { c.CAFile = cert("other-ca.crt") },
		"CAPEM added":         func(c *Config) { c.CAPEM = otherPEM },
		"CADir":               func(c *Config) { c.CAFile, c.CADir = "", dir },
		"MinVersion 1.3":      func(c *Config) { c.MinVersion = VersionTLS13 },
		"MaxVersion 1.2":      func(c *Config) { c.MaxVersion = VersionTLS12 },
		"SecurityLevel 1":     func(c *Config) { c.SecurityLevel = 1 },
	}
	seen := map[string]string{string(ref): "base"}
	for name, change := range variants {
		c := base()
		change(c)
		sid := string(sessionContext(c))
		if other, ok := seen[sid]; ok {
			t.Errorf("%s: the same context as %s", name, other)
		}
		seen[sid] = name
	}
	// A folder's files count by name and contents.
	dirCfg := base()
	dirCfg.CAFile, dirCfg.CADir = "", dir
	before := sessionContext(dirCfg)
	write("a.pem", otherPEM)
	if bytes.Equal(before, sessionContext(dirCfg)) {
		t.Error("a CA file in CADir changed and the context did not")
	}
	changed := sessionContext(dirCfg)
	write("b.pem", caPEM)
	if bytes.Equal(changed, sessionContext(dirCfg)) {
		t.Error("a CA file was added to CADir and the context did not change")
	}
}
