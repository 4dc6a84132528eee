package tlszmq

import "fmt"

// A codec is a message format over an established session: how the ZeroMQ layer (Client,
// and the Server's workers) turns a message into plaintext for the engine to encrypt, and the
// plaintext the engine decrypts into messages again. There are two: the raw format of the C++
// peers (rawCodec) and the framed protocol (framedCodec, ProtocolFramed). Each side chooses
// one once, when the handshake completes, from the ALPN protocol agreed on (codecFor), and
// keeps it for the session. Before that, and without ALPN, a session is raw.
type codec interface {
	// write encrypts one message into the engine's output. scratch is the caller's buffer
	// for what must be gathered, returned emptied for reuse (see reuse); sent is false when
	// the format sends nothing for the message (the raw format has no empty message).
	write(e *Engine, scratch []byte, parts [][]byte) (rest []byte, sent bool, err error)
	// put runs the engine on one frame of TLS bytes, which the caller gives up (it may be
	// decrypted where it lies). Its plaintext waits, in the engine or the codec, for take.
	put(e *Engine, frame []byte) error
	// take appends to msgs the messages that the plaintext received so far completes.
	take(e *Engine, msgs [][][]byte) ([][][]byte, error)
	// batches reports whether several messages can travel in one frame, each whole, multi-
	// part and empty ones included: the framed protocol's messages keep their boundaries
	// however the TLS stream is cut, while in the raw format a frame's plaintext is one
	// message, of one non-empty part.
	batches() bool
	// answers reports whether the peer is known to answer every frame, the last handshake
	// flight and close_notify included: a tlszmq peer, which agreed on the framed protocol.
	// A C++ peer may leave a frame unanswered.
	answers() bool
}

// codecFor returns the codec of a session that agreed on protocol: the framed protocol's,
// with d as its decoder (its budgets are the caller's), or the raw format for anything else,
// no ALPN included.
func codecFor(protocol string, d *deframer) codec {
	if protocol == ProtocolFramed {
		return (*framedCodec)(d)
	}
	return rawCodec{}
}

// framedProtos are the ALPN protocols of the ZeroMQ layer's engines (EngineOptions.NextProtos):
// a Client offers the framed protocol, and a Server accepts it, before the Context's NextProtos.
var framedProtos = []string{ProtocolFramed}

// alpnWire encodes ALPN protocol names in the wire format of RFC 7301: each name after its
// length byte (checkProtos has made sure that each has 1 to 255 bytes). nil for none.
func alpnWire(protos []string) []byte {
	var b []byte
	for _, p := range protos {
		b = append(b, byte(len(p)))
		b = append(b, p...)
	}
	return b
}

// checkProtos checks a list of ALPN protocol names against ALPN's bounds; field names the list
// in the error.
func checkProtos(field string, protos []string) error {
	wire := 0
	for i, p := range protos {
		if len(p) == 0 || len(p) > maxALPNName {
			return fmt.Errorf("%s[%d] %.40q has %d bytes (an ALPN protocol name has 1 to %d)", field, i, p, len(p), maxALPNName)
		}
		wire += 1 + len(p)
	}
	if wire > maxALPNList {
		return fmt.Errorf("%s takes %d bytes in ALPN's encoding, more than the %d an ALPN list holds", field, wire, maxALPNList)
	}
	return nil
}

// rawCodec is the C++ peers' format: a message is the plaintext of one frame, one part.
type rawCodec struct{}

// write sends a message's parts as one, joined (a Client refuses more than one part before
// it gets here); an empty message sends nothing. A message of one part is encrypted where it
// lies.
func (rawCodec) write(e *Engine, scratch []byte, parts [][]byte) ([]byte, bool, error) {
	one := scratch[:0]
	if len(parts) == 1 {
		one = parts[0]
	} else {
		for _, p := range parts {
			one = append(one, p...)
		}
		scratch = one
	}
	if len(one) == 0 {
		return reuse(scratch), false, nil
	}
	_, err := e.Write(one)
	return reuse(scratch), err == nil, err
}

// put feeds the frame to the engine, which keeps its plaintext as one message for take.
func (rawCodec) put(e *Engine, frame []byte) error { return e.PutData(frame) }

// take returns what the engine has decrypted, if anything, as one message of one part.
func (rawCodec) take(e *Engine, msgs [][][]byte) ([][][]byte, error) {
	if !e.CanRecv() {
		return msgs, nil
	}
	plain, err := e.Read()
	if err != nil {
		return msgs, err
	}
	return append(msgs, [][]byte{plain}), nil
}

func (rawCodec) batches() bool { return false }
func (rawCodec) answers() bool { return false }

// framedCodec is the framed protocol (ProtocolFramed, see message.go): a deframer, which
// holds what has come of messages not yet whole, within its budgets.
type framedCodec deframer

// write sends a message in the framed encoding (writeFramed).
func (f *framedCodec) write(e *Engine, scratch []byte, parts [][]byte) ([]byte, bool, error) {
	scratch, err := writeFramed(e, scratch, parts)
	return scratch, err == nil, err
}

// put runs the engine on the frame, decrypted where it lies when it can be.
func (f *framedCodec) put(e *Engine, frame []byte) error { return (*deframer)(f).put(e, frame) }

// take decodes the messages that the plaintext received so far completes.
func (f *framedCodec) take(e *Engine, msgs [][][]byte) ([][][]byte, error) {
	d := (*deframer)(f)
	if !e.CanRecv() && len(d.pending) == 0 {
		return msgs, nil
	}
	got, err := d.take(e)
	if len(msgs) == 0 {
		return got, err // the decoder's slice as it is: no copy
	}
	return append(msgs, got...), err
}

func (f *framedCodec) batches() bool { return true }
func (f *framedCodec) answers() bool { return true }
