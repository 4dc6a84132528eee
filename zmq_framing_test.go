package tlszmq

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
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
	if _, err := d.feed(bytes.Repeat([]byte{0xff}, 11)); !errors.Is(err, errBadFraming) {
		t.Fatalf("overflowing header: %v", err)
	}
}

// FuzzDeframer: arbitrary plaintext never panics, what decodes re-encodes to a prefix of it,
// and nothing gets past the budgets: no message over its size or parts, no more messages
// from one frame than allowed, never more waiting than one message's budget.
func FuzzDeframer(f *testing.F) {
	f.Add(appendFramed(nil, [][]byte{[]byte("a"), []byte("bc")}), 1, 64, 4)
	f.Add([]byte{0x80, 0x80, 0x80}, 1, 64, 4)
	f.Add([]byte{0x03, 'x'}, 1, 64, 4)
	f.Add(bytes.Repeat([]byte{0}, 100), 3, 1<<10, 8)
	f.Add(bytes.Repeat([]byte{1}, 100), 3, 1<<10, 8)
	f.Fuzz(func(t *testing.T, data []byte, cuts, size, parts int) {
		size, parts = 1+int(uint(size)%(1<<16)), 1+int(uint(parts)%64)
		msgs := 1 + int(uint(cuts)%16)
		d := &deframer{max: size, maxParts: parts, maxMsgs: msgs}
		var all [][][]byte
		var err error
		// Fed in pieces, one "frame" each: the per-frame message budget applies to each.
		for rest := data; len(rest) > 0 && err == nil; {
			n := min(len(rest), 1+int(uint(cuts)%97))
			var got [][][]byte
			got, err = d.feed(rest[:n])
			rest = rest[n:]
			if len(got) > msgs {
				t.Fatalf("%d messages from one frame, budget %d", len(got), msgs)
			}
			all = append(all, got...)
			if len(d.pending) > size+binary.MaxVarintLen64 {
				t.Fatalf("%d bytes waiting, budget %d", len(d.pending), size)
			}
		}
		var re []byte
		for _, m := range all {
			if len(m) > parts {
				t.Fatalf("a message of %d parts, budget %d", len(m), parts)
			}
			cost := 0
			for _, p := range m {
				cost += max(uvarintLen(uint64(len(p))<<1|1)+len(p), minPartCost)
			}
			if cost > size {
				t.Fatalf("a message costing %d, budget %d", cost, size)
			}
			re = appendFramed(re, m)
		}
		if err == nil && !bytes.HasPrefix(data, re) {
			t.Fatalf("decoded messages re-encode to %x, not a prefix of %x", re, data)
		}
		if err != nil && !errors.Is(err, errBudget) && !errors.Is(err, errBadFraming) {
			t.Fatalf("an error naming neither a budget nor the framing: %v", err)
		}
	})
}

// The parts the deframer returns share its buffer without a copy; a part must still be the
// caller's alone: appending to it, or feeding the deframer more, changes no other part.
func TestDeframedPartsAreIndependent(t *testing.T) {
	d := &deframer{max: 1 << 20}
	stream := appendFramed(nil, [][]byte{[]byte("one"), []byte("two")})
	stream = appendFramed(stream, [][]byte{[]byte("three")})
	msgs, err := d.feed(append(stream, appendFramed(nil, [][]byte{[]byte("cut-short")})[:5]...))
	if err != nil || len(msgs) != 2 {
		t.Fatalf("%d messages, %v", len(msgs), err)
	}
	_ = append(msgs[0][0], "XXXXXXXX"...)
	more, err := d.feed([]byte("short"))
	if err != nil || len(more) != 1 {
		t.Fatalf("%d messages, %v", len(more), err)
	}
	for _, c := range []struct{ got, want string }{
		{string(msgs[0][0]), "one"}, {string(msgs[0][1]), "two"}, {string(msgs[1][0]), "three"}, {string(more[0][0]), "cut-short"},
	} {
		if c.got != c.want {
			t.Errorf("part %q, want %q", c.got, c.want)
		}
	}
}

