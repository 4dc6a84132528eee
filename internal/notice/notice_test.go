package notice

import (
	"strings"
	"testing"
)

func TestIdentityAnnouncesAndNeverRepeats(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := Identity()
		if !strings.HasPrefix(id, IdentityPrefix) || len(id) != len(IdentityPrefix)+32 || len(id) > 255 {
			t.Fatalf("identity %q", id)
		}
		if seen[id] {
			t.Fatalf("identity %q twice", id)
		}
		seen[id] = true
		if !Capable([][]byte{[]byte("hop"), []byte(id)}) {
			t.Fatalf("%q is not capable as the originator", id)
		}
	}
	// Only the originator (the last envelope frame) counts: a hop cannot ask for the client.
	for _, env := range [][][]byte{nil, {[]byte(Identity()), []byte("client")}, {[]byte("client2")}, {[]byte(IdentityPrefix[:5])}} {
		if Capable(env) {
			t.Fatalf("%q counted as capable", env)
		}
	}
}

func TestPayloadIsNeverTLS(t *testing.T) {
	for _, reason := range []string{"", "close_notify received", strings.Repeat("x", 1000)} {
		p := Payload(reason)
		if p[0] != 0 {
			t.Fatalf("a notice starts with %#x: a TLS record type could be mistaken for it", p[0])
		}
		got, ok := Parse(p)
		if !ok || got != reason[:min(len(reason), maxReason)] {
			t.Fatalf("Parse(Payload(%.20q...)) = %.20q, %v", reason, got, ok)
		}
	}
	for _, p := range [][]byte{nil, {}, {22, 3, 1}, {23, 3, 3, 0, 0}, {0x80}} {
		if _, ok := Parse(p); ok {
			t.Fatalf("%x parsed as a notice", p)
		}
	}
}
