package device

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cmdtest"
	"github.com/tlszmq/tlszmq/internal/notice"
	"github.com/tlszmq/tlszmq/internal/syncbuf"
	"github.com/tlszmq/tlszmq/internal/waitfor"
	"github.com/tlszmq/tlszmq/internal/zmqpoll"
)

// logLines collects a logger's lines.
type logLines struct{ syncbuf.Buffer }

// count returns how many lines hold every one of words.
func (l *logLines) count(words ...string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		all := line != ""
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			n++
		}
	}
	return n
}

func (l *logLines) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// One connection that invents client keys evicts only its own pins; the table holds at most
// MaxClients; a backend found gone takes its pins along; announcements stop at MaxBackends.
func TestPinsBounded(t *testing.T) {
	p := newPins(Limits{MaxClients: 10, MaxClientsPerConn: 3, MaxBackends: 2}.withDefaults())
	for _, b := range []string{"A", "B"} {
		if added, err := p.announce(b); !added || err != nil {
			t.Fatalf("announce %s: %v %v", b, added, err)
		}
	}
	if added, err := p.announce("C"); added || err == nil {
		t.Fatal("a third backend was taken past MaxBackends 2")
	}
	// Two honest clients, one connection each.
	honest := map[string]string{}
	for _, c := range []string{"h1", "h2"} {
		b, err := p.backendFor(c, "conn-"+c)
		if err != nil {
			t.Fatal(err)
		}
		honest[c] = b
	}
	if honest["h1"] == honest["h2"] {
		t.Fatalf("both clients on %s: backends are not taken in turn", honest["h1"])
	}
	// One connection with 100 invented keys.
	for i := range 100 {
		if _, err := p.backendFor(fmt.Sprintf("forged-%d", i), "conn-evil"); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.conns["conn-evil"].Len(); n != 3 {
		t.Fatalf("the connection holds %d pins, want 3", n)
	}
	for c, b := range honest {
		if got := p.pinnedTo(c); got != b {
			t.Fatalf("%s lost its pin (%q, was %q) to another connection's keys", c, got, b)
		}
	}
	// Many connections: the table stays at MaxClients, the oldest going first.
	for i := range 50 {
		p.backendFor(fmt.Sprintf("c%d", i), fmt.Sprintf("conn%d", i))
	}
	if p.len() != 10 || len(p.clients) != 10 || len(p.conns) != 10 {
		t.Fatalf("%d pins, %d clients, %d connections; want 10 each", p.len(), len(p.clients), len(p.conns))
	}
	if p.pinnedTo("h1") != "" || p.pinnedTo("c49") == "" {
		t.Fatal("the oldest pin should have gone, the newest stayed")
	}
	// A backend that goes takes its pins.
	p.forget("A")
	for e := p.lru.Front(); e != nil; e = e.Next() {
		if e.Value.(*pin).backend == "A" {
			t.Fatal("a pin to a forgotten backend is left")
		}
	}
	if p.backends["B"] != p.len() || p.count() != 1 {
		t.Fatalf("B counts %d clients, %d pinned; %d backends", p.backends["B"], p.len(), p.count())
	}
	if added, err := p.announce("C"); !added || err != nil {
		t.Fatal("a backend could not take the place of one that went")
	}
}

func TestCheckEnvelope(t *testing.T) {
	lim := Limits{}.withDefaults()
	long := bytes.Repeat([]byte("x"), 256)
	for _, c := range []struct {
		env [][]byte
		ok  bool
	}{
		{[][]byte{[]byte("id")}, true},
		{bytes.Split(bytes.Repeat([]byte("f,"), 15), []byte(",")), true}, // 16 frames
		{bytes.Split(bytes.Repeat([]byte("f,"), 16), []byte(",")), false},
		{[][]byte{long[:255]}, true},
		{[][]byte{[]byte("id"), long}, false},
	} {
		if err := lim.checkEnvelope(c.env); (err == nil) != c.ok {
			t.Errorf("%d frames, longest %d: %v", len(c.env), len(c.env[len(c.env)-1]), err)
		}
	}
}

// rawWorker connects a DEALER that announces itself to a terminating device's backend.
func rawWorker(t *testing.T, endpoint string) *zmq.Socket {
	s, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	s.SetLinger(0)
	s.SetProbeRouter(1)
	if err := s.Connect(endpoint); err != nil {
		t.Fatal(err)
	}
	return s
}

func terminating(t *testing.T, lim Limits, log *slog.Logger) *Terminate {
	d, err := NewTerminate(serverTLS(t), "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", tlszmq.ServerOptions{Logger: log}, lim)
	if err != nil {
		t.Fatal(err)
	}
	cmdtest.Serve(t, d.Run)
	return d
}

func tlsClient(t *testing.T, endpoint string, o *tlszmq.ClientOptions) *tlszmq.Client {
	c, err := tlszmq.NewClient(clientTLS(t), endpoint, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A reply counts only from the worker that received the request: another backend peer that
// answers with the same token (it learnt it somehow) is not heard. Tokens are 16 random bytes.
func TestTerminateReplyFromAnotherWorkerDropped(t *testing.T) {
	var log logLines
	d := terminating(t, Limits{}, log.logger())
	_, back := d.Endpoints()
	workers := []*zmq.Socket{rawWorker(t, back), rawWorker(t, back)}
	waitfor.Cond(t, func() bool { return d.Workers() == 2 }, "both workers to announce themselves")
	tokens := make(chan []byte, 100)
	cmdtest.Serve(t, func(ctx context.Context) error {
		defer workers[0].Close()
		defer workers[1].Close()
		poller := zmq.NewPoller()
		poller.Add(workers[0], zmq.POLLIN)
		poller.Add(workers[1], zmq.POLLIN)
		for ctx.Err() == nil {
			polled, err := zmqpoll.Poll(poller, 20*time.Millisecond)
			if err != nil {
				return err
			}
			for _, p := range polled {
				msg, err := p.Socket.RecvMessageBytes(0)
				if err != nil || len(msg) < 5 {
					continue
				}
				tokens <- msg[0]
				other := workers[0]
				if p.Socket == workers[0] {
					other = workers[1]
				}
				if _, err := other.SendMessage(msg[0], "", "forged"); err != nil { // first, with the right token
					return err
				}
				time.Sleep(50 * time.Millisecond)
				if _, err := p.Socket.SendMessage(msg[0], "", "genuine", msg[4]); err != nil {
					return err
				}
			}
		}
		return nil
	})
	front, _ := d.Endpoints()
	seen := map[string]bool{}
	for i := range 4 {
		c := tlsClient(t, front, &tlszmq.ClientOptions{Identity: fmt.Sprintf("client-%d", i)})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		msg := fmt.Sprintf("request %d", i)
		got, err := c.Request(ctx, []byte(msg))
		cancel()
		if err != nil || len(got) != 2 || string(got[0]) != "genuine" || string(got[1]) != msg {
			t.Fatalf("%s: got %q, %v; want the genuine worker's reply", msg, got, err)
		}
		tok := <-tokens
		if len(tok) != 16 || seen[string(tok)] {
			t.Fatalf("token %x: want 16 bytes never seen before", tok)
		}
		seen[string(tok)] = true
	}
	if n := log.count("request went to another worker"); n == 0 {
		t.Fatal("the forged replies were not logged")
	}
	if d.Pending() != 0 {
		t.Fatalf("%d requests still pending", d.Pending())
	}
}

// One client that floods the device with requests its worker does not answer fills its own
// share (MaxPendingPerClient), with one log line, and no more; other clients go on being
// served, within the global MaxPending; everything is let go when the worker answers.
func TestTerminatePendingShare(t *testing.T) {
	var log logLines
	d := terminating(t, Limits{MaxPendingPerClient: 8, MaxPending: 20}, log.logger())
	front, back := d.Endpoints()
	w := rawWorker(t, back)
	waitfor.Cond(t, func() bool { return d.Workers() == 1 }, "the worker to announce itself")
	release := make(chan struct{})
	cmdtest.Serve(t, func(ctx context.Context) error { // answers at once, but the hogs' requests only from release
		defer w.Close()
		poller := zmq.NewPoller()
		poller.Add(w, zmq.POLLIN)
		var held [][][]byte
		released := false
		for ctx.Err() == nil {
			if !released {
				select {
				case <-release:
					// A request counts as pending from the moment the device takes it,
					// before its goroutine sends it here: the last ones may come after
					// release, and are answered as they come.
					for _, m := range held {
						if _, err := w.SendMessage(m[0], "", "late"); err != nil {
							return err
						}
					}
					held, released = nil, true
				default:
				}
			}
			msg, err := zmqpoll.Recv(poller, w, 20*time.Millisecond)
			if err != nil {
				return err
			}
			if len(msg) < 5 {
				continue
			}
			answer := "answer"
			if strings.HasPrefix(string(msg[2]), "hog") {
				if !released {
					held = append(held, msg)
					continue
				}
				answer = "late"
			}
			if _, err := w.SendMessage(msg[0], "", answer); err != nil {
				return err
			}
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var hogs []*tlszmq.Client
	for i, name := range []string{"hog-1", "hog-2"} {
		hog := tlsClient(t, front, &tlszmq.ClientOptions{Identity: name, Pattern: tlszmq.DEALER})
		hogs = append(hogs, hog)
		for range 10 { // 1,000 empty messages, 100 to a frame
			for range 100 {
				if err := hog.Queue(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if err := hog.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		want := 8 * (i + 1)
		waitfor.Cond(t, func() bool { return d.Pending() == want }, fmt.Sprintf("%d requests pending", want))
		// Others are still served.
		c := tlsClient(t, front, &tlszmq.ClientOptions{Identity: fmt.Sprintf("other-%d", i)})
		if got, err := c.Request(ctx, []byte("hi")); err != nil || len(got) != 1 || string(got[0]) != "answer" {
			t.Fatalf("another client, with %d requests pending: %q, %v", d.Pending(), got, err)
		}
	}
	time.Sleep(200 * time.Millisecond) // any request past the share would be pending by now
	if d.Pending() != 16 {
		t.Fatalf("%d requests pending, want each hog's 8", d.Pending())
	}
	for _, name := range []string{"hog-1", "hog-2"} {
		if n := log.count("refused", "client="+name); n != 1 {
			t.Errorf("%d log lines refusing %s, want 1", n, name)
		}
	}
	// The global cap: 16 pending; a third hog gets only 4 in.
	hog3 := tlsClient(t, front, &tlszmq.ClientOptions{Identity: "hog-3", Pattern: tlszmq.DEALER})
	for range 50 {
		if err := hog3.Queue(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := hog3.Flush(); err != nil {
		t.Fatal(err)
	}
	waitfor.Cond(t, func() bool { return d.Pending() == 20 }, "MaxPending requests pending")
	close(release)
	waitfor.Cond(t, func() bool { return d.Pending() == 0 }, "every request to be let go")
	for i, hog := range append(hogs, hog3) {
		want := 8
		if i == 2 {
			want = 4
		}
		for range want {
			if got, err := hog.Recv(ctx); err != nil || len(got) != 1 || string(got[0]) != "late" {
				t.Fatalf("hog %d: %q, %v", i+1, got, err)
			}
		}
	}
}

// A request whose worker never answers is answered with nothing after Timeout, and forgotten.
func TestTerminateWorkerTimeout(t *testing.T) {
	var log logLines
	d := terminating(t, Limits{Timeout: 300 * time.Millisecond}, log.logger())
	front, back := d.Endpoints()
	w := rawWorker(t, back) // never answers
	defer w.Close()
	waitfor.Cond(t, func() bool { return d.Workers() == 1 }, "the worker to announce itself")
	c := tlsClient(t, front, &tlszmq.ClientOptions{Timeout: 5 * time.Second})
	if err := c.Handshake(context.Background()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := c.Request(context.Background(), []byte("anyone?"))
	if took := time.Since(start); err == nil || took > 2*time.Second {
		t.Fatalf("after %v: %v; want the empty answer after the 300 ms timeout", took, err)
	}
	if d.Pending() != 0 || log.count("no reply from the worker in time") != 1 {
		t.Fatalf("%d pending; log:\n%s", d.Pending(), log.String())
	}
}

// badHello is a ClientHello record that OpenSSL rejects with a fatal alert.
var badHello = []byte{22, 3, 1, 0, 4, 1, 0, 0, 0}

// Through the pass-through device, pinned or not, a client that takes end-of-session notices
// gets the server's alert and then its notice, frame for frame.
func TestPassThroughForwardsNotices(t *testing.T) {
	for _, pin := range []bool{false, true} {
		t.Run(fmt.Sprintf("pin=%v", pin), func(t *testing.T) {
			d, front, back := runPassThrough(t, pin, 0, quiet())
			runConnected(t, serverTLS(t), back, named("S"))
			if pin {
				waitfor.Cond(t, func() bool { return d.Backends() == 1 }, "the server to announce itself")
			}
			s, err := zmq.NewSocket(zmq.DEALER)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			s.SetLinger(0)
			s.SetIdentity(notice.Identity())
			s.SetRcvtimeo(5 * time.Second)
			if err := s.Connect(front); err != nil {
				t.Fatal(err)
			}
			if !pin {
				time.Sleep(100 * time.Millisecond) // the server's connection to the DEALER backend
			}
			if _, err := s.SendMessage("", badHello); err != nil {
				t.Fatal(err)
			}
			var got [][]byte
			for {
				msg, err := s.RecvMessageBytes(0)
				if err != nil {
					t.Fatalf("after %d messages: %v", len(got), err)
				}
				if len(msg) != 2 || len(msg[0]) != 0 {
					t.Fatalf("message %q: want [\"\", payload]", msg)
				}
				got = append(got, msg[1])
				if reason, ok := notice.Parse(msg[1]); ok {
					if len(got) < 2 || got[0][0] != 21 || reason == "" {
						t.Fatalf("got %q: want the alert, then a notice with a reason", got)
					}
					t.Logf("notice: %s", reason)
					return
				}
			}
		})
	}
}

// With pinning, a backend peer cannot write into the TLS stream of a client pinned to another
// server: its message is dropped, and the client's session goes on.
func TestPassThroughRogueBackend(t *testing.T) {
	var log logLines
	d, front, back := runPassThrough(t, true, 0, log.logger())
	runConnected(t, serverTLS(t), back, named("S"))
	waitfor.Cond(t, func() bool { return d.Backends() == 1 }, "the server to announce itself")
	rogue := rawWorker(t, back) // a DEALER: what it sends reaches the device as [rogue, ...]
	defer rogue.Close()
	waitfor.Cond(t, func() bool { return d.Backends() == 2 }, "the rogue to announce itself")

	c := tlsClient(t, front, &tlszmq.ClientOptions{Identity: "victim", Pattern: tlszmq.DEALER}) // the first client: pinned to S
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := c.Request(ctx, []byte("one")); err != nil || string(got[0]) != "S" {
		t.Fatalf("%q, %v", got, err)
	}
	send(t, rogue, "victim", "", append([]byte{23, 3, 3, 0, 20}, bytes.Repeat([]byte{1}, 20)...))
	waitfor.Cond(t, func() bool { return log.count("not pinned to that server") == 1 }, "the rogue's message to be dropped")
	if got, err := c.Request(ctx, []byte("two")); err != nil || string(got[0]) != "S" || string(got[2]) != "two" {
		t.Fatalf("after the rogue's message: %q, %v", got, err)
	}
}

// Plaintext clients come and go: the originating device holds at most MaxSessions upstream
// sessions, refuses a new client while all are busy, closes idle ones for real (their
// goroutines end, the upstream server sees close_notify), and is back where it started.
func TestOriginateBounded(t *testing.T) {
	gate := make(chan struct{})
	var log, srvLog logLines
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("device log:\n%s\nserver log:\n%s", log.String(), srvLog.String())
		}
	})
	srv, err := tlszmq.NewServer(serverTLS(t), "tcp://127.0.0.1:*", func(_ context.Context, _ *tlszmq.Peer, req [][]byte) ([][]byte, error) {
		if string(req[0]) == "slow" {
			<-gate
		}
		return req, nil
	}, &tlszmq.ServerOptions{Logger: srvLog.logger()})
	if err != nil {
		t.Fatal(err)
	}
	cmdtest.Serve(t, srv.Serve)
	var gateOnce sync.Once
	openGate := func() { gateOnce.Do(func() { close(gate) }) }
	t.Cleanup(openGate) // before the server is stopped, should the test fail with the gate shut
	const maxSessions = 4
	d, err := NewOriginate(clientTLS(t), "tcp://127.0.0.1:*", srv.Endpoint(),
		Limits{MaxSessions: maxSessions, IdleTimeout: 500 * time.Millisecond, Timeout: 10 * time.Second}, log.logger())
	if err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	cmdtest.Serve(t, d.Run)
	plain := func(id string) *zmq.Socket {
		s, err := zmq.NewSocket(zmq.REQ)
		if err != nil {
			t.Fatal(err)
		}
		s.SetLinger(0)
		s.SetIdentity(id)
		s.SetRcvtimeo(10 * time.Second)
		s.Connect(d.Endpoint())
		return s
	}
	check := func(when string) {
		t.Helper()
		if s, g := d.Sessions(), d.Goroutines(); s > maxSessions || g > 2*maxSessions {
			t.Fatalf("%s: %d sessions, %d goroutines; want at most %d and %d", when, s, g, maxSessions, 2*maxSessions)
		}
		if n := srv.Stats().Sessions; n > maxSessions+1 { // one may be closing
			t.Fatalf("%s: the upstream server holds %d sessions", when, n)
		}
	}
	// Clients one after another: each takes the place of the least recently used.
	for i := range 20 {
		s := plain(fmt.Sprintf("seq-%d", i))
		send(t, s, fmt.Sprintf("hello %d", i))
		if got, err := s.RecvMessage(0); err != nil || len(got) != 1 || got[0] != fmt.Sprintf("hello %d", i) {
			t.Fatalf("client %d: %q, %v", i, got, err)
		}
		s.Close()
		check(fmt.Sprintf("after client %d", i))
	}
	// Idle: they go.
	waitfor.Cond(t, func() bool { return d.Sessions() == 0 && d.Goroutines() == 0 }, "the idle sessions to close")
	// All sessions busy: a new client is refused, with a log line.
	var busy []*zmq.Socket
	for i := range maxSessions {
		s := plain(fmt.Sprintf("busy-%d", i))
		defer s.Close()
		send(t, s, "slow")
		busy = append(busy, s)
	}
	waitfor.Cond(t, func() bool { return d.Sessions() == maxSessions && d.Goroutines() == maxSessions }, "the busy sessions")
	late := plain("late")
	defer late.Close()
	late.SetRcvtimeo(300 * time.Millisecond)
	send(t, late, "hello")
	if got, err := late.RecvMessage(0); err == nil {
		t.Fatalf("a client past MaxSessions was served: %q", got)
	}
	if log.count("every upstream session is busy") != 1 {
		t.Fatal("no log line for the refused client")
	}
	check("while busy")
	openGate()
	for _, s := range busy {
		if got, err := s.RecvMessage(0); err != nil || got[0] != "slow" {
			t.Fatalf("a busy client: %q, %v", got, err)
		}
	}
	// Idle: everything goes.
	waitfor.Cond(t, func() bool { return d.Sessions() == 0 && d.Goroutines() == 0 }, "the idle sessions to close")
	waitfor.Cond(t, func() bool { return srv.Stats().Sessions == 0 }, "the upstream server to see every session closed")
	waitfor.Cond(t, func() bool { return runtime.NumGoroutine() <= base+3 }, fmt.Sprintf("the goroutines to go back to %d (+ Run's)", base))
}
