package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"strings"
	"testing"
)

// -log-format json gives one JSON object a line, naming the command; -q keeps warnings and
// errors only; an unknown format is a usage error.
func TestLogFlags(t *testing.T) {
	parse := func(args ...string) *LogFlags {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		lf := AddLogFlags(fs, true)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return lf
	}
	var b bytes.Buffer
	lf := parse("-log-format", "json")
	if err := lf.Check(); err != nil {
		t.Fatal(err)
	}
	lf.Logger(&b, "tlsserver").Info("tlszmq: handshake done", "address", "127.0.0.1")
	var line map[string]any
	if err := json.Unmarshal(b.Bytes(), &line); err != nil || line["cmd"] != "tlsserver" || line["address"] != "127.0.0.1" {
		t.Fatalf("json line %q: %v, %v", b.String(), line, err)
	}
	b.Reset()
	lf = parse("-q")
	log := lf.Logger(&b, "tlsdevice")
	log.Info("not shown")
	log.Warn("shown")
	if out := b.String(); strings.Contains(out, "not shown") || !strings.HasPrefix(out, "tlsdevice: ") || !strings.Contains(out, "shown") {
		t.Fatalf("-q: %q", out)
	}
	b.Reset()
	parse("-log-level", "error").Logger(&b, "tlsserver").Warn("not shown")
	if b.Len() > 0 {
		t.Fatalf("-log-level error: %q", b.String())
	}
	for _, bad := range [][]string{{"-log-format", "yaml"}, {"-log-level", "debug"}} {
		if err := parse(bad...).Check(); !errors.Is(err, ErrUsage) {
			t.Fatalf("%q: %v, want a usage error", bad, err)
		}
	}
}
