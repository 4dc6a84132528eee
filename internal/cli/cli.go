// Package cli holds the conventions shared by the project's commands: a bad flag, a bad value
// or a missing file is one line on stderr and exit status 2; -h lists every flag and exits 0;
// any other failure is one line and exit status 1.
package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"
)

// ErrUsage is wrapped by errors about how a command was called (exit status 2).
var ErrUsage = errors.New("usage error")

// Usagef returns an error about how the command was called.
func Usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// Parse parses args into fs. -h writes the flag list to stderr and returns flag.ErrHelp; a bad
// flag or a stray argument returns a usage error naming it.
func Parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stderr, "usage of %s:\n", fs.Name())
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		return flag.ErrHelp
	}
	if err != nil {
		return Usagef("%s", printable(err.Error()))
	}
	if fs.NArg() > 0 {
		return Usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// printable returns s, or s quoted when it holds characters that are not printable (a newline
// in a file name would otherwise break the one-line error).
func printable(s string) string {
	if strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
}

// NeedFiles returns a usage error naming the first path that cannot be read.
func NeedFiles(paths ...string) error {
	for _, p := range paths {
		if p == "" {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return Usagef("%s: %v", printable(p), err)
		}
		f.Close()
	}
	return nil
}

// Exit turns a command's error into its exit status, writing one line to stderr:
// "name: message", with " (name -h lists the flags)" after usage errors.
func Exit(name string, err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrUsage):
		msg := strings.TrimPrefix(err.Error(), ErrUsage.Error()+": ")
		fmt.Fprintf(stderr, "%s: %s (%s -h lists the flags)\n", name, msg, name)
		return 2
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	return 1
}

// EndpointHost returns the host of a tcp:// endpoint ("localhost" for
// "tcp://localhost:5556"), or "" for other transports and wildcards.
func EndpointHost(endpoint string) string {
	rest, ok := strings.CutPrefix(endpoint, "tcp://")
	if !ok {
		return ""
	}
	if i := strings.LastIndex(rest, ":"); i >= 0 {
		rest = rest[:i]
	}
	rest = strings.TrimSuffix(strings.TrimPrefix(rest, "["), "]")
	if rest == "*" {
		return ""
	}
	return rest
}

// CString returns b up to its first NUL byte, as the C++ peers print a buffer.
func CString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
