// Package zmqendpoint reads ZeroMQ endpoints, for the client (the server name a certificate is
// checked against) and the commands alike.
package zmqendpoint

import "strings"

// Host returns the host of a tcp:// endpoint a client connects to ("localhost" for
// "tcp://localhost:5556", "::1" for "tcp://[::1]:5556", the destination of
// "tcp://source;host:port"), or "" for other transports and for a wildcard.
func Host(endpoint string) string {
	rest, ok := strings.CutPrefix(endpoint, "tcp://")
	if !ok {
		return ""
	}
	if i := strings.LastIndexByte(rest, ';'); i >= 0 {
		rest = rest[i+1:]
	}
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		rest = rest[:i]
	}
	rest = strings.TrimSuffix(strings.TrimPrefix(rest, "["), "]")
	if rest == "*" {
		return ""
	}
	return rest
}
