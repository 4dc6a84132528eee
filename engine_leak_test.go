package tlszmq

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rss returns the process's resident set size in bytes, from /proc.
func rss(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatalf("reading /proc/self/statm: %v", err)
	}
	pages, err := strconv.ParseInt(strings.Fields(string(b))[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

func heap() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// Many thousands of engines made, used, failed and closed (or dropped for the finalizer to free)
// leave the Go heap and the process RSS where they were after the warm-up.
func TestLeakCycles(t *testing.T) {
	cycles := 6000
	if testing.Short() {
		cycles = 4000
	}
	// One OS thread for every cgo call of the cycles: OpenSSL gives each new thread state of
	// its own (error queue, random generators), which would read as growth under load.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	conns0 := liveConns.Load()
	cctx := mustContext(t, RoleClient, clientConfig())
	sctx := mustContext(t, RoleServer, serverConfig("server-ec"))
	badctx := mustContext(t, RoleClient, &Config{CAFile: cert("other-ca.crt"), ServerName: "localhost"})
	msg := pattern(4096)
	cycle := func(i int) {
		ctx := cctx
		if i%5 == 4 {
			ctx = badctx // fails verification
		}
		c, _ := NewClientEngine(ctx)
		s, _ := NewServerEngine(sctx)
		cerr, serr := handshake(c, s)
		if ctx == cctx {
			if cerr != nil || serr != nil {
				t.Fatalf("cycle %d: %v %v", i, cerr, serr)
			}
			c.Write(msg)
			transfer(c, s, whole)
			s.Read()
			c.Shutdown()
			transfer(c, s, whole)
		} else if cerr == nil {
			t.Fatalf("cycle %d: verification against the wrong CA passed", i)
		}
		if i%3 == 0 {
			return // dropped: the finalizer frees the C objects
		}
		c.Close()
		s.Close()
	}
	// RSS climbs for a while before it levels: glibc gives each OS thread that a cgo call lands
	// on a malloc arena of its own. Half of the cycles warm up; the other half are measured. A
	// leaked SSL object per cycle (about 6 KB) would add 12 MB or more.
	warm := cycles / 2
	for i := range warm {
		cycle(i)
	}
	waitFreed(t, conns0)
	debug.FreeOSMemory()
	heap0, rss0, c0 := heap(), rss(t), cHeapInUse()
	for i := warm; i < cycles; i++ {
		cycle(i)
	}
	// Every engine, closed or dropped, must have freed its C objects exactly once: wait for the
	// cleanups of the dropped ones, which run after a GC on a goroutine of their own.
	waitFreed(t, conns0)
	debug.FreeOSMemory()
	heap1, rss1, c1 := heap(), rss(t), cHeapInUse()
	t.Logf("%d cycles after %d warm-up: Go heap %d → %d KiB, C heap in use %d → %d KiB, RSS %d → %d KiB",
		cycles-warm, warm, heap0>>10, heap1>>10, c0>>10, c1>>10, rss0>>10, rss1>>10)
	if d := heap1 - heap0; d > 1<<20 {
		t.Errorf("Go heap grew by %d KiB", d>>10)
	}
	// The exact measure of a C leak: what OpenSSL and the shim hold (glibc's mallinfo2). A
	// leaked SSL object per cycle would add megabytes.
	if c0 >= 0 && !asanBuild {
		if d := c1 - c0; d > 256<<10 {
			t.Errorf("the C heap grew by %d KiB over %d cycles", d>>10, cycles-warm)
		}
	}
	if asanBuild {
		t.Log("RSS not checked under -asan: freed memory stays in ASan's quarantine (the heap is)")
		return
	}
	// RSS is the coarse check: glibc's arenas and fragmentation move it by a few MB.
	if d := rss1 - rss0; d > 8<<20 {
		t.Errorf("RSS grew by %d KiB over %d cycles", d>>10, cycles-warm)
	}
}

// An idle established engine holds no Go buffer storage: what it used came from a shared
// pool and went back.
func TestIdleEngineHoldsNoBuffers(t *testing.T) {
	c, s := newPair(t, clientConfig(), serverConfig("server-ec"))
	if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	for _, n := range []int{10, 5000} {
		roundTrip(t, c, s, pattern(n))
		roundTrip(t, s, c, pattern(n))
	}
	for name, e := range map[string]*Engine{"client": c, "server": s} {
		if held := cap(e.out.Bytes()) + cap(e.plain.Bytes()) + cap(e.app.Bytes()); held != 0 {
			t.Errorf("idle %s engine holds %d bytes of buffers", name, held)
		}
	}
}

// waitFreed waits until the live C connections are back to want, running the GC so that the
// cleanups of dropped engines run; it fails if they are not.
func waitFreed(t *testing.T, want int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		runtime.GC()
		if liveConns.Load() == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d C connections still live, want %d: an engine's C objects were not freed", liveConns.Load(), want)
		}
	}
}

