package perf

import (
	"os"
	"testing"
)

// TestMain lets the test binary be the client process of the handshake and bulk streams
// measurements, which start a copy of the running executable.
func TestMain(m *testing.M) {
	RunChildIfAsked()
	os.Exit(m.Run())
}
