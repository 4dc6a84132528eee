package tlszmq

import (
	"runtime"
	"strings"
	"testing"
)

// A server engine that has received only the first five bytes of a ClientHello (a record
// header announcing 512 bytes that never come), as a slow-loris peer leaves a thousand of them,
// holds a few KiB. Go's share is the Engine itself: the pump borrows its buffers from a shared
// pool and gives them back when it returns. C's share is the SSL object (about 7.5 KiB), its
// memory BIOs and the five bytes: the handshake, and with it the 64 KiB of buffers OpenSSL sets
// up when it starts (the record buffers, the handshake message buffer, the buffering BIO),
// waits until the first record is whole. Bounds: 4 KiB of Go heap and 16 KiB of C heap an
// engine (before, OpenSSL held 73 KiB an engine).
func TestHalfOpenEngineMemory(t *testing.T) {
	const n = 1000
	runtime.LockOSThread() // malloc's counters are per arena: stay on one thread's
	defer runtime.UnlockOSThread()
	sctx := mustContext(t, RoleServer, serverConfig("server-ec"))
	prefix := []byte{0x16, 0x03, 0x01, 0x02, 0x00}
	engines := make([]*Engine, 0, n)
	defer func() {
		for _, e := range engines {
			e.Close()
		}
	}()
	for range 10 { // warm up: the pools, OpenSSL's per-thread state
		e, err := NewServerEngine(sctx)
		if err != nil {
			t.Fatal(err)
		}
		e.PutData(prefix)
		e.Close()
	}
	goHeap0, cHeap0 := heap(), cHeapInUse()
	for range n {
		e, err := NewServerEngine(sctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.PutData(prefix); err != nil {
			t.Fatalf("a ClientHello's first five bytes: %v", err)
		}
		if e.HandshakeComplete() || e.NeedsWrite() {
			t.Fatal("the engine answered half a record")
		}
		engines = append(engines, e)
	}
	goHeap1, cHeap1 := heap(), cHeapInUse()
	goPer, cPer := (goHeap1-goHeap0)/n, (cHeap1-cHeap0)/n
	t.Logf("per half-open server engine: Go heap %d bytes, C heap %d bytes", goPer, cPer)
	runtime.KeepAlive(engines)
	if goPer > 4<<10 {
		t.Errorf("a half-open engine holds %d bytes of Go heap, want at most 4 KiB", goPer)
	}
	if cHeap0 >= 0 && !asanBuild && cPer > 16<<10 {
		t.Errorf("a half-open engine holds %d bytes of C heap, want at most 16 KiB", cPer)
	}
}

// Waiting for the first record changes nothing a peer can see: a ClientHello fed a byte at a
// time is answered once it is whole, bytes that are not a handshake record are refused at once,
// and so is a first record longer than a record can be.
func TestServerWaitsForFirstRecord(t *testing.T) {
	c, s := newPair(t, clientConfig(), serverConfig("server-ec"))
	c.Update()
	hello := c.GetData()
	for i := range hello {
		if err := s.PutData(hello[i : i+1]); err != nil {
			t.Fatalf("byte %d: %v", i, err)
		}
		if s.NeedsWrite() != (i == len(hello)-1) {
			t.Fatalf("byte %d of %d: answered %v", i, len(hello), s.NeedsWrite())
		}
	}
	if _, err := transfer(s, c, whole); err != nil {
		t.Fatal(err)
	}
	if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
		t.Fatalf("after a byte-at-a-time ClientHello: %v %v", cerr, serr)
	}

	for name, frame := range map[string][]byte{
		"HTTP":            []byte("GET / HTTP/1.1\r\n"),
		"one byte":        {0x47},
		"record overflow": {0x16, 0x03, 0x01, 0xff, 0xff},
		"wrong version":   append([]byte{0x16, 0x09, 0x09, 0x00, 0x04}, 1, 0, 0, 0),
	} {
		s, err := NewServerEngine(mustContext(t, RoleServer, serverConfig("server-ec")))
		if err != nil {
			t.Fatal(err)
		}
		err = s.PutData(frame)
		if name == "one byte" {
			err = s.PutEOF() // the end of the transport: OpenSSL runs and refuses
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
		t.Logf("%s: %v", name, err)
		s.Close()
	}
	// A record header alone waits; the end of the transport then fails it as truncated.
	s2, err := NewServerEngine(mustContext(t, RoleServer, serverConfig("server-ec")))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.PutData([]byte{0x16, 0x03, 0x01, 0x02, 0x00}); err != nil {
		t.Fatal(err)
	}
	if err := s2.PutEOF(); err == nil || !strings.Contains(err.Error(), "truncated") && !strings.Contains(err.Error(), "unexpected eof") {
		t.Errorf("EOF after a record header: %v", err)
	}
}
