package main

import (
	"testing"

	"github.com/tlszmq/tlszmq/internal/cmdtest"
)

// TestMain runs the tests, then removes what they built (the commands, the C++ peer).
func TestMain(m *testing.M) { cmdtest.Main(m) }
