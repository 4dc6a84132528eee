package tlszmq

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// hostileFrames are payloads a network can send a TLSZMQ server, each under its own fake
// identity: garbage before any handshake, and abuse of a handshake in progress.
func hostileFrames(t *testing.T, rng *rand.Rand) map[string][][]byte {
	hello := clientHello(t)
	random := make([]byte, 512)
	for i := range random {
		random[i] = byte(rng.IntN(256))
	}
	// A record split over many tiny frames, then cut short and left there.
	var tiny [][]byte
	for i := 0; i < len(hello)-7; i += 3 {
		tiny = append(tiny, hello[i:min(i+3, len(hello)-7)])
	}
	return map[string][][]byte{
		"random bytes":                       {random},
		"an HTTP request":                    {[]byte("GET / HTTP/1.0\r\n\r\n")},
		"a bare alert record":                {{21, 3, 3, 0, 2, 2, 40}},
		"an absurd handshake length":         {{22, 3, 1, 0xff, 0xff, 1, 0xff, 0xff, 0xff}},
		"application data first":             {{23, 3, 3, 0, 5, 1, 2, 3, 4, 5}},
		"a record in tiny frames, truncated": tiny,
		"a ClientHello twice":                {hello, hello},
		"a ClientHello then garbage":         {hello, random},
	}
}

// goodClients are well-behaved clients that exchange messages with a server, each checking
// every reply, until stop.
type goodClients struct {
	t         *testing.T
	quit      chan struct{}
	wg        sync.WaitGroup
	errs      chan error
	exchanged atomic.Int64
}

// startGoodClients starts n clients "good-0"... against an echo-with-identity server (see
// identityEcho) in the background.
func startGoodClients(t *testing.T, cctx *Context, endpoint string, n int) *goodClients {
	g := &goodClients{t: t, quit: make(chan struct{}), errs: make(chan error, n)}
	for i := range n {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			id := fmt.Sprintf("good-%d", i)
			c, err := NewClient(cctx, endpoint, &ClientOptions{Identity: id})
			if err != nil {
				g.errs <- err
				return
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			for j := 0; ; j++ {
				select {
				case <-g.quit:
					return
				default:
				}
				msg := fmt.Sprintf("%s/%d", id, j)
				got, err := c.Request(ctx, []byte(msg))
				if err != nil || len(got) != 2 || string(got[0]) != id || string(got[1]) != msg {
					g.errs <- fmt.Errorf("%s: got %q, %v", msg, got, err)
					return
				}
				g.exchanged.Add(1)
			}
		}()
	}
	return g
}

// stop ends the clients, fails the test with whatever went wrong for them, and returns how
// many exchanges they completed.
func (g *goodClients) stop() int64 {
	close(g.quit)
	g.wg.Wait()
	close(g.errs)
	for err := range g.errs {
		g.t.Error(err)
	}
	return g.exchanged.Load()
}

// identityEcho answers each request with the peer's identity and the request.
func identityEcho(_ context.Context, p *Peer, req [][]byte) ([][]byte, error) {
	return [][]byte{p.Identity, req[0]}, nil
}

// Garbage of every kind, while well-behaved clients keep exchanging messages: they see no
// error and no reply of anyone else, and the server goes on.
func TestHostileInputWhileClientsWork(t *testing.T) {
	srv := startServer(t, serverConfig("server-ec"), "tcp://127.0.0.1:*", identityEcho,
		&ServerOptions{HandshakeTimeout: time.Second})
	cctx := mustContext(t, RoleClient, clientConfig())

	good := startGoodClients(t, cctx, srv.Endpoint(), 4)

	// The attacker: one DEALER that puts any envelope it likes in front of its payloads.
	raw, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetLinger(0)
	raw.Connect(srv.Endpoint())
	rng := rand.New(rand.NewPCG(7, 11))
	for round := range 3 {
		for name, frames := range hostileFrames(t, rng) {
			id := fmt.Sprintf("attack-%d-%s", round, name)
			for _, f := range frames {
				raw.SendMessage(id, "", f)
			}
		}
		// Malformed envelopes: no delimiter, an empty frame, extra frames after the payload.
		raw.SendMessage("no-delimiter", "payload")
		raw.SendMessage("empty", "", "")
		raw.SendMessage("extra", "", "a", "b")
		raw.SendMessage("", "")
		// A client's identity, but from another connection: a different session.
		raw.SendMessage("good-0", "", clientHello(t))
		drain(raw)
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	exchanged := good.stop()
	st := srv.Stats()
	if exchanged < 20 || st.HandshakesFailed == 0 || st.Dropped == 0 {
		t.Fatalf("%d good exchanges during the attack; stats %+v", exchanged, st)
	}
	t.Logf("%d good exchanges during the attack; stats %+v", exchanged, st)
	// The server is still serving.
	c := newClient(t, clientConfig(), srv.Endpoint(), nil)
	if got, err := c.Request(ctxTimeout(t, 10*time.Second), []byte("after")); err != nil || string(got[1]) != "after" {
		t.Fatalf("after the attack: %q %v", got, err)
	}
}
