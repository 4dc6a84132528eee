package cli

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	zmq "github.com/pebbe/zmq4"
)

// endpointForms is what an endpoint error says is wanted.
const endpointForms = "want tcp://host:port, ipc://path or inproc://name"

// maxIPCPath is the longest path of an ipc:// endpoint: sockaddr_un's sun_path holds 108
// bytes on Linux, with the terminating NUL.
const maxIPCPath = 107

// hostName is a DNS name or, for a bind, a network interface's name ("eth0").
var hostName = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$`)

// CheckEndpoint returns a usage error naming the flag when endpoint is not one that the
// commands' sockets (REQ, DEALER, ROUTER) can bind (bind true) or connect to:
//
//	tcp://host:port     host a name, an IPv4 address or an IPv6 one (in brackets, or not);
//	                    port 1 to 65535. A bind may name an interface ("eth0") and use * for
//	                    every interface and for any free port; a connect may name its source
//	                    first, "tcp://source;host:port", as libzmq allows.
//	ipc://path          a path of at most 107 bytes (@name: Linux's abstract namespace); a
//	                    bind may use * for a path libzmq picks
//	inproc://name       within one process
//	tipc://address      where libzmq was built with TIPC
//
// libzmq's other transports are for other socket types (pgm, epgm, norm: PUB and SUB; udp:
// RADIO and DISH) and are refused with a line that says so.
func CheckEndpoint(flagName, endpoint string, bind bool) error {
	bad := func(format string, args ...any) error {
		return Usagef("-%s %s: %s", flagName, strconv.Quote(endpoint), fmt.Sprintf(format, args...))
	}
	transport, addr, ok := strings.Cut(endpoint, "://")
	if !ok || transport == "" {
		return bad("not a ZeroMQ endpoint: %s", endpointForms)
	}
	switch transport {
	case "tcp":
		if !bind {
			if src, dst, ok := strings.Cut(addr, ";"); ok {
				if err := checkTCP(src, true, true); err != nil {
					return bad("source %s", err)
				}
				addr = dst
			}
		}
		if err := checkTCP(addr, bind, false); err != nil {
			return bad("%s", err)
		}
	case "ipc":
		if !zmq.HasIpc() {
			return bad("this libzmq has no ipc transport: %s", endpointForms)
		}
		switch {
		case addr == "":
			return bad("no path: want ipc://path")
		case addr == "*" && !bind:
			return bad("ipc://* names a path to bind, chosen by libzmq: connect to a path")
		case len(addr) > maxIPCPath:
			return bad("a path of %d bytes, the most is %d", len(addr), maxIPCPath)
		case strings.ContainsRune(addr, 0):
			return bad("a path holding a NUL byte")
		}
	case "inproc":
		if addr == "" {
			return bad("no name: want inproc://name")
		}
	case "tipc":
		if !zmq.HasTipc() {
			return bad("this libzmq has no tipc transport: %s", endpointForms)
		}
		if addr == "" {
			return bad("no address: want tipc://address")
		}
	case "pgm", "epgm", "norm":
		return bad("%s:// is for PUB and SUB sockets, and these are REQ, DEALER and ROUTER: %s", transport, endpointForms)
	case "udp":
		return bad("udp:// is for RADIO and DISH sockets, and these are REQ, DEALER and ROUTER: %s", endpointForms)
	default:
		return bad("unknown transport %q: %s", transport, endpointForms)
	}
	return nil
}

// checkTCP checks the host:port of a tcp:// endpoint. A bind (or a connect's source) may use
// * as host and port; a source may leave the port out or make it 0 (any).
func checkTCP(addr string, bind, source bool) error {
	i := strings.LastIndexByte(addr, ':')
	host, port := addr, ""
	if i >= 0 {
		host, port = addr[:i], addr[i+1:]
	}
	if bracketed := strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]"); bracketed {
		a, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !a.Is6() {
			return fmt.Errorf("%s is not an IPv6 address", host)
		}
	} else if i < 0 || strings.ContainsAny(host, "[]") {
		if source {
			host, port = addr, "0"
		} else {
			return fmt.Errorf("no port: want tcp://host:port")
		}
	}
	switch {
	case host == "":
		return fmt.Errorf("no host: want tcp://host:port (tcp://*:port binds every interface)")
	case host == "*":
		if !bind {
			return fmt.Errorf("* binds every interface: to connect, name the host")
		}
	case strings.HasPrefix(host, "["):
	default:
		if _, err := netip.ParseAddr(host); err != nil && !hostName.MatchString(host) {
			return fmt.Errorf("%q is not a host name, an IP address or an interface", host)
		}
	}
	if port == "*" {
		if !bind {
			return fmt.Errorf("port * picks a free port to bind: to connect, give the port")
		}
		return nil
	}
	n, err := strconv.Atoi(port)
	if err != nil || strings.TrimLeft(port, "0123456789") != "" {
		return fmt.Errorf("port %q is not a number: want 1 to 65535%s", port, anyPort(bind))
	}
	if n > 65535 || (n < 1 && !source) {
		return fmt.Errorf("port %d is out of range: want 1 to 65535%s", n, anyPort(bind))
	}
	return nil
}

// anyPort tells a binding command about port *.
func anyPort(bind bool) string {
	if bind {
		return ", or * for any free port"
	}
	return ""
}
