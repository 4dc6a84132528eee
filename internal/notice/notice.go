// Package notice is the end-of-session notice: how a TLSZMQ server tells a peer that asked for
// it that its session has ended (a fatal alert, close_notify, a budget), so that a peer such as
// `tlszmq bridge` can close the TCP connection it carries as a TLS server over TCP would.
//
// The peer announces the capability in its ZeroMQ routing id: an originator identity (the last
// envelope frame before the delimiter, the frame a server keys sessions on) that starts with
// IdentityPrefix. Nothing else changes for it, and a peer that does not announce it (the C++
// peers) receives exactly what it received before.
//
// The notice is one message on the peer's route, sent after the session's last TLS bytes: its
// payload frame starts with a zero byte, which no TLS record does (content types are 20 to 24,
// an SSLv2-style hello starts with 0x80), followed by the reason in UTF-8.
package notice

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
)

// IdentityPrefix starts the routing id of a peer that takes end-of-session notices.
const IdentityPrefix = "tlszmq-notice/1:"

// maxReason bounds the reason text a notice carries.
const maxReason = 200

// Identity returns a fresh routing id that announces the capability: the prefix and 16 random
// bytes, so that ids never collide between connections or processes.
func Identity() string {
	var r [16]byte
	rand.Read(r[:]) // never fails (crypto/rand)
	return IdentityPrefix + hex.EncodeToString(r[:])
}

// Capable reports whether the envelope's originator (its last frame) announced the capability.
func Capable(env [][]byte) bool {
	return len(env) > 0 && bytes.HasPrefix(env[len(env)-1], []byte(IdentityPrefix))
}

// Payload returns the payload frame of a notice carrying reason.
func Payload(reason string) []byte {
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	return append([]byte{0}, reason...)
}

// Parse reports whether payload is a notice and returns its reason.
func Parse(payload []byte) (reason string, ok bool) {
	if len(payload) == 0 || payload[0] != 0 {
		return "", false
	}
	return string(payload[1:]), true
}
