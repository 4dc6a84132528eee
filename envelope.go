package tlszmq

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tlszmq/tlszmq/internal/routekey"
)

// errNoDelimiter is wrapped by the error for a ROUTER message without an empty delimiter frame
// between the identities and the payload.
var errNoDelimiter = errors.New("tlszmq: message has no envelope delimiter")

// splitEnvelope cuts a message that arrived at a ROUTER socket into its envelope (the identity
// frames before the first empty frame) and its payload (the one frame after it). With hops in
// between, the envelope holds every hop's connection id and, last, the client's own identity:
// the one the C++ server keys on.
func splitEnvelope(frames [][]byte) (env [][]byte, payload []byte, err error) {
	for i, f := range frames {
		if len(f) != 0 {
			continue
		}
		if i == 0 {
			return nil, nil, fmt.Errorf("%w: no identity frame before the delimiter", errNoDelimiter)
		}
		switch rest := frames[i+1:]; len(rest) {
		case 0:
			return frames[:i], nil, nil
		case 1:
			return frames[:i], rest[0], nil
		default:
			return nil, nil, fmt.Errorf("tlszmq: %d payload frames after the delimiter, want 1", len(rest))
		}
	}
	return nil, nil, errNoDelimiter
}

// routeKey is the session key of an envelope (see package routekey).
func routeKey(env [][]byte) string { return routekey.Of(env) }

// payloadOf returns the payload of a message a client socket received: the frame after the
// last empty frame. A REQ socket has removed the delimiter already; a DEALER sees it. Taking
// the last frame also copes with the C++ server's half-sent envelope, which glues a stale
// ["", identity, ""] in front of a reply.
func payloadOf(frames [][]byte) []byte {
	if len(frames) == 0 {
		return nil
	}
	return frames[len(frames)-1]
}

// printable renders an identity for logs: as text when it is printable, else as hex.
func printable(id []byte) string {
	s := string(id)
	if s != "" && strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r > 0x7e }) < 0 {
		return s
	}
	return fmt.Sprintf("0x%x", id)
}

// isClientHello reports whether a frame starts with a TLS handshake record carrying a
// ClientHello (a client that starts over).
func isClientHello(p []byte) bool {
	// record: type 22, version 3.x, length; handshake: type 1, 3-byte length, client_version 3.x
	return len(p) >= 11 && p[0] == 22 && p[1] == 3 && p[5] == 1 && p[9] == 3
}

// envelopeBudget judges an incoming message part by part, as a server receives it: at most
// frames routing frames of at most maxEnvelopeFrame bytes before the delimiter, then the
// delimiter and one payload frame (so at most frames+2 parts), and at most bytes in all. Once
// a part is over budget, the parts of the message are no longer kept.
type envelopeBudget struct {
	frames, bytes int // MaxEnvelopeFrames, and what the whole message may hold

	parts, kept, total int // parts seen, frames kept before the delimiter, bytes seen
	delimited          bool
	err                error // the budget the message went past, sticky
}

// add takes the next part and reports whether to keep it.
func (b *envelopeBudget) add(part []byte) bool {
	if b.err != nil {
		return false
	}
	b.total += len(part)
	b.parts++
	switch {
	case b.parts > b.frames+2:
		b.err = overBudget("MaxEnvelopeFrames", "a message of more than %d parts (%d envelope frames, the delimiter, the payload)", b.frames+2, b.frames)
	case b.delimited:
	case len(part) == 0:
		b.delimited = true
	case len(part) > maxEnvelopeFrame:
		b.err = overBudget("MaxEnvelopeFrames", "an envelope frame of %d bytes (at most %d)", len(part), maxEnvelopeFrame)
	case b.kept >= b.frames:
		b.err = overBudget("MaxEnvelopeFrames", "an envelope of more than %d frames", b.frames)
	default:
		b.kept++
	}
	if b.err == nil && b.total > b.bytes {
		b.err = overBudget("MaxMessageSize", "a message of more than %d bytes", b.bytes)
	}
	return b.err == nil
}
