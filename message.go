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

// ErrMessageTooLarge is wrapped by the error for a message above the configured maximum
// (MaxMessageSize: all its parts, with their headers).
var ErrMessageTooLarge = errors.New("tlszmq: message too large")

// errBadFraming is wrapped by the error for framed plaintext that does not decode.
var errBadFraming = errors.New("tlszmq: malformed multi-part framing")

// appendFramed appends the framed encoding of the message parts to dst.
func appendFramed(dst []byte, parts [][]byte) []byte {
	if len(parts) == 0 {
		parts = [][]byte{nil}
	}
	for i, p := range parts {
		dst = appendPartHeader(dst, parts, i)
		dst = append(dst, p...)
	}
	return dst
}

// appendPartHeader appends the header of parts[i]: its length, and whether more follow.
func appendPartHeader(dst []byte, parts [][]byte, i int) []byte {
	more := uint64(0)
	if i < len(parts)-1 {
		more = 1
	}
	return binary.AppendUvarint(dst, uint64(len(parts[i]))<<1|more)
}

// reuse empties a gathering buffer for the next message, or lets it go if a large message
// made it large: a busy endpoint keeps the buffer of small messages only.
func reuse(b []byte) []byte {
	if cap(b) > 2*queueLimit {
		return nil
	}
	return b[:0]
}

// writeFramed writes a message to the engine in the framed encoding, gathered in scratch,
// which it returns emptied for reuse (see reuse). A part of queueLimit bytes or more is not copied: its
// header goes out with what is gathered before it, and the part is encrypted where it lies.
func writeFramed(e *Engine, scratch []byte, parts [][]byte) ([]byte, error) {
	scratch = scratch[:0]
	if len(parts) == 0 {
		parts = [][]byte{nil}
	}
	for i, p := range parts {
		scratch = appendPartHeader(scratch, parts, i)
		if len(p) < queueLimit {
			scratch = append(scratch, p...)
			continue
		}
		if _, err := e.Write(scratch); err != nil {
			return reuse(scratch), err
		}
		if _, err := e.Write(p); err != nil {
			return reuse(scratch), err
		}
		scratch = scratch[:0]
	}
	var err error
	if len(scratch) > 0 {
		_, err = e.Write(scratch)
	}
	return reuse(scratch), err
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
// is not yet a whole part waits for more. Its budgets bound what one peer can make it hold or
// deliver: a whole message (every part, and its header, costing at least minPartCost) within
// max bytes, at most maxParts parts a message, at most maxMsgs messages out of one frame. A
// zero field takes the default.
type deframer struct {
	max      int      // MaxMessageSize: the largest message, parts and overhead
	maxParts int      // MaxParts
	maxMsgs  int      // MaxMessagesPerFrame
	pending  []byte   // plaintext not yet decoded
	parts    [][]byte // the parts of the message being decoded
	cost     int      // what those parts cost so far
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
	if d.pending, err = e.AppendRead(d.pending); err != nil && !errors.Is(err, ErrWouldBlock) {
		return nil, err
	}
	return d.decode()
}

// put runs the engine on a frame the caller gives up, decrypting it where it lies when it can
// (Engine.PutDataInPlace); its plaintext waits for take.
func (d *deframer) put(e *Engine, frame []byte) error {
	plain, err := e.PutDataInPlace(frame)
	switch {
	case len(plain) == 0:
	case len(d.pending) == 0:
		d.pending = plain // the frame's memory becomes the deframer's: parts are cut from it
	default:
		d.pending = append(d.pending, plain...)
	}
	return err
}

// limits returns the budgets, defaults filled in.
func (d *deframer) limits() (size, parts, msgs int) {
	size, parts, msgs = d.max, d.maxParts, d.maxMsgs
	if size <= 0 {
		size = DefaultMaxMessageSize
	}
	if parts <= 0 {
		parts = defaultMaxParts
	}
	if msgs <= 0 {
		msgs = defaultMaxMessagesPerFrame
	}
	return size, parts, msgs
}

// decode cuts the pending plaintext into messages. The parts it returns are slices of the
// pending buffer, capped at their length, with no copy: the buffer is then never written
// again, and what is left of it, a cut part, moves to a buffer of its own, as do the parts of
// a message not yet whole. A part is judged by its header, before its bytes have come: a part
// that would take the message past its budget fails at once, so what waits is never more than
// one message's budget.
func (d *deframer) decode() ([][][]byte, error) {
	msgs, err := d.cut()
	if err != nil {
		d.pending, d.parts, d.cost = nil, nil, 0 // the session ends: it holds nothing more
	}
	return msgs, err
}

func (d *deframer) cut() ([][][]byte, error) {
	maxSize, maxParts, maxMsgs := d.limits()
	var msgs [][][]byte
	buf, off := d.pending, 0
	fresh := len(d.parts) // d.parts[fresh:] are cut from buf
	for off < len(buf) {
		h, n := binary.Uvarint(buf[off:])
		if n == 0 {
			break // the header is cut: wait for more
		}
		if n < 0 || n != uvarintLen(h) {
			return msgs, fmt.Errorf("%w: part header overflows or is not minimal", errBadFraming)
		}
		size, more := h>>1, h&1 == 1
		if len(d.parts) >= maxParts {
			return msgs, overBudget("MaxParts", "a message of more than %d parts", maxParts)
		}
		if size > uint64(maxSize) || d.cost+max(n+int(size), minPartCost) > maxSize {
			return msgs, overBudget("MaxMessageSize", "a message of more than %d bytes (parts, part headers, at least %d bytes a part)", maxSize, minPartCost)
		}
		if uint64(len(buf)-off-n) < size {
			break // the part is cut: wait for more
		}
		if !more && len(msgs) >= maxMsgs {
			return msgs, overBudget("MaxMessagesPerFrame", "more than %d messages in one frame", maxMsgs)
		}
		start, end := off+n, off+n+int(size)
		d.parts = append(d.parts, buf[start:end:end])
		d.cost += max(n+int(size), minPartCost)
		off = end
		if !more {
			msgs = append(msgs, d.parts)
			d.parts, d.cost, fresh = nil, 0, 0
		}
	}
	if len(d.parts) > fresh {
		// The parts of a message still coming move to a buffer of their own: as slices of
		// buf they would keep alive the whole frame that buf may be (the engine decrypts
		// where the frame lies), for as long as the message takes to come.
		n := 0
		for _, p := range d.parts[fresh:] {
			n += len(p)
		}
		own := make([]byte, 0, n)
		for i, p := range d.parts[fresh:] {
			own = append(own, p...)
			d.parts[fresh+i] = own[len(own)-len(p) : len(own) : len(own)]
		}
	}
	switch {
	case off == len(buf):
		d.pending = nil
	case off > 0:
		d.pending = append([]byte(nil), buf[off:]...)
	}
	return msgs, nil
}
