// Package cli holds the conventions shared by the project's commands:
//
//   - -h prints what the command does in one line, its flags and its exit statuses on stderr,
//     and exits 0; -version prints the version line (internal/version) on stdout and exits 0;
//   - a bad flag, a bad value, a malformed endpoint or a missing file is one line on stderr and
//     exit status 2 (ExitUsage), before any socket is made;
//   - every other failure is one line on stderr, "name: message", and the exit status tells
//     what kind it is: ExitTLS, ExitUnreachable, ExitInterrupted, else ExitFailure;
//   - whatever else a command writes on stderr (warnings, log lines) starts with "name: " too.
package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/version"
)

// The exit statuses of the commands. Status maps an error to one of them.
const (
	// ExitOK: the command did its work (or printed -h or -version).
	ExitOK = 0
	// ExitFailure: a failure none of the others describes.
	ExitFailure = 1
	// ExitUsage: a bad flag or value, a malformed endpoint, a missing file.
	ExitUsage = 2
	// ExitTLS: the TLS handshake or the verification of a certificate failed, or OpenSSL
	// refused the certificates or settings given (a *tlszmq.Error, *tlszmq.AlertError or
	// *tlszmq.CertificateVerificationError).
	ExitTLS = 3
	// ExitUnreachable: no server or peer answered in time (tlszmq.ErrTimeout).
	ExitUnreachable = 4
	// ExitInterrupted: SIGINT or SIGTERM stopped the command before its work was done, as
	// a shell reports a command killed by SIGINT (128+2).
	ExitInterrupted = 130
)

// exitMeanings are the standard meanings of the exit statuses, as -h lists them.
var exitMeanings = map[int]string{
	ExitOK:          "success",
	ExitFailure:     "any other failure",
	ExitUsage:       "usage: a bad flag or value, a malformed endpoint, a missing file",
	ExitTLS:         "TLS failure: the handshake or the certificate verification failed, or OpenSSL refused the certificates or settings",
	ExitUnreachable: "no server: nothing answered at the endpoint within -timeout",
	ExitInterrupted: "interrupted by SIGINT or SIGTERM before the work was done",
}

// ErrUsage is wrapped by errors about how a command was called (exit status 2).
var ErrUsage = errors.New("usage error")

// ErrVersion is returned by Parse when -version was given; Exit then prints the version line
// on stdout, with exit status 0.
var ErrVersion = errors.New("version requested")

// ErrInterrupted is the cause of a SignalContext cancelled by SIGINT or SIGTERM, and is wrapped
// by the error of a command stopped by one before its work was done (exit status 130).
var ErrInterrupted = errors.New("interrupted")

// Usagef returns an error about how the command was called.
func Usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// ExitStatus documents an exit status of a command in its -h text.
type ExitStatus struct {
	Code    int    // the status, one of the Exit constants
	Meaning string // what it means for the command; empty: the standard meaning
}

// about is the value of the -version flag that NewFlagSet defines: it carries what -h says
// about the command beside its flags.
type about struct {
	summary string
	exits   []ExitStatus
	set     bool
}

func (a *about) String() string { return "false" }

func (a *about) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("parse error")
	}
	a.set = v
	return nil
}

// IsBoolFlag makes -version a flag without a value.
func (a *about) IsBoolFlag() bool { return true }

// NewFlagSet returns the FlagSet of the command name, with a -version flag. summary, one
// line, says what the command does: -h prints it first, as "name: summary". -h ends with
// the exit statuses: 0, 1 and 2, and those in exits (a Meaning left empty takes the standard
// one; a status 0 among them replaces the standard meaning of 0).
func NewFlagSet(name, summary string, exits ...ExitStatus) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Var(&about{summary: summary, exits: exits}, "version", "print the version (with libzmq's and Go's) and exit")
	return fs
}

// Parse parses args into fs. -h writes the description, the flag list and the exit statuses
// to stderr and returns flag.ErrHelp; -version (on a FlagSet from NewFlagSet) returns
// ErrVersion; a bad flag or a stray argument returns a usage error naming it.
func Parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	var a *about
	if f := fs.Lookup("version"); f != nil {
		a, _ = f.Value.(*about)
	}
	if errors.Is(err, flag.ErrHelp) {
		if a != nil {
			fmt.Fprintf(stderr, "%s: %s\n\n", fs.Name(), a.summary)
		}
		fmt.Fprintf(stderr, "usage of %s:\n", fs.Name())
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		if a != nil {
			fmt.Fprint(stderr, "\n"+ExitStatuses(a.exits...))
		}
		return flag.ErrHelp
	}
	if err != nil {
		return Usagef("%s", printable(err.Error()))
	}
	if a != nil && a.set {
		return ErrVersion
	}
	if fs.NArg() > 0 {
		return Usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// ExitStatuses returns the "exit status:" section of a -h text: 0, 1, 2 and those in exits,
// in order, each with its meaning.
func ExitStatuses(exits ...ExitStatus) string {
	meaning := map[int]string{}
	codes := []int{ExitOK, ExitFailure, ExitUsage}
	for _, c := range codes {
		meaning[c] = exitMeanings[c]
	}
	for _, e := range exits {
		if _, ok := meaning[e.Code]; !ok {
			codes = append(codes, e.Code)
		}
		meaning[e.Code] = e.Meaning
		if e.Meaning == "" {
			meaning[e.Code] = exitMeanings[e.Code]
		}
	}
	var b strings.Builder
	b.WriteString("exit status:\n")
	for _, c := range codes {
		fmt.Fprintf(&b, "  %-4d %s\n", c, meaning[c])
	}
	return b.String()
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
			return Usagef("%s: %v", printable(p), pathErr(err))
		}
		f.Close()
	}
	return nil
}

