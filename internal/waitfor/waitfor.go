// Package waitfor is the tests' one way to wait for a condition that another goroutine or
// process brings about: poll it every 10 ms until it holds, or fail the test.
package waitfor

import (
	"testing"
	"time"
)

// Cond waits up to 10 s for cond, failing the test with what it waited for.
func Cond(t testing.TB, cond func() bool, what string) {
	t.Helper()
	Within(t, 10*time.Second, cond, what)
}

// Within waits up to d for cond, failing the test with what it waited for.
func Within(t testing.TB, d time.Duration, cond func() bool, what string) {
	t.Helper()
	if !Until(d, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// Until waits up to d for cond, and reports whether it held: for a caller whose failure
// message needs what is known only after the wait.
func Until(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}
