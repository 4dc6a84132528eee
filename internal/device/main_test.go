package device

import (
	"os"
	"strings"
	"syscall"
	"testing"
)

// tcacheOff turns glibc's per-thread malloc cache off. Chunks in that cache count as in use,
// so with it on, the soak's C heap figure after 500 concurrent clients is mostly a few hundred
// threads' caches (about 5 MB) rather than what the code keeps.
const tcacheOff = "glibc.malloc.tcache_count=0"

// TestMain runs the package's tests with tcacheOff, restarting the test binary with it if the
// environment does not already have it (glibc reads its tunables at start-up only).
func TestMain(m *testing.M) {
	if cur := os.Getenv("GLIBC_TUNABLES"); !strings.Contains(cur, tcacheOff) {
		val := tcacheOff
		if cur != "" {
			val = cur + ":" + tcacheOff
		}
		if exe, err := os.Executable(); err == nil {
			os.Setenv("GLIBC_TUNABLES", val)
			syscall.Exec(exe, os.Args, os.Environ()) // returns only if it failed: run as we are
		}
	}
	os.Exit(m.Run())
}
