package version

import (
	"regexp"
	"testing"
)

func TestLine(t *testing.T) {
	got := Line("tlsclient")
	if !regexp.MustCompile(`^tlsclient 0\.9\.0 \(libzmq \d+\.\d+\.\d+, go1\.\d+[^)]*\)$`).MatchString(got) {
		t.Fatalf("Line = %q", got)
	}
}
