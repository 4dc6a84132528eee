package tlszmq

import (
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// buggyServer behaves on the wire as the C++ original server does (../shared/PROTOCOL.md):
// per frame it feeds the bytes in, answers "Got it!\0" to data, and sends what it has, but
//   - its output is replaced, not appended: what a frame produced before the reply was
//     written (TLS 1.3 session tickets) never reaches the wire;
//   - with nothing to send it sends nothing, leaving a half-sent envelope that the next
//     reply is glued to.
func buggyServer(t *testing.T, scfg *Config) string {
	t.Helper()
	sctx := mustContext(t, RoleServer, scfg)
	sock, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		t.Fatal(err)
	}
	sock.SetLinger(0)
	sock.Bind("tcp://127.0.0.1:*")
	endpoint, _ := sock.GetLastEndpoint()
	stop, stopped := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop); <-stopped })
	go func() {
		defer close(stopped)
		defer sock.Close()
		sessions := map[string]*Engine{}
		var halfSent []byte // an envelope echoed with "more" set and nothing after it
		poller := zmq.NewPoller()
		poller.Add(sock, zmq.POLLIN)
		for {
			select {
			case <-stop:
				for _, e := range sessions {
					e.Close()
				}
				return
			default:
			}
			if p, _ := poller.Poll(20 * time.Millisecond); len(p) == 0 {
				continue
			}
			msg, err := sock.RecvMessageBytes(0)
			if err != nil || len(msg) != 3 {
				continue
			}
			id := string(msg[0])
			e := sessions[id]
			if e == nil {
				e, _ = NewServerEngine(sctx)
				sessions[id] = e
			}
			e.PutData(msg[2])
			out := e.GetData()
			if data, _ := e.Read(); data != nil {
				e.Write([]byte("Got it!\x00"))
				out = e.GetData() // the bug: replaces what was pending
			}
			if len(out) == 0 {
				halfSent = msg[0]
				continue
			}
			frames := []any{}
			if halfSent != nil {
				frames = append(frames, halfSent, "")
				halfSent = nil
			}
			frames = append(frames, msg[0], "", out)
			sock.SendMessage(frames...)
		}
	}()
	return endpoint
}

func TestTLS13AgainstCppOriginalServer(t *testing.T) {
	for _, tickets := range []bool{true, false} {
		for _, pat := range []Pattern{REQ, DEALER} {
			name := "tickets/" + pat.String()
			if !tickets {
				name = "no-tickets/" + pat.String()
			}
			t.Run(name, func(t *testing.T) {
				scfg := serverConfig("server")
				scfg.SessionTicketsDisabled = !tickets
				endpoint := buggyServer(t, scfg)
				c := newClient(t, clientConfig(), endpoint, &ClientOptions{Pattern: pat, Raw: true, FinishedWait: 300 * time.Millisecond})
				ctx := ctxTimeout(t, 10*time.Second)
				for i := range 3 {
					got, err := c.Request(ctx, []byte("hello world!"))
					if err != nil {
						t.Fatalf("request %d: %v", i, err)
					}
					if string(got[0]) != "Got it!\x00" {
						t.Fatalf("request %d: got %q", i, got)
					}
				}
				if v := c.ConnectionState().Version; v != VersionTLS13 {
					t.Fatalf("version %s", VersionName(v))
				}
			})
		}
	}
}

// The failure the client's behaviour avoids: Finished and data in one frame lose the tickets,
// and the session breaks (what the C++ client sees as "bad record mac").
func TestFinishedWithDataBreaksOnCppOriginalServer(t *testing.T) {
	endpoint := buggyServer(t, serverConfig("server"))
	e, _ := NewClientEngine(mustContext(t, RoleClient, clientConfig()))
	defer e.Close()
	sock, _ := zmq.NewSocket(zmq.REQ)
	defer sock.Close()
	sock.SetLinger(0)
	sock.SetRcvtimeo(5 * time.Second)
	sock.Connect(endpoint)
	e.Write([]byte("hello world!")) // queued: goes out with Finished, as the C++ client does
	var err error
	for i := 0; i < 4 && err == nil; i++ {
		sock.SendBytes(e.GetData(), 0)
		var reply []byte
		if reply, err = sock.RecvBytes(0); err == nil {
			err = e.PutData(reply)
		}
		if e.CanRecv() {
			t.Fatal("the session worked: the simulated C++ server does not drop the tickets")
		}
	}
	if err == nil || !strings.Contains(err.Error(), "bad record mac") && !strings.Contains(err.Error(), "decryption failed") {
		t.Fatalf("err %v, want a record MAC failure", err)
	}
	t.Log(err)
}
