package tlszmq

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
)

var versions = []struct {
	name string
	v    uint16
}{{"TLS1.2", VersionTLS12}, {"TLS1.3", VersionTLS13}}

var keys = []string{"server", "server-ec"}

func TestHandshakeAndData(t *testing.T) {
	sizes := []int{0, 1, 64, 1 << 10, 16 << 10, 16<<10 + 1, 1 << 20, 16 << 20}
	for _, ver := range versions {
		for _, key := range keys {
			t.Run(ver.name+"/"+key, func(t *testing.T) {
				ccfg := clientConfig()
				ccfg.MinVersion, ccfg.MaxVersion = ver.v, ver.v
				c, s := newPair(t, ccfg, serverConfig(key))
				if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
					t.Fatalf("handshake: client %v, server %v", cerr, serr)
				}
				st := c.ConnectionState()
				if st.Version != ver.v || st.CipherSuite == "" || !st.Verified || st.VerifyText != "ok" {
					t.Fatalf("client state %+v", st)
				}
				if len(st.PeerCertificates) == 0 || st.PeerCertificates[0].Subject.CommonName != "localhost" {
					t.Fatalf("peer certificates %v", st.PeerCertificates)
				}
				if sst := s.ConnectionState(); sst.Version != ver.v || sst.CipherSuite != st.CipherSuite || len(sst.PeerCertificates) != 0 {
					t.Fatalf("server state %+v", sst)
				}
				for _, n := range sizes {
					msg := pattern(n)
					if got := roundTrip(t, c, s, msg); !bytes.Equal(got, msg) {
						t.Fatalf("client→server %s: got %d bytes", sizeName(n), len(got))
					}
					if got := roundTrip(t, s, c, msg); !bytes.Equal(got, msg) {
						t.Fatalf("server→client %s: got %d bytes", sizeName(n), len(got))
					}
				}
			})
		}
	}
}

// A 16 MiB message crosses into C once to be encrypted and once to be decrypted.
func TestLargeMessageOnePump(t *testing.T) {
	c, s := newPair(t, clientConfig(), serverConfig("server"))
	if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
		t.Fatalf("handshake: %v %v", cerr, serr)
	}
	msg := pattern(16 << 20)
	before := c.pumps
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if n := c.pumps - before; n != 1 {
		t.Errorf("Write of 16 MiB took %d pumps, want 1", n)
	}
	frame := c.GetData()
	before = s.pumps
	if err := s.PutData(frame); err != nil {
		t.Fatal(err)
	}
	if n := s.pumps - before; n != 1 {
		t.Errorf("PutData of %d bytes took %d pumps, want 1", len(frame), n)
	}
	if got, _ := s.Read(); !bytes.Equal(got, msg) {
		t.Fatalf("got %d bytes, want %d", len(got), len(msg))
	}
}

// Data written before the handshake has finished is held back, then sent with the client's
// last flight, as the C++ client's first write is.
func TestWriteBeforeHandshake(t *testing.T) {
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			ccfg := clientConfig()
			ccfg.MaxVersion = ver.v
			c, s := newPair(t, ccfg, serverConfig("server"))
			if _, err := c.Write([]byte("hello world!")); err != nil {
				t.Fatal(err)
			}
			if !c.NeedsWrite() {
				t.Fatal("no ClientHello after the first Write")
			}
			var got []byte
			for range 10 {
				transfer(c, s, whole)
				if s.CanRecv() {
					got, _ = s.Read()
					break
				}
				transfer(s, c, whole)
			}
			if string(got) != "hello world!" {
				t.Fatalf("server read %q", got)
			}
		})
	}
}

func TestMessagesInOneFrameReadAsOne(t *testing.T) {
	c, s := newPair(t, clientConfig(), serverConfig("server"))
	if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
		t.Fatalf("handshake: %v %v", cerr, serr)
	}
	c.Write([]byte("first"))
	c.Write([]byte("second"))
	transfer(c, s, whole)
	if got, _ := s.Read(); string(got) != "firstsecond" {
		t.Fatalf("got %q, want the C++ peers' one message %q", got, "firstsecond")
	}
	if got, err := s.Read(); got != nil || !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("second Read = %q, %v; want nil, ErrWouldBlock", got, err)
	}
}

