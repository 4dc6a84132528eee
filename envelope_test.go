package tlszmq

import (
	"errors"
	"testing"
)

func TestSplitEnvelope(t *testing.T) {
	b := func(s ...string) [][]byte {
		out := make([][]byte, len(s))
		for i, x := range s {
			out[i] = []byte(x)
		}
		return out
	}
	env, payload, err := splitEnvelope(b("hop", "client", "", "tls"))
	if err != nil || len(env) != 2 || string(env[1]) != "client" || string(payload) != "tls" {
		t.Fatalf("%q %q %v", env, payload, err)
	}
	if _, _, err := splitEnvelope(b("client", "tls")); !errors.Is(err, ErrNoDelimiter) {
		t.Fatalf("no delimiter: %v", err)
	}
	if _, _, err := splitEnvelope(b("", "tls")); !errors.Is(err, ErrNoDelimiter) {
		t.Fatalf("no identity: %v", err)
	}
	if _, _, err := splitEnvelope(b("client", "", "a", "b")); err == nil {
		t.Fatal("extra payload frames accepted")
	}
	if routeKey(b("ab", "c")) == routeKey(b("a", "bc")) {
		t.Fatal("route keys collide across hop chains")
	}
	if got := string(payloadOf(b("", "id", "", "tls"))); got != "tls" {
		t.Fatalf("glued reply: payload %q", got)
	}
}

func FuzzSplitEnvelope(f *testing.F) {
	f.Add([]byte("hop\x00client\x00\x00tls"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Frames separated by NUL bytes.
		var frames [][]byte
		start := 0
		for i, c := range data {
			if c == 0 {
				frames = append(frames, data[start:i])
				start = i + 1
			}
		}
		frames = append(frames, data[start:])
		env, _, err := splitEnvelope(frames)
		if err == nil && len(env) == 0 {
			t.Fatal("an envelope without identities was accepted")
		}
		for _, id := range env {
			if len(id) == 0 {
				t.Fatal("an empty identity frame in the envelope")
			}
		}
	})
}
