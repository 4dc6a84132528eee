package tlszmq

import (
	"testing"
	"time"
)

// Close returns once a tlszmq server has answered the client's close_notify with its own, so
// that a program may exit right after it: over REQ and DEALER alike. Against a server that
// answers nothing it returns within closeWait.
func TestCloseWaitsForTheServersCloseNotify(t *testing.T) {
	srv := startServer(t, serverConfig("server-ec"), "tcp://127.0.0.1:*", echo, nil)
	for _, p := range []Pattern{REQ, DEALER} {
		t.Run(p.String(), func(t *testing.T) {
			c := newClient(t, clientConfig(), srv.Endpoint(), &ClientOptions{Pattern: p})
			if _, err := c.Request(ctxTimeout(t, 10*time.Second), []byte("x")); err != nil {
				t.Fatal(err)
			}
			e := c.e
			c.Close()
			if !e.PeerClosed() {
				t.Fatal("Close returned before the server's close_notify came")
			}
		})
	}
	raw := newClient(t, clientConfig(), srv.Endpoint(), &ClientOptions{Raw: true})
	if _, err := raw.Request(ctxTimeout(t, 10*time.Second), []byte("x")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	raw.Close() // the C++ peers' format: no answer is waited for
	if took := time.Since(start); took > closeWait {
		t.Fatalf("Close of a raw session took %v", took)
	}
}
