package tlszmq

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
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
	cycles := 4000
	if testing.Short() {
		cycles = 1000
	}
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
	warm := cycles / 5
	for i := range warm {
		cycle(i)
	}
	debug.FreeOSMemory()
	heap0, rss0 := heap(), rss(t)
	for i := warm; i < cycles; i++ {
		cycle(i)
	}
	runtime.GC()
	runtime.GC() // run the finalizers of the dropped engines
	debug.FreeOSMemory()
	heap1, rss1 := heap(), rss(t)
	t.Logf("%d cycles after %d warm-up: heap %d → %d KiB, RSS %d → %d KiB", cycles-warm, warm, heap0>>10, heap1>>10, rss0>>10, rss1>>10)
	if d := heap1 - heap0; d > 1<<20 {
		t.Errorf("Go heap grew by %d KiB", d>>10)
	}
	if asanBuild {
		t.Log("RSS not checked under -asan: freed memory stays in ASan's quarantine (the heap is)")
		return
	}
	if d := rss1 - rss0; d > 8<<20 {
		t.Errorf("RSS grew by %d KiB over %d cycles", d>>10, cycles-warm)
	}
}
