package tlszmq

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ProtocolFramed is the ALPN protocol that two tlszmq peers agree on to carry multi-part and
// empty messages. The C++ TLSZMQ peers offer no ALPN, so with them a message is what it always
// was: the plaintext that one ZeroMQ frame yields, one part.
//
// In the framed protocol every part travels as uvarint(len<<1 | more) followed by its bytes,
// where more is 1 when another part of the same message follows. Message boundaries are
// explicit, so they survive any cutting of the TLS stream into frames.
const ProtocolFramed = "tlszmq/1"

// ErrMessageTooLarge is wrapped by the error for a message part above the configured maximum.
var ErrMessageTooLarge = errors.New("tlszmq: message too large")

// ErrBadFraming is wrapped by the error for framed plaintext that does not decode.
var ErrBadFraming = errors.New("tlszmq: malformed multi-part framing")

// appendFramed appends the framed encoding of the message parts to dst.
func appendFramed(dst []byte, parts [][]byte) []byte {
	if len(parts) == 0 {
		parts = [][]byte{nil}
	}
	for i, p := range parts {
		more := uint64(0)
		if i < len(parts)-1 {
			more = 1
		}
		dst = binary.AppendUvarint(dst, uint64(len(p))<<1|more)
		dst = append(dst, p...)
	}
	return dst
}

// framedLen is the length of appendFramed's output.
func framedLen(parts [][]byte) int {
	n := 0
	for _, p := range parts {
		n += uvarintLen(uint64(len(p))<<1|1) + len(p)
	}
	return max(n, 1)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// deframer turns framed plaintext back into messages. Plaintext may arrive cut anywhere; what
// is not yet a whole part waits for more.
type deframer struct {
	max     int      // the largest part accepted
	pending []byte   // plaintext not yet decoded
	parts   [][]byte // the parts of the message being decoded
}

// feed adds plaintext and returns the messages it completes.
func (d *deframer) feed(p []byte) ([][][]byte, error) {
	d.pending = append(d.pending, p...)
	return d.decode()
}

// take moves the plaintext the engine holds into the deframer, with no copy in between, and
// returns the messages it completes.
func (d *deframer) take(e *Engine) ([][][]byte, error) {
	var err error
	if d.pending, err = e.AppendRead(d.pending); err != nil {
		return nil, err
	}
	return d.decode()
}

// decode cuts the pending plaintext into messages.
func (d *deframer) decode() ([][][]byte, error) {
	var msgs [][][]byte
	for len(d.pending) > 0 {
		h, n := binary.Uvarint(d.pending)
		if n == 0 {
			break // the header is cut: wait for more
		}
		if n < 0 || n != uvarintLen(h) {
			return msgs, fmt.Errorf("%w: part header overflows or is not minimal", ErrBadFraming)
		}
		size, more := h>>1, h&1 == 1
		if size > uint64(d.max) {
			return msgs, fmt.Errorf("%w: a part of %d bytes (the maximum is %d)", ErrMessageTooLarge, size, d.max)
		}
		if uint64(len(d.pending)-n) < size {
			break // the part is cut: wait for more
		}
		part := make([]byte, size)
		copy(part, d.pending[n:])
		d.pending = d.pending[n+int(size):]
		d.parts = append(d.parts, part)
		if !more {
			msgs = append(msgs, d.parts)
			d.parts = nil
		}
	}
	if len(d.pending) == 0 {
		d.pending = nil
	}
	return msgs, nil
}