// writeFramed sends large parts where they lie and small ones gathered; either way the peer
// decodes the same messages.
func TestWriteFramed(t *testing.T) {
	c, s := newPair(t, &Config{InsecureSkipVerify: true}, serverConfig("server-ec"))
	if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	msgs := [][][]byte{{[]byte("small")}, {pattern(queueLimit), nil, []byte("x"), pattern(3 * queueLimit)}, {nil}}
	var scratch []byte
	var err error
	for _, m := range msgs {
		if scratch, err = writeFramed(c, scratch, m); err != nil {
			t.Fatal(err)
		}
	}
	if cap(scratch) >= queueLimit {
		t.Errorf("scratch grew to %d bytes: a large part was copied", cap(scratch))
	}
	if err := s.PutData(c.GetData()); err != nil {
		t.Fatal(err)
	}
	d := &deframer{max: 1 << 20}
	got, err := d.take(s)
	if err != nil || len(got) != len(msgs) {
		t.Fatalf("%d messages, %v", len(got), err)
	}
	for i := range msgs {
		if len(got[i]) != len(msgs[i]) {
			t.Fatalf("message %d: %d parts, want %d", i, len(got[i]), len(msgs[i]))
		}
		for j := range msgs[i] {
			if !bytes.Equal(got[i][j], msgs[i][j]) {
				t.Fatalf("message %d part %d differs", i, j)
			}
		}
	}
}

// Frames decrypted where they lie give the same messages as the usual path, however the TLS
// stream is cut into frames (a record cut in two leaves bytes pending: the next frame then goes
// the usual way), and messages larger than a frame's plaintext.
func TestInPlaceDecryption(t *testing.T) {
	var want [][][]byte
	for i, size := range []int{1, 100, 20000, 70000, 300000, 5} {
		want = append(want, [][]byte{pattern(size), []byte(fmt.Sprint(i))})
	}
	for _, cut := range []int{1 << 30, 16 << 10, 1000, 77} {
		c2, s2 := newPair(t, &Config{InsecureSkipVerify: true}, serverConfig("server-ec"))
		if cerr, serr := handshake(c2, s2); cerr != nil || serr != nil {
			t.Fatal(cerr, serr)
		}
		stream := []byte(nil)
		for _, m := range want {
			writeFramed(c2, nil, m)
			stream = append(stream, c2.GetData()...)
		}
		d := &deframer{max: 1 << 20}
		var got [][][]byte
		inPlace := 0
		for rest := stream; len(rest) > 0; {
			n := min(cut, len(rest))
			frame := append([]byte(nil), rest[:n]...) // the frame is the receiver's own
			before := s2.plain.Len()
			if err := d.put(s2, frame); err != nil {
				t.Fatal(err)
			}
			if len(d.pending) > 0 && &d.pending[0] == &frame[0] && before == 0 {
				inPlace++
			}
			msgs, err := d.take(s2)
			if err != nil {
				t.Fatal(err)
			}
			got, rest = append(got, msgs...), rest[n:]
		}
		if len(got) != len(want) {
			t.Fatalf("cut %d: %d messages, want %d", cut, len(got), len(want))
		}
		for i := range want {
			if !equalParts(got[i], want[i]) {
				t.Fatalf("cut %d: message %d differs", cut, i)
			}
		}
		if cut == 1<<30 && inPlace != 1 {
			t.Errorf("the whole stream in one frame was not decrypted in place")
		}
		t.Logf("cut %d: %d of %d frames decrypted in place", min(cut, len(stream)), inPlace, (len(stream)+cut-1)/cut)
	}
}

// The parts of a message not yet whole never keep the frame they were cut from: a peer that
// sends one small part with "more" set in each of many large frames holds its parts' bytes,
// not its frames.
func TestUnfinishedPartsLeaveTheFrame(t *testing.T) {
	frame := make([]byte, 1<<20)
	copy(frame, []byte{2<<1 | 1, 'a', 'b'}) // a 2-byte part, more to come
	d := &deframer{max: 1 << 20}
	d.pending = frame[:3] // as put leaves it: the plaintext where the frame lies
	msgs, err := d.decode()
	if err != nil || len(msgs) != 0 || len(d.parts) != 1 {
		t.Fatalf("%d messages, %d parts, %v", len(msgs), len(d.parts), err)
	}
	frame[1] = 'X'
	if string(d.parts[0]) != "ab" || cap(d.parts[0]) != 2 {
		t.Fatalf("the waiting part shares the frame's memory: %q, cap %d", d.parts[0], cap(d.parts[0]))
	}
}
