package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/tlszmq/tlszmq/internal/cli"
)

func TestBadUse(t *testing.T) {
	cases := map[string][]string{
		"unknown flag":   {"-bogus"},
		"bad pattern":    {"-pattern", "pub"},
		"missing CA":     {"-ca", "nope.crt"},
		"cert alone":     {"-cert", "../../testdata/certs/client.crt"},
		"zero count":     {"-count", "0"},
		"bad max":        {"-max", "1.4"},
		"stray argument": {"extra"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := cli.Exit("tlsclient", run(context.Background(), args, &stdout, &stderr), &stderr)
			if code != 2 || strings.Count(stderr.String(), "\n") != 1 || !strings.HasPrefix(stderr.String(), "tlsclient: ") {
				t.Fatalf("exit %d, stderr %q: want 2 and one line", code, stderr.String())
			}
		})
	}
}
