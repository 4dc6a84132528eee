// Package version holds the release of the project's commands and the line their -version
// flag prints.
package version

import (
	"fmt"
	"runtime"

	zmq "github.com/pebbe/zmq4"
)

// Version is the release of the module's commands (CHANGELOG.md at the module's root).
const Version = "0.9.0"

// Line returns what `NAME -version` prints: the command, the release, and the libzmq and Go
// versions it runs with, e.g. "tlsclient 0.9.0 (libzmq 4.3.4, go1.26.8)". The libzmq version
// is the library loaded at run time. OpenSSL's is not given: the tlszmq package exports no
// way to ask the linked library for it.
func Line(name string) string {
	major, minor, patch := zmq.Version()
	return fmt.Sprintf("%s %s (libzmq %d.%d.%d, %s)", name, Version, major, minor, patch, runtime.Version())
}
