package tlszmq

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq/internal/syncbuf"
)

// keyLogLine is one line of the NSS key-log format: LABEL, the client random (32 bytes) and
// the secret, both in lower-case hex.
var keyLogLine = regexp.MustCompile(`^([A-Z][A-Z0-9_]*) ([0-9a-f]{64}) ([0-9a-f]+)$`)

// The labels each version logs, and the length of each secret: the master secret (48 bytes) in
// TLS 1.2; in TLS 1.3 the secrets have the length of the suite's hash, 48 bytes for
// TLS_AES_256_GCM_SHA384 (OpenSSL's first choice with AES-NI) and 32 for the SHA-256 suites.
var keyLogLabels = map[uint16][]string{
	VersionTLS12: {"CLIENT_RANDOM"},
	VersionTLS13: {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0", "EXPORTER_SECRET",
		"SERVER_HANDSHAKE_TRAFFIC_SECRET", "SERVER_TRAFFIC_SECRET_0"},
}

// parseKeyLog checks that log is well-formed NSS key-log text (every line LABEL RANDOM
// SECRET, each secret of secretLen bytes, one client random) and returns its lines sorted,
// their labels sorted and the client random.
func parseKeyLog(t *testing.T, who, log string, secretLen int) (lines, labels []string, random string) {
	t.Helper()
	if !strings.HasSuffix(log, "\n") {
		t.Fatalf("%s's key log does not end in a newline: %q", who, log)
	}
	for _, line := range strings.Split(strings.TrimSuffix(log, "\n"), "\n") {
		m := keyLogLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("%s's key log: %q is not an NSS key-log line", who, line)
		}
		if len(m[3]) != 2*secretLen {
			t.Errorf("%s's key log: %s has a secret of %d bytes, want %d", who, m[1], len(m[3])/2, secretLen)
		}
		if random != "" && m[2] != random {
			t.Errorf("%s's key log: two client randoms, %s and %s", who, random, m[2])
		}
		random = m[2]
		lines = append(lines, line)
		labels = append(labels, m[1])
	}
	slices.Sort(lines)
	slices.Sort(labels)
	return lines, labels, random
}

// secretLen is the length of the secrets a session's key log holds.
func secretLen(st ConnectionState) int {
	if st.Version == VersionTLS12 || strings.HasSuffix(st.CipherSuite, "SHA384") {
		return 48
	}
	return 32
}

// withKeyLog returns a copy of cfg that logs the session secrets to w, at one TLS version.
func withKeyLog(cfg *Config, w *bytes.Buffer, v uint16) *Config {
	cfg = cfg.Clone()
	cfg.KeyLogWriter = w
	cfg.MinVersion, cfg.MaxVersion = v, v
	return cfg
}

// A client and a server engine, each with a key log: both write the same well-formed NSS lines
// for the session, once (not again with later traffic), with the client random of the
// ClientHello on the wire.
func TestKeyLogEngines(t *testing.T) {
	for _, v := range []uint16{VersionTLS12, VersionTLS13} {
		for _, suite := range []string{"", "TLS_AES_128_GCM_SHA256"} {
			if suite != "" && v == VersionTLS12 {
				continue
			}
			name := VersionName(v)
			if suite != "" {
				name += "/" + suite
			}
			t.Run(name, func(t *testing.T) {
				var clog, srvLog bytes.Buffer
				scfg := withKeyLog(serverConfig("server"), &srvLog, v)
				scfg.CipherSuites = suite
				c, s := newPair(t, withKeyLog(clientConfig(), &clog, v), scfg)
				if err := c.Update(); err != nil {
					t.Fatal(err)
				}
				hello := c.GetData()
				if clog.Len() != 0 {
					t.Fatalf("the client logged before the handshake: %q", clog.String())
				}
				// A handshake record (22), then a ClientHello (1): the random follows the
				// record header (5 bytes), the message header (4) and the legacy version (2).
				if len(hello) < 43 || hello[0] != 22 || hello[5] != 1 {
					t.Fatalf("the first flight is not a ClientHello: % x", hello[:min(len(hello), 16)])
				}
				wireRandom := hex.EncodeToString(hello[11:43])
				if err := s.PutData(hello); err != nil {
					t.Fatal(err)
				}
				if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
					t.Fatal(cerr, serr)
				}
				if got := roundTrip(t, c, s, []byte("ping")); string(got) != "ping" {
					t.Fatalf("round trip: %q", got)
				}
				before := clog.String() + srvLog.String()
				roundTrip(t, s, c, []byte("pong"))
				if after := clog.String() + srvLog.String(); after != before {
					t.Errorf("traffic after the handshake wrote to the key logs: %q", strings.TrimPrefix(after, before))
				}
				st := c.ConnectionState()
				if st.Version != v || (suite != "" && st.CipherSuite != suite) {
					t.Fatalf("negotiated %s %s", st.VersionName, st.CipherSuite)
				}
				clines, clabels, crandom := parseKeyLog(t, "the client", clog.String(), secretLen(st))
				slines, _, srandom := parseKeyLog(t, "the server", srvLog.String(), secretLen(st))
				if !slices.Equal(clabels, keyLogLabels[v]) {
					t.Errorf("the client logged %v, want %v", clabels, keyLogLabels[v])
				}
				if !slices.Equal(clines, slines) {
					t.Errorf("the two sides logged different secrets:\nclient:\n%s\nserver:\n%s", clog.String(), srvLog.String())
				}
				if crandom != wireRandom || srandom != wireRandom {
					t.Errorf("client random %s (client) and %s (server), the ClientHello's is %s", crandom, srandom, wireRandom)
				}
			})
		}
	}
}