func TestCloseNotify(t *testing.T) {
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			ccfg := clientConfig()
			ccfg.MaxVersion = ver.v
			c, s := newPair(t, ccfg, serverConfig("server"))
			if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
				t.Fatalf("handshake: %v %v", cerr, serr)
			}
			c.Write([]byte("last words"))
			if err := c.Shutdown(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write([]byte("more")); !errors.Is(err, ErrClosed) {
				t.Fatalf("Write after Shutdown: %v", err)
			}
			transfer(c, s, whole)
			if got, err := s.Read(); string(got) != "last words" || err != nil {
				t.Fatalf("Read = %q, %v", got, err)
			}
			if _, err := s.Read(); err != io.EOF || !s.PeerClosed() {
				t.Fatalf("after close_notify: Read error %v, PeerClosed %v", err, s.PeerClosed())
			}
			if err := s.PutEOF(); err != nil {
				t.Fatalf("PutEOF after close_notify: %v", err)
			}
			// The other way: the server answers with its own close_notify.
			s2c, s2 := newPair(t, ccfg, serverConfig("server"))
			handshake(s2c, s2)
			s2.Shutdown()
			transfer(s2, s2c, whole)
			if _, err := s2c.Read(); err != io.EOF {
				t.Fatalf("client after server close_notify: %v", err)
			}
		})
	}
}

func TestTruncation(t *testing.T) {
	c, s := newPair(t, clientConfig(), serverConfig("server"))
	if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
		t.Fatalf("handshake: %v %v", cerr, serr)
	}
	c.Write([]byte("cut"))
	frame := c.GetData()
	s.PutData(frame[:len(frame)-3])
	err := s.PutEOF()
	if !errors.Is(err, ErrTruncated) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("PutEOF mid-record: %v, want ErrTruncated", err)
	}
	if _, rerr := s.Read(); rerr != err {
		t.Fatalf("Read after truncation: %v, want the sticky %v", rerr, err)
	}
	// Between records, without close_notify: truncated as well.
	c2, s2 := newPair(t, clientConfig(), serverConfig("server"))
	handshake(c2, s2)
	if err := s2.PutEOF(); !errors.Is(err, ErrTruncated) {
		t.Fatalf("PutEOF between records: %v", err)
	}
}

// A session ticket from one server Context resumes on another given the same
// SessionTicketKey (a restarted server), and not on one with its own random key.
func TestSessionTicketKeySharedAcrossContexts(t *testing.T) {
	key := pattern(SessionTicketKeyLen)
	withKey := func(k []byte) *Context {
		cfg := serverConfig("server-ec")
		cfg.SessionTicketKey = k
		return mustContext(t, RoleServer, cfg)
	}
	cctx := mustContext(t, RoleClient, clientConfig())
	connect := func(sctx *Context, session []byte) *Engine {
		c, _ := NewClientEngine(cctx)
		s, _ := NewServerEngine(sctx)
		t.Cleanup(func() { c.Close(); s.Close() })
		if session != nil {
			c.SetSession(session)
		}
		if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
			t.Fatalf("handshake: %v %v", cerr, serr)
		}
		roundTrip(t, c, s, []byte("ping"))
		roundTrip(t, s, c, []byte("pong"))
		return c
	}
	sess, err := connect(withKey(key), nil).Session()
	if err != nil {
		t.Fatal(err)
	}
	if !connect(withKey(key), sess).ConnectionState().DidResume {
		t.Error("a server Context with the same ticket key did not resume the session")
	}
	if connect(withKey(nil), sess).ConnectionState().DidResume {
		t.Error("a server Context with its own key resumed the session")
	}
	for _, bad := range []struct {
		role Role
		key  []byte
	}{{RoleServer, key[:79]}, {RoleClient, key}} {
		cfg := serverConfig("server-ec")
		if bad.role == RoleClient {
			cfg = clientConfig()
		}
		cfg.SessionTicketKey = bad.key
		if _, err := NewContext(bad.role, cfg); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "SessionTicketKey") {
			t.Errorf("%v with a %d-byte key: %v", bad.role, len(bad.key), err)
		}
	}
}

func TestResumption(t *testing.T) {
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			ccfg := clientConfig()
			ccfg.MaxVersion = ver.v
			cctx := mustContext(t, RoleClient, ccfg)
			sctx := mustContext(t, RoleServer, serverConfig("server"))
			first := func(session []byte) *Engine {
				c, _ := NewClientEngine(cctx)
				s, _ := NewServerEngine(sctx)
				t.Cleanup(func() { c.Close(); s.Close() })
				if session != nil {
					if err := c.SetSession(session); err != nil {
						t.Fatal(err)
					}
				}
				if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
					t.Fatalf("handshake: %v %v", cerr, serr)
				}
				roundTrip(t, c, s, []byte("ping"))
				roundTrip(t, s, c, []byte("pong")) // carries the TLS 1.3 tickets home
				return c
			}
			c := first(nil)
			if c.ConnectionState().DidResume {
				t.Fatal("a first handshake resumed")
			}
			sess, err := c.Session()
			if err != nil {
				t.Fatal(err)
			}
			if !first(sess).ConnectionState().DidResume {
				t.Fatal("the session was not resumed")
			}
		})
	}
	t.Run("TicketsDisabled", func(t *testing.T) {
		scfg := serverConfig("server")
		scfg.SessionTicketsDisabled = true
		c, s := newPair(t, clientConfig(), scfg)
		handshake(c, s)
		roundTrip(t, s, c, []byte("pong"))
		if _, err := c.Session(); err == nil {
			t.Fatal("a TLS 1.3 session without tickets is resumable")
		}
	})
}

