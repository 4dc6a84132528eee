package cli

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
)

func TestBadFlagIsOneLineAndStatus2(t *testing.T) {
	fs := flag.NewFlagSet("tool", flag.ContinueOnError)
	fs.Int("n", 1, "a number")
	var stderr bytes.Buffer
	err := Parse(fs, []string{"-n", "x"}, &stderr)
	if code := Exit("tool", err, io.Discard, &stderr); code != 2 {
		t.Fatalf("exit status %d, want 2", code)
	}
	out := stderr.String()
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, `invalid value "x" for flag -n`) {
		t.Fatalf("stderr %q: want one line naming the flag", out)
	}
}

func TestHelpListsFlags(t *testing.T) {
	fs := flag.NewFlagSet("tool", flag.ContinueOnError)
	fs.String("cert", "server.crt", "the certificate")
	var stderr bytes.Buffer
	err := Parse(fs, []string{"-h"}, &stderr)
	if !errors.Is(err, flag.ErrHelp) || Exit("tool", err, io.Discard, &stderr) != 0 {
		t.Fatalf("-h: %v", err)
	}
	if !strings.Contains(stderr.String(), "-cert") || !strings.Contains(stderr.String(), "the certificate") {
		t.Fatalf("-h output %q", stderr.String())
	}
}

func TestStrayArgumentAndMissingFile(t *testing.T) {
	fs := flag.NewFlagSet("tool", flag.ContinueOnError)
	if err := Parse(fs, []string{"extra"}, new(bytes.Buffer)); !errors.Is(err, ErrUsage) {
		t.Fatalf("stray argument: %v", err)
	}
	err := NeedFiles("cli.go", "no-such.crt")
	var stderr bytes.Buffer
	if Exit("tool", err, io.Discard, &stderr) != 2 || !strings.Contains(stderr.String(), "no-such.crt: no such file or directory") {
		t.Fatalf("missing file: %q", stderr.String())
	}
	if err := NeedFiles("cli.go", ""); err != nil {
		t.Fatalf("readable file: %v", err)
	}
}

func TestOtherErrorsAreStatus1(t *testing.T) {
	var stderr bytes.Buffer
	if Exit("tool", errors.New("boom"), io.Discard, &stderr) != 1 || stderr.String() != "tool: boom\n" {
		t.Fatalf("%q", stderr.String())
	}
}
