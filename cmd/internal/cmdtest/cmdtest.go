// Package cmdtest builds the project's commands once for the tests that run them as a user
// would.
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
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..", "..")
		cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./cmd/...")
		cmd.Dir = root
		out, cerr := cmd.CombinedOutput()
		if cerr != nil {
			err = &buildError{string(out)}
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
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

type buildError struct{ out string }

func (e *buildError) Error() string { return "go build ./cmd/...: " + e.out }
