package tlszmq

import (
	"bytes"
	"errors"
	"testing"
)

func TestFramingRoundTrip(t *testing.T) {
	msgs := [][][]byte{
		{[]byte("single")},
		{nil},
		{[]byte("a"), nil, []byte("ccc")},
		{pattern(70000), []byte("tail")},
	}
	var stream []byte
	for _, m := range msgs {
		stream = appendFramed(stream, m)
		if got := framedLen(m); got != len(appendFramed(nil, m)) {
			t.Fatalf("framedLen = %d, encoding is %d bytes", got, len(appendFramed(nil, m)))
		}
	}
	// Cut the stream everywhere: the same messages come out.
	for _, cut := range []int{1, 2, 7, 1000, len(stream)} {
		d := &deframer{max: 1 << 20}
		var got [][][]byte
		for rest := stream; len(rest) > 0; {
			n := min(cut, len(rest))
			out, err := d.feed(rest[:n])
			if err != nil {
				t.Fatal(err)
			}
			got, rest = append(got, out...), rest[n:]
		}
		if len(got) != len(msgs) {
			t.Fatalf("cut %d: %d messages, want %d", cut, len(got), len(msgs))
		}
		for i := range msgs {
			if len(got[i]) != len(msgs[i]) {
				t.Fatalf("cut %d: message %d has %d parts, want %d", cut, i, len(got[i]), len(msgs[i]))
			}
			for j := range msgs[i] {
				if !bytes.Equal(got[i][j], msgs[i][j]) {
					t.Fatalf("cut %d: message %d part %d differs", cut, i, j)
				}
			}
		}
	}
}

func TestFramingLimits(t *testing.T) {
	d := &deframer{max: 10}
	if _, err := d.feed(appendFramed(nil, [][]byte{make([]byte, 11)})); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("oversized part: %v", err)
	}
	d = &deframer{max: 10}
	if _, err := d.feed(bytes.Repeat([]byte{0xff}, 11)); !errors.Is(err, ErrBadFraming) {
		t.Fatalf("overflowing header: %v", err)
	}
}

// FuzzDeframer: arbitrary plaintext never panics, and what decodes re-encodes to a prefix of it.
func FuzzDeframer(f *testing.F) {
	f.Add(appendFramed(nil, [][]byte{[]byte("a"), []byte("bc")}))
	f.Add([]byte{0x80, 0x80, 0x80})
	f.Add([]byte{0x03, 'x'})
	f.Fuzz(func(t *testing.T, data []byte) {
		d := &deframer{max: 1 << 16}
		msgs, err := d.feed(data)
		var re []byte
		for _, m := range msgs {
			re = appendFramed(re, m)
		}
		if err == nil && !bytes.HasPrefix(data, re) {
			t.Fatalf("decoded messages re-encode to %x, not a prefix of %x", re, data)
		}
	})
}