// Go's crypto/tls with a KeyLogWriter of its own, against an engine with one (either side
// being crypto/tls): the engine's key log has every line crypto/tls wrote, the same secrets
// derived by an implementation we did not write, and over TLS 1.3 only EXPORTER_SECRET
// besides (which crypto/tls does not log).
func TestKeyLogGoTLS(t *testing.T) {
	caPEM, err := os.ReadFile(cert("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	pair, err := tls.LoadX509KeyPair(cert("server-ec.crt"), cert("server-ec.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []uint16{VersionTLS12, VersionTLS13} {
		for _, goSide := range []string{"client", "server"} {
			t.Run(fmt.Sprintf("%s/crypto-tls-%s", VersionName(v), goSide), func(t *testing.T) {
				var elog, glog syncbuf.Buffer // the engine writes on engineOverPipe's goroutine
				var e *Engine
				if goSide == "client" {
					e, err = NewServerEngine(mustContext(t, RoleServer, &Config{CertFile: cert("server-ec.crt"),
						KeyFile: cert("server-ec.key"), KeyLogWriter: &elog, MinVersion: v, MaxVersion: v}))
				} else {
					e, err = NewClientEngine(mustContext(t, RoleClient, &Config{CAFile: cert("ca.crt"), ServerName: "localhost",
						KeyLogWriter: &elog, MinVersion: v, MaxVersion: v}))
				}
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { e.Close() })
				conn, result := engineOverPipe(t, e)
				gcfg := &tls.Config{KeyLogWriter: &glog, MinVersion: v, MaxVersion: v}
				var gc *tls.Conn
				if goSide == "client" {
					gcfg.RootCAs, gcfg.ServerName = roots, "localhost"
					gc = tls.Client(conn, gcfg)
				} else {
					gcfg.Certificates = []tls.Certificate{pair}
					gc = tls.Server(conn, gcfg)
				}
				gc.SetDeadline(time.Now().Add(10 * time.Second))
				herr := gc.Handshake()
				if res := <-result; herr != nil || res.err != nil {
					t.Fatal(herr, res.err)
				}
				echoOnce(t, gc) // the engine's log is complete once it has echoed
				gst := gc.ConnectionState()
				n := 32
				if v == VersionTLS12 || gst.CipherSuite == tls.TLS_AES_256_GCM_SHA384 {
					n = 48
				}
				elines, elabels, erandom := parseKeyLog(t, "the engine", elog.String(), n)
				glines, _, grandom := parseKeyLog(t, "crypto/tls", glog.String(), n)
				if !slices.Equal(elabels, keyLogLabels[v]) {
					t.Errorf("the engine logged %v, want %v", elabels, keyLogLabels[v])
				}
				if erandom != grandom {
					t.Errorf("client random %s (engine), %s (crypto/tls)", erandom, grandom)
				}
				var extra []string
				for _, l := range elines {
					if !slices.Contains(glines, l) {
						extra = append(extra, strings.Fields(l)[0])
					}
				}
				for _, l := range glines {
					if !slices.Contains(elines, l) {
						t.Errorf("crypto/tls logged a line the engine did not: %s", l)
					}
				}
				if want := map[uint16]string{VersionTLS12: "", VersionTLS13: "EXPORTER_SECRET"}[v]; strings.Join(extra, " ") != want {
					t.Errorf("the engine's lines beyond crypto/tls's: %v, want %q\nengine:\n%s\ncrypto/tls:\n%s", extra, want, elog.String(), glog.String())
				}
			})
		}
	}
}

// FIPS mode and a key log do not go together: NewContext refuses them with ErrInvalidConfig
// and says why, before any FIPS provider is looked for.
func TestKeyLogFIPSRefused(t *testing.T) {
	for _, role := range []Role{RoleClient, RoleServer} {
		cfg := &Config{FIPS: true, KeyLogWriter: &bytes.Buffer{}}
		if role == RoleServer {
			cfg = serverConfig("server")
			cfg.FIPS, cfg.KeyLogWriter = true, &bytes.Buffer{}
		}
		ctx, err := NewContext(role, cfg)
		if err == nil {
			ctx.Close()
			t.Fatalf("%v: NewContext took FIPS with a KeyLogWriter", role)
		}
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "a key log exports the session secrets, which FIPS mode forbids") {
			t.Errorf("%v: %v, want ErrInvalidConfig saying why", role, err)
		}
	}
}