// pathErr returns the cause of an *os.PathError (the path is said already).
func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Status returns the exit status err calls for: ExitOK for nil, -h and -version; ExitUsage,
// ExitInterrupted, ExitTLS (OpenSSL's errors, alerts and certificate verification failures),
// ExitUnreachable (tlszmq.ErrTimeout), in that order; else ExitFailure.
func Status(err error) int {
	var (
		tlsErr    *tlszmq.Error
		alertErr  *tlszmq.AlertError
		verifyErr *tlszmq.CertificateVerificationError
	)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp), errors.Is(err, ErrVersion):
		return ExitOK
	case errors.Is(err, ErrUsage):
		return ExitUsage
	case errors.Is(err, ErrInterrupted):
		return ExitInterrupted
	case errors.As(err, &tlsErr), errors.As(err, &alertErr), errors.As(err, &verifyErr):
		return ExitTLS
	case errors.Is(err, tlszmq.ErrTimeout):
		return ExitUnreachable
	}
	return ExitFailure
}

// Exit turns a command's error into its exit status (Status). It writes -version's line to
// stdout, and any error as one line to stderr: "name: message", with " (name -h lists the
// flags)" after usage errors. name is the command's ("tlsclient", "tlszmq bench"); the
// version line names the program, its first word.
func Exit(name string, err error, stdout, stderr io.Writer) int {
	code := Status(err)
	switch {
	case errors.Is(err, ErrVersion):
		prog, _, _ := strings.Cut(name, " ")
		fmt.Fprintln(stdout, version.Line(prog))
	case code == ExitOK:
	case code == ExitUsage:
		msg := strings.TrimPrefix(err.Error(), ErrUsage.Error()+": ")
		fmt.Fprintf(stderr, "%s: %s (%s -h lists the flags)\n", name, msg, name)
	default:
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
	}
	return code
}

// signalError is the cause of a SignalContext cancelled by a signal.
type signalError struct{ sig os.Signal }

func (s signalError) Error() string {
	switch s.sig {
	case os.Interrupt:
		return "interrupted by SIGINT"
	case syscall.SIGTERM:
		return "interrupted by SIGTERM"
	}
	return "interrupted by " + s.sig.String()
}

// Is makes the cause ErrInterrupted.
func (s signalError) Is(target error) bool { return target == ErrInterrupted }

// SignalContext returns a context that SIGINT or SIGTERM cancels, with a cause that is
// ErrInterrupted and names the signal. After the first signal the default handling is back:
// a second one kills the process. stop releases the signals.
func SignalContext(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	var once sync.Once
	go func() {
		select {
		case sig := <-ch:
			signal.Stop(ch)
			cancel(signalError{sig})
		case <-done:
		}
	}()
	return ctx, func() {
		once.Do(func() {
			signal.Stop(ch)
			close(done)
			cancel(context.Canceled)
		})
	}
}

// Interrupted returns the error of a command whose context ended before its work was done:
// "interrupted by SIGINT before " and what. It wraps ErrInterrupted (exit status 130),
// whatever ended the context.
func Interrupted(ctx context.Context, what string) error {
	cause := context.Cause(ctx)
	if cause == nil || !errors.Is(cause, ErrInterrupted) {
		cause = ErrInterrupted
	}
	return fmt.Errorf("%w before %s", cause, what)
}

// Main runs a command and exits: SIGINT and SIGTERM cancel run's context (SignalContext; a
// server then sends close_notify to its sessions), the messages still queued on closed
// ZeroMQ sockets get up to a second to leave, and the exit status follows Exit.
func Main(name string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	ctx, stop := SignalContext(context.Background())
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	flushZMQ(time.Second)
	os.Exit(Exit(name, err, os.Stdout, os.Stderr))
}

// Prefixed returns a writer that starts every line written to w with "name: ", for the
// command's log and trace lines on stderr. Each Write reaches w in one call; Writes may come
// from several goroutines.
func Prefixed(w io.Writer, name string) io.Writer {
	return &prefixWriter{w: w, prefix: []byte(name + ": "), atStart: true}
}

type prefixWriter struct {
	mu      sync.Mutex
	w       io.Writer
	prefix  []byte
	atStart bool
	buf     []byte
}

// Write writes p with the prefix at the start of each line.
func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(b)
	out := p.buf[:0]
	for len(b) > 0 {
		if p.atStart {
			out = append(out, p.prefix...)
			p.atStart = false
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			out = append(out, b...)
			break
		}
		out = append(out, b[:i+1]...)
		b = b[i+1:]
		p.atStart = true
	}
	p.buf = out[:0]
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return n, nil
}

// Logger returns the command's logger: slog's text lines on stderr, each starting with
// "name: ".
func Logger(stderr io.Writer, name string) *slog.Logger {
	return slog.New(slog.NewTextHandler(Prefixed(stderr, name), nil))
}

// CString returns b up to its first NUL byte, as the C++ peers print a buffer.
func CString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
