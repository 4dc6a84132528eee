// Package routekey holds the key that a ZeroMQ envelope (the routing frames before the
// delimiter) is known by, to the server's session table and to the devices' pin tables alike.
package routekey

import "encoding/binary"

// Of is the key of an envelope: every frame of it, length-prefixed, so that two clients with
// the same identity behind different hops never share a key.
func Of(env [][]byte) string {
	var b []byte
	for _, f := range env {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return string(b)
}
