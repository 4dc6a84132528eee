// Package cmdtest builds the project's commands, and the C++ TLSZMQ test peer, once for the
// tests that run them as a user would.
package cmdtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	once sync.Once
	dir  string
	err  error
)

// Build compiles every command into a temporary folder (once per test binary) and returns the
// path of the one named.
func Build(t testing.TB, name string) string {
	t.Helper()
	once.Do(func() {
		dir, err = os.MkdirTemp("", "tlszmq-cmds-")
		if err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./cmd/...")
		cmd.Dir = Root()
		out, cerr := cmd.CombinedOutput()
		if cerr != nil {
			err = &buildError{"go build ./cmd/...: " + string(out)}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, name)
}

// Root returns the module's root folder.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

var (
	peerOnce sync.Once
	peerPath string
	peerErr  error
)

// CppPeer builds testdata/cpp/tlszmq_peer.cpp once (g++, cppzmq-dev and libssl-dev, which make
// deps installs) and returns the binary's path.
func CppPeer(t testing.TB) string {
	t.Helper()
	peerOnce.Do(func() {
		d, err := os.MkdirTemp("", "tlszmq-peer-")
		if err != nil {
			peerErr = err
			return
		}
		peerPath = filepath.Join(d, "tlszmq_peer")
		cmd := exec.Command("g++", "-O2", "-std=c++17", "-o", peerPath,
			filepath.Join(Root(), "testdata", "cpp", "tlszmq_peer.cpp"), "-lzmq", "-lssl", "-lcrypto")
		if out, err := cmd.CombinedOutput(); err != nil {
			peerErr = &buildError{"building the C++ peer: " + err.Error() + "\n" + string(out)}
		}
	})
	if peerErr != nil {
		t.Fatal(peerErr)
	}
	return peerPath
}

// Main runs a package's tests and then removes what Build and CppPeer built: call it from
// the TestMain of every package that uses them, so that runs leave nothing in the temporary
// folder.
func Main(m *testing.M) {
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	if peerPath != "" {
		os.RemoveAll(filepath.Dir(peerPath))
	}
	os.Exit(code)
}

type buildError struct{ out string }

// Error returns the build's output.
func (e *buildError) Error() string { return e.out }
