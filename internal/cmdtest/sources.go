package cmdtest

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/waitfor"
)

// The allow and deny tests connect from two loopback addresses: 127.0.0.1, and 127.0.0.2 as
// the source address of the connection (ZeroMQ's "tcp://source:0;host:port"). Linux routes all
// of 127.0.0.0/8 to lo.

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// From returns a tcp:// endpoint reached from the source address.
func From(source, endpoint string) string {
	return fmt.Sprintf("tcp://%s:0;%s", source, strings.TrimPrefix(endpoint, "tcp://"))
}

// RequestFrom sends one request ("hello") with a tlszmq Client whose connection comes from
// the source address, and returns the reply; a refused client's error is a timeout.
func RequestFrom(t testing.TB, cctx *tlszmq.Context, source, endpoint string, timeout time.Duration) ([][]byte, error) {
	t.Helper()
	c, err := tlszmq.NewClient(cctx, From(source, endpoint), &tlszmq.ClientOptions{Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.Request(context.Background(), []byte("hello"))
}

// PlainRequestFrom sends "plain" over a plaintext REQ socket whose connection comes from the
// source address, and reports whether it was echoed within timeout.
func PlainRequestFrom(t testing.TB, source, endpoint string, timeout time.Duration) bool {
	t.Helper()
	req, err := zmq.NewSocket(zmq.REQ)
	if err != nil {
		t.Fatal(err)
	}
	defer req.Close()
	req.SetLinger(0)
	req.SetRcvtimeo(timeout)
	if err := req.Connect(From(source, endpoint)); err != nil {
		t.Fatal(err)
	}
	if _, err := req.Send("plain", 0); err != nil {
		t.Fatal(err)
	}
	got, err := req.RecvMessage(0)
	return err == nil && len(got) == 1 && got[0] == "plain"
}

// WantRefused waits up to 5 s for command's log line (in log, its stderr) refusing 127.0.0.2
// by list ("allow" or "deny"), and checks that no line refuses 127.0.0.1.
func WantRefused(t testing.TB, log fmt.Stringer, command, list string) {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + command + `: time=.* level=WARN msg="tlszmq: connection refused" .*address=127\.0\.0\.2 list=` + list + ` `)
	if !waitfor.Until(5*time.Second, func() bool { return re.MatchString(log.String()) }) {
		t.Fatalf("no log line refuses 127.0.0.2 by -%s; stderr:\n%s", list, log)
	}
	if strings.Contains(log.String(), "address=127.0.0.1 list=") {
		t.Errorf("127.0.0.1 refused; stderr:\n%s", log)
	}
}