// The TLS byte stream cut up any way yields the same plaintext.
func TestRechunking(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	strategies := map[string]chunker{
		"whole": whole,
		"bytes": func(f []byte) [][]byte {
			out := make([][]byte, len(f))
			for i := range f {
				out[i] = f[i : i+1]
			}
			return out
		},
		"random": func(f []byte) [][]byte {
			var out [][]byte
			for len(f) > 0 {
				n := min(len(f), 1+rng.IntN(700))
				out, f = append(out, f[:n]), f[n:]
			}
			return out
		},
	}
	msgs := [][]byte{[]byte("a"), pattern(20000), pattern(100000), []byte("end")}
	var want []byte
	for _, m := range msgs {
		want = append(want, m...)
	}
	for name, split := range strategies {
		for _, ver := range versions {
			t.Run(name+"/"+ver.name, func(t *testing.T) {
				ccfg := clientConfig()
				ccfg.MaxVersion = ver.v
				c, s := newPair(t, ccfg, serverConfig("server-ec"))
				if cerr, serr := handshakeWith(c, s, split); cerr != nil || serr != nil {
					t.Fatalf("handshake: %v %v", cerr, serr)
				}
				// Every message's records in one stream, then cut.
				for _, m := range msgs {
					c.Write(m)
				}
				c.Shutdown()
				if _, err := transfer(c, s, split); err != nil {
					t.Fatal(err)
				}
				var got []byte
				for {
					b, err := s.Read()
					got = append(got, b...)
					if err == io.EOF {
						break
					}
					if err != nil || b == nil {
						t.Fatalf("Read: %v after %d bytes", err, len(got))
					}
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("got %d bytes, want %d", len(got), len(want))
				}
			})
		}
	}
}

func TestCloseIdempotent(t *testing.T) {
	c, s := newPair(t, clientConfig(), serverConfig("server"))
	handshake(c, s)
	for range 2 {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.PutData([]byte{1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("PutData after Close: %v", err)
	}
	if _, err := c.Write([]byte{1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if _, err := c.Read(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if c.GetData() != nil || c.ConnectionState().Version != 0 {
		t.Fatal("a closed engine still reports data or state")
	}
}

func TestContextClosedWhileEnginesLive(t *testing.T) {
	cctx, err := NewContext(RoleClient, clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	sctx := mustContext(t, RoleServer, serverConfig("server"))
	c, _ := NewClientEngine(cctx)
	s, _ := NewServerEngine(sctx)
	defer s.Close()
	cctx.Close()
	cctx.Close()
	if _, err := NewClientEngine(cctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("NewClientEngine on a closed Context: %v", err)
	}
	if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
		t.Fatalf("an engine of a closed Context: %v %v", cerr, serr)
	}
	c.Close()
}

func TestRoleMismatch(t *testing.T) {
	cctx := mustContext(t, RoleClient, clientConfig())
	if _, err := NewServerEngine(cctx); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("server engine from a client Context: %v", err)
	}
}

func TestDebugTrace(t *testing.T) {
	var cbuf, sbuf bytes.Buffer
	ccfg := clientConfig()
	ccfg.Debug = &cbuf
	scfg := serverConfig("server")
	scfg.Debug = &sbuf
	c, s := newPair(t, ccfg, scfg)
	c.Write([]byte("hello world!"))
	for range 10 {
		transfer(c, s, whole)
		if s.CanRecv() {
			break
		}
		transfer(s, c, whole)
	}
	for _, want := range []string{"DEBUG: -1 written to SSL\n", "read from BIO\n", "written to BIO\n", "DEBUG: 12 written to SSL\n"} {
		if !bytes.Contains(cbuf.Bytes(), []byte(want)) {
			t.Errorf("client trace lacks %q:\n%s", want, cbuf.String())
		}
	}
	if !bytes.Contains(sbuf.Bytes(), []byte("written to BIO\n")) {
		t.Errorf("server trace:\n%s", sbuf.String())
	}
}

// Turning verification off is explicit and never silent: the client Context says so once.
func TestInsecureSkipVerifyIsLogged(t *testing.T) {
	for _, c := range []struct {
		role     Role
		cfg      *Config
		warnings int
	}{
		{RoleClient, &Config{InsecureSkipVerify: true}, 1},
		{RoleClient, clientConfig(), 0},
		{RoleServer, serverConfig("server-ec"), 0},
	} {
		var logs bytes.Buffer
		c.cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		mustContext(t, c.role, c.cfg)
		if got := strings.Count(logs.String(), "level=WARN"); got != c.warnings || (got > 0 && !strings.Contains(logs.String(), "InsecureSkipVerify")) {
			t.Errorf("%v, InsecureSkipVerify %v: %q", c.role, c.cfg.InsecureSkipVerify, logs.String())
		}
	}
}