// Without a KeyLogWriter nothing is gathered in C; with one, the C buffer goes with
// ReleaseBuffers and lines C dropped are told of in a comment line.
func TestKeyLogBuffer(t *testing.T) {
	c, s := newPair(t, clientConfig(), serverConfig("server"))
	if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	if c.c.keylog_cap != 0 || s.c.keylog_cap != 0 || c.keyLogLines != nil {
		t.Errorf("engines without a KeyLogWriter gathered key-log lines")
	}

	var log bytes.Buffer
	c, s = newPair(t, withKeyLog(clientConfig(), &log, VersionTLS13), serverConfig("server"))
	if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	if n := strings.Count(log.String(), "\n"); n != 5 {
		t.Fatalf("%d lines, want 5:\n%s", n, log.String())
	}
	if c.keyLogLines != nil {
		t.Errorf("the engine kept its copy of the lines")
	}
	c.ReleaseBuffers()
	if c.c.keylog != nil || c.c.keylog_cap != 0 {
		t.Errorf("ReleaseBuffers left the C key-log buffer (%d bytes)", c.c.keylog_cap)
	}
	log.Reset()
	c.c.keylog_dropped += 3 // as tz_keylog_cb counts the lines past TZ_KEYLOG_MAX
	if err := c.Update(); err != nil {
		t.Fatal(err)
	}
	if want := "# tlszmq: 3 key log lines dropped: more than 4096 bytes of them in one call\n"; log.String() != want {
		t.Errorf("after 3 lines dropped: %q, want %q", log.String(), want)
	}
	log.Reset()
	c.Update()
	if log.Len() != 0 {
		t.Errorf("the drop was told of twice: %q", log.String())
	}
}

// Engines of one Context on several goroutines share its writer, as a Server's sessions do:
// each session's lines arrive whole (the race detector watches the writer's users).
func TestKeyLogSharedWriter(t *testing.T) {
	var log syncbuf.Buffer
	cctx := mustContext(t, RoleClient, &Config{CAFile: cert("ca.crt"), ServerName: "localhost", KeyLogWriter: &log})
	sctx := mustContext(t, RoleServer, serverConfig("server"))
	const sessions = 8
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := NewClientEngine(cctx)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			s, err := NewServerEngine(sctx)
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
				errs <- fmt.Errorf("handshake: %v, %v", cerr, serr)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	randoms := map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(log.String(), "\n"), "\n") {
		m := keyLogLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("%q is not an NSS key-log line", line)
		}
		randoms[m[2]]++
	}
	if len(randoms) != sessions {
		t.Fatalf("%d client randoms, want %d", len(randoms), sessions)
	}
	for r, n := range randoms {
		if n != 5 {
			t.Errorf("client random %s: %d lines, want 5", r, n)
		}
	}
}
