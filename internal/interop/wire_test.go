package interop

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cmdtest"
)

// A frame seen on the wire: its direction, its envelope and the TLS record types it carries.
type wireFrame struct {
	toServer bool
	envelope int   // frames before the payload (the ROUTER side's identity frames and "")
	records  []int // TLS record content types: 20 ChangeCipherSpec, 21 alert, 22 handshake, 23 data
}

func (f wireFrame) String() string {
	dir := "s→c"
	if f.toServer {
		dir = "c→s"
	}
	return fmt.Sprintf("%s%v", dir, f.records)
}

// recordTypes splits a payload into TLS records and returns their types.
func recordTypes(p []byte) []int {
	var types []int
	for len(p) >= 5 {
		n := int(p[3])<<8 | int(p[4])
		types = append(types, int(p[0]))
		if len(p) < 5+n {
			break
		}
		p = p[5+n:]
	}
	return types
}

// capture runs a ROUTER/DEALER proxy that records every payload frame in both directions.
func capture(t *testing.T, front, back string) func() []wireFrame {
	fs, _ := zmq.NewSocket(zmq.ROUTER)
	bs, _ := zmq.NewSocket(zmq.DEALER)
	fs.SetLinger(0)
	bs.SetLinger(0)
	if err := fs.Bind(front); err != nil {
		t.Fatal(err)
	}
	if err := bs.Bind(back); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []wireFrame
	cmdtest.Serve(t, func(ctx context.Context) error {
		defer fs.Close()
		defer bs.Close()
		poller := zmq.NewPoller()
		poller.Add(fs, zmq.POLLIN)
		poller.Add(bs, zmq.POLLIN)
		for ctx.Err() == nil {
			polled, _ := poller.Poll(20 * time.Millisecond)
			for _, p := range polled {
				msg, err := p.Socket.RecvMessageBytes(zmq.DONTWAIT)
				if err != nil || len(msg) < 2 {
					continue
				}
				payload := msg[len(msg)-1]
				if len(payload) > 0 {
					mu.Lock()
					seen = append(seen, wireFrame{toServer: p.Socket == fs, envelope: len(msg) - 1, records: recordTypes(payload)})
					mu.Unlock()
				}
				frames := make([]any, len(msg))
				for i, f := range msg {
					frames[i] = f
				}
				if p.Socket == fs {
					bs.SendMessage(frames...)
				} else {
					fs.SendMessage(frames...)
				}
			}
		}
		return nil
	})
	return func() []wireFrame {
		mu.Lock()
		defer mu.Unlock()
		return append([]wireFrame(nil), seen...)
	}
}

// exchange runs one request through the capturing proxy, by Go peers or by the C++ peers,
// and returns the frames seen.
func exchange(t *testing.T, version string, cpp bool) []wireFrame {
	dir := t.TempDir()
	front, back := "ipc://"+filepath.Join(dir, "front.ipc"), "ipc://"+filepath.Join(dir, "back.ipc")
	frames := capture(t, front, back)
	if cpp {
		start(t, "--mode", "server", "--connect", "--endpoint", back, "--tls", version, "--cert", cert("server.crt"), "--key", cert("server.key"))
		out, err := run(t, "--mode", "client", "--endpoint", front, "--tls", version)
		if version == "1.2" && err != nil {
			t.Fatalf("C++ peers: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond) // the last frame through the proxy
		return frames()
	}
	v := tlsVersion(version)
	srv, err := tlszmq.NewServer(cmdtest.Context(t, tlszmq.RoleServer, &tlszmq.Config{CertFile: cert("server.crt"), KeyFile: cert("server.key"), MaxVersion: v}),
		back, tlszmq.SinglePart(func(context.Context, *tlszmq.Peer, []byte) ([]byte, error) { return []byte("Got it!\x00"), nil }),
		&tlszmq.ServerOptions{Connect: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	cmdtest.Serve(t, srv.Serve)
	// Raw: no ALPN, like the C++ client.
	c, err := tlszmq.NewClient(cmdtest.Context(t, tlszmq.RoleClient, &tlszmq.Config{InsecureSkipVerify: true, MaxVersion: v}), front, &tlszmq.ClientOptions{Raw: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Request(ctx, []byte("hello world!")); err != nil {
		t.Fatal(err)
	}
	return frames()
}

// shapes renders frames as their directions and record types.
func shapes(frames []wireFrame) []string {
	var out []string
	for _, f := range frames {
		out = append(out, f.String())
	}
	return out
}

// The frames of a Go client ↔ Go server exchange against those of the C++ peers (captured
// through the same proxy) and the tables of PROTOCOL.md: the same envelope ([identity, "",
// tls] at a ROUTER), the same frames per step, the same TLS record types in each. TLS 1.2
// matches the C++ peers frame for frame. TLS 1.3 differs on purpose in one place: the Go
// client sends its Finished alone and takes the tickets before the data, where the C++ client
// sends Finished and data together (the frame that makes the C++ original server lose its
// tickets); the C++ table's 4 frames become 6.
func TestWireShape(t *testing.T) {
	t.Run("TLS1.2", func(t *testing.T) {
		goFrames, cppFrames := exchange(t, "1.2", false), exchange(t, "1.2", true)
		want := []string{
			"c→s[22]",          // ClientHello
			"s→c[22 22 22 22]", // ServerHello, Certificate, ServerKeyExchange, ServerHelloDone
			"c→s[22 20 22]",    // ClientKeyExchange, ChangeCipherSpec, Finished
			"s→c[22 20 22]",    // NewSessionTicket, ChangeCipherSpec, Finished
			"c→s[23]",          // "hello world!"
			"s→c[23]",          // "Got it!\0"
		}
		if got := shapes(cppFrames); !reflect.DeepEqual(got, want) {
			t.Fatalf("the C++ peers' frames %v, the table's %v", got, want)
		}
		if got := shapes(goFrames); !reflect.DeepEqual(got[:min(len(got), 6)], want) {
			t.Fatalf("the Go peers' frames %v, the C++ peers' %v", got, want)
		}
		for i, f := range goFrames[:6] {
			if f.envelope != 2 {
				t.Errorf("Go frame %d: %d envelope frames, want 2 (identity and delimiter)", i+1, f.envelope)
			}
		}
	})
	t.Run("TLS1.3", func(t *testing.T) {
		goFrames, cppFrames := exchange(t, "1.3", false), exchange(t, "1.3", true)
		cpp := shapes(cppFrames)
		wantCpp := []string{"c→s[22]", "s→c[22 20 23 23 23 23]", "c→s[20 23 23]", "s→c[23]"} // tickets lost
		if !reflect.DeepEqual(cpp, wantCpp) {
			t.Fatalf("the C++ peers' frames %v, the table's %v", cpp, wantCpp)
		}
		want := []string{"c→s[22]", "s→c[22 20 23 23 23 23]", "c→s[20 23]", "s→c[23 23]", "c→s[23]", "s→c[23]"}
		if got := shapes(goFrames); !reflect.DeepEqual(got[:min(len(got), 6)], want) {
			t.Fatalf("the Go peers' frames %v, want %v", got, want)
		}
	})
}
