package tlszmq

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// cert returns the path of a fixture in testdata/certs.
func cert(name string) string { return filepath.Join("testdata", "certs", name) }

// serverConfig is a server Config with the named certificate pair (e.g. "server").
func serverConfig(name string) *Config {
	return &Config{CertFile: cert(name + ".crt"), KeyFile: cert(name + ".key")}
}

// clientConfig verifies the server against the test CA, as "localhost".
func clientConfig() *Config {
	return &Config{CAFile: cert("ca.crt"), ServerName: "localhost"}
}

// mustContext makes a Context for the test. Its warnings (a client that does not verify)
// go to the test's quiet logger unless cfg has a Logger of its own.
func mustContext(t testing.TB, role Role, cfg *Config) *Context {
	t.Helper()
	if cfg != nil && cfg.Logger == nil {
		cfg = cfg.Clone()
		cfg.Logger = quietLog(t)
	}
	ctx, err := NewContext(role, cfg)
	if err != nil {
		t.Fatalf("NewContext(%v): %v", role, err)
	}
	t.Cleanup(func() { ctx.Close() })
	return ctx
}

// newPair makes a client and a server engine from the two configurations.
func newPair(t testing.TB, ccfg, scfg *Config) (client, server *Engine) {
	t.Helper()
	cctx := mustContext(t, RoleClient, ccfg)
	sctx := mustContext(t, RoleServer, scfg)
	c, err := NewClientEngine(cctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServerEngine(sctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// chunker splits one outgoing frame into the pieces the receiver is fed with.
type chunker func(frame []byte) [][]byte

func whole(frame []byte) [][]byte { return [][]byte{frame} }

// transfer moves what from has for the network to to, as chunker says. It returns the
// number of bytes moved and to's error (from's error is the caller's to look at).
func transfer(from, to *Engine, split chunker) (int, error) {
	frame := from.GetData()
	if len(frame) == 0 {
		return 0, nil
	}
	for _, piece := range split(frame) {
		if err := to.PutData(piece); err != nil {
			return len(frame), err
		}
	}
	return len(frame), nil
}

// handshake runs the handshake to its end, or to the first error of either side, moving every
// flight whole.
func handshake(c, s *Engine) (clientErr, serverErr error) {
	return handshakeWith(c, s, whole)
}

func handshakeWith(c, s *Engine, split chunker) (clientErr, serverErr error) {
	if err := c.Update(); err != nil {
		return err, nil
	}
	for range 20 {
		n1, serr := transfer(c, s, split)
		n2, cerr := transfer(s, c, split)
		if cerr != nil || serr != nil {
			// Let the alert reach the other side, as a real transport would.
			transfer(c, s, split)
			transfer(s, c, split)
			return c.Err(), s.Err()
		}
		if n1 == 0 && n2 == 0 && c.HandshakeComplete() && s.HandshakeComplete() {
			return nil, nil
		}
	}
	return errors.New("handshake did not finish in 20 rounds"), nil
}

// roundTrip writes msg on from, carries it to to whole, and returns what to reads.
func roundTrip(t testing.TB, from, to *Engine, msg []byte) []byte {
	t.Helper()
	if _, err := from.Write(msg); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if _, err := transfer(from, to, whole); err != nil {
		t.Fatalf("PutData: %v", err)
	}
	got, err := to.Read()
	if err != nil && !(len(msg) == 0 && errors.Is(err, ErrWouldBlock)) { // an empty write sends nothing
		t.Fatalf("Read: %v", err)
	}
	return got
}

// pattern is n bytes that are unlikely to line up with themselves by accident.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }
