package cli

import (
	"flag"
	"io"
	"log/slog"
)

// LogFlags are the logging flags of the commands that serve (tlsserver, tlsdevice):
// -log-level info|warn|error and -log-format text|json; tlsdevice's -q is -log-level warn
// (tlsserver's -q is the C++ server's: nothing per request on stdout).
type LogFlags struct {
	level  *string
	format *string
	quiet  *bool
}

// AddLogFlags adds -log-level and -log-format to fs, and -q as -log-level warn if withQ.
func AddLogFlags(fs *flag.FlagSet, withQ bool) *LogFlags {
	f := &LogFlags{
		level:  fs.String("log-level", "info", "the least important log lines shown on stderr: info, warn or error"),
		format: fs.String("log-format", "text", "the form of the log lines on stderr: text (key=value, after the command's name) or json (one object a line)"),
		quiet:  new(bool),
	}
	if withQ {
		f.quiet = fs.Bool("q", false, "log only warnings and errors (-log-level warn)")
	}
	return f
}

// Check returns a usage error for an unknown -log-level or -log-format.
func (f *LogFlags) Check() error {
	if *f.format != "text" && *f.format != "json" {
		return Usagef("-log-format %q: want text or json", *f.format)
	}
	if _, err := f.slogLevel(); err != nil {
		return err
	}
	return nil
}

func (f *LogFlags) slogLevel() (slog.Level, error) {
	switch {
	case *f.quiet:
		return slog.LevelWarn, nil
	case *f.level == "info":
		return slog.LevelInfo, nil
	case *f.level == "warn":
		return slog.LevelWarn, nil
	case *f.level == "error":
		return slog.LevelError, nil
	}
	return 0, Usagef("-log-level %q: want info, warn or error", *f.level)
}

// Logger returns the command's logger on stderr, as the flags say: text lines start with the
// command's name (see Logger); JSON lines carry it as "cmd".
func (f *LogFlags) Logger(stderr io.Writer, name string) *slog.Logger {
	level, _ := f.slogLevel()
	opts := &slog.HandlerOptions{Level: level}
	if *f.format == "json" {
		return slog.New(slog.NewJSONHandler(stderr, opts)).With("cmd", name)
	}
	return slog.New(slog.NewTextHandler(Prefixed(stderr, name), opts))
}
