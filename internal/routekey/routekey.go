// Package routekey holds the key that a ZeroMQ envelope (the routing frames before the
// delimiter) is known by, to the server's session table and to the devices' pin tables alike.
package routekey

import "encoding/binary"

// Of is the key of an envelope: every frame of it, length-prefixed, so that two clients with
// the same identity behind different hops never share a key.
func Of(env [][]byte) string { return string(Append(nil, env)) }

// Append appends the key of env to dst, so that a caller looking keys up can reuse one buffer.
func Append(dst []byte, env [][]byte) []byte {
	for _, f := range env {
		dst = binary.AppendUvarint(dst, uint64(len(f)))
		dst = append(dst, f...)
	}
	return dst
}