// Closing a Context while engines live frees its C context once the last engine is closed, and
// dropping everything without Close frees it all the same.
func TestContextsFreedOnce(t *testing.T) {
	ctxs0, conns0 := liveContexts.Load(), liveConns.Load()
	func() {
		sctx, _ := NewContext(RoleServer, serverConfig("server-ec"))
		cctx, _ := NewContext(RoleClient, clientConfig())
		c, _ := NewClientEngine(cctx)
		s, _ := NewServerEngine(sctx)
		handshake(c, s)
		cctx.Close() // the client engine still holds it
		if liveContexts.Load() != ctxs0+2 {
			t.Fatalf("a Context in use was freed: %d live", liveContexts.Load()-ctxs0)
		}
		c.Close() // now it goes
		if liveContexts.Load() != ctxs0+1 {
			t.Fatalf("closing the last engine did not free its closed Context: %d live", liveContexts.Load()-ctxs0)
		}
		_ = s // s and sctx are dropped without Close
	}()
	waitFreed(t, conns0)
	for deadline := time.Now().Add(10 * time.Second); liveContexts.Load() != ctxs0; time.Sleep(10 * time.Millisecond) {
		runtime.GC()
		if time.Now().After(deadline) {
			t.Fatalf("%d contexts still live after their owners were dropped", liveContexts.Load()-ctxs0)
		}
	}
}

// After large messages, an idle engine pair's C side shrinks back too: the memory BIOs never
// hold more than a chunk (64 KiB) and a record whatever the message size, OpenSSL's record
// buffers are released (SSL_MODE_RELEASE_BUFFERS), and ReleaseBuffers swaps the BIOs that
// held the chunks for fresh ones.
func TestIdleEngineShrinksAfterLargeMessages(t *testing.T) {
	runtime.LockOSThread() // malloc's counters are per arena: stay on one thread's
	defer runtime.UnlockOSThread()
	c, s := newPair(t, clientConfig(), serverConfig("server-ec"))
	if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	roundTrip(t, c, s, pattern(100))
	idle := cHeapInUse()
	for range 3 {
		roundTrip(t, c, s, pattern(4<<20))
		roundTrip(t, s, c, pattern(4<<20))
	}
	// Before the release: bounded by the chunks, not by the 4 MiB messages.
	if grown := cHeapInUse() - idle; grown > 4*200<<10 {
		t.Fatalf("the pair holds %d KiB more C memory after 4 MiB messages", grown>>10)
	}
	t.Logf("after 4 MiB messages: %+d KiB", (cHeapInUse()-idle)>>10)
	c.ReleaseBuffers()
	s.ReleaseBuffers()
	t.Logf("after ReleaseBuffers: %+d KiB", (cHeapInUse()-idle)>>10)
	if grown := cHeapInUse() - idle; grown > 16<<10 {
		t.Fatalf("the idle pair holds %d KiB more C memory after 4 MiB messages", grown>>10)
	}
}
