package tlszmq

import (
	"testing"
	"time"
)

// A Server over live ZeroMQ sockets whose private key is on a SoftHSM2 token serves requests,
// over TLS 1.2 and TLS 1.3, to Clients that verify its certificate.
func TestPKCS11KeyZMQServer(t *testing.T) {
	h := needSoftHSM(t)
	srv := startServer(t, h.serverConfig(hsmRSAKey), "tcp://127.0.0.1:*", echo, nil)
	for _, ver := range bothVersions {
		t.Run(ver.name, func(t *testing.T) {
			ccfg := clientConfig()
			ccfg.MaxVersion = ver.v
			c := newClient(t, ccfg, srv.Endpoint(), &ClientOptions{Timeout: 5 * time.Second})
			for _, msg := range []string{"hello", "from", "the token"} {
				got, err := c.Request(ctxTimeout(t, 10*time.Second), []byte(msg))
				if err != nil || len(got) != 1 || string(got[0]) != msg {
					t.Fatalf("request %q: %q, %v", msg, got, err)
				}
			}
		})
	}
	if n := srv.Stats().HandshakesDone; n != int64(len(bothVersions)) {
		t.Errorf("HandshakesDone %d, want %d", n, len(bothVersions))
	}
}
