package tlszmq

import (
	"bytes"
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
	if _, _, err := splitEnvelope(b("client", "tls")); !errors.Is(err, errNoDelimiter) {
		t.Fatalf("no delimiter: %v", err)
	}
	if _, _, err := splitEnvelope(b("", "tls")); !errors.Is(err, errNoDelimiter) {
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

// FuzzEnvelopeBudget: whatever parts come, what is kept of a message stays within the
// envelope budgets, and a message within them is kept whole.
func FuzzEnvelopeBudget(f *testing.F) {
	f.Add([]byte("hop\x00client\x00\x00tls"), 2, 64)
	f.Add(bytes.Repeat([]byte("id\x00"), 40), 16, 1<<10)
	f.Fuzz(func(t *testing.T, data []byte, frames, size int) {
		frames, size = 1+int(uint(frames)%20), 1+int(uint(size)%4096)
		b := envelopeBudget{frames: frames, bytes: size}
		var kept [][]byte
		all := bytes.Split(data, []byte{0})
		for _, p := range all {
			if b.add(p) {
				kept = append(kept, p)
			}
		}
		held, env := 0, 0
		for _, p := range kept {
			held += len(p)
		}
		for _, p := range kept {
			if len(p) == 0 {
				break
			}
			env++
			if len(p) > maxEnvelopeFrame {
				t.Fatalf("an envelope frame of %d bytes was kept", len(p))
			}
		}
		if len(kept) > frames+2 {
			t.Fatalf("kept %d parts, budget %d", len(kept), frames+2)
		}
		if env > frames || held > size {
			t.Fatalf("kept %d envelope frames and %d bytes, budgets %d and %d", env, held, frames, size)
		}
		if b.err == nil && len(kept) != len(all) {
			t.Fatalf("a message within budget lost parts: %d of %d kept", len(kept), len(all))
		}
		if b.err != nil && !errors.Is(b.err, errBudget) {
			t.Fatalf("the error does not name a budget: %v", b.err)
		}
	})
}
