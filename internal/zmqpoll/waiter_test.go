package zmqpoll

import (
	"errors"
	"fmt"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// pair returns a PUSH socket connected to a PULL socket over inproc, closed when the test ends.
func pair(t *testing.T) (push, pull *zmq.Socket) {
	t.Helper()
	endpoint := fmt.Sprintf("inproc://zmqpoll-%s-%d", t.Name(), time.Now().UnixNano())
	var err error
	if pull, err = zmq.NewSocket(zmq.PULL); err != nil {
		t.Fatal(err)
	}
	if push, err = zmq.NewSocket(zmq.PUSH); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { push.Close(); pull.Close() })
	pull.SetLinger(0)
	push.SetLinger(0)
	if err := pull.Bind(endpoint); err != nil {
		t.Fatal(err)
	}
	if err := push.Connect(endpoint); err != nil {
		t.Fatal(err)
	}
	return push, pull
}

func newWaiter(t *testing.T, sock *zmq.Socket) *Waiter {
	t.Helper()
	w, err := NewWaiter(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// A Wait with nothing to do lasts its duration; one with a message waiting returns at once.
func TestWaitTimesOutAndSeesAMessage(t *testing.T) {
	push, pull := pair(t)
	w := newWaiter(t, pull)
	readable := func() bool { r, _ := Readable(pull); return r }
	start := time.Now()
	ok, err := w.Wait(30*time.Millisecond, readable)
	if ok || err != nil || time.Since(start) < 30*time.Millisecond {
		t.Fatalf("an idle wait: %v, %v after %v; want false, nil after 30ms", ok, err, time.Since(start))
	}
	if _, err := push.SendBytes([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if ok, err := w.Wait(5*time.Second, readable); !ok || err != nil {
		t.Fatalf("a message waits: %v, %v", ok, err)
	}
	if _, err := pull.RecvBytes(zmq.DONTWAIT); err != nil {
		t.Fatal(err)
	}
}

// Wake ends a Wait in progress from another goroutine, and a Wake that comes while nobody
// waits makes the next Wait return at once, once.
func TestWake(t *testing.T) {
	_, pull := pair(t)
	w := newWaiter(t, pull)
	readable := func() bool { r, _ := Readable(pull); return r }
	go func() {
		time.Sleep(20 * time.Millisecond)
		w.Wake()
	}()
	start := time.Now()
	if ok, err := w.Wait(10*time.Second, readable); !ok || err != nil || time.Since(start) > 5*time.Second {
		t.Fatalf("woken wait: %v, %v after %v", ok, err, time.Since(start))
	}
	w.Wake()
	w.Wake()
	if ok, _ := w.Wait(10*time.Second, readable); !ok {
		t.Fatal("a wake before the wait was lost")
	}
	start = time.Now()
	if ok, _ := w.Wait(20*time.Millisecond, readable); ok || time.Since(start) < 20*time.Millisecond {
		t.Fatal("two wakes before a wait counted twice")
	}
}

// No message is missed: a sender that sends in bursts at random moments, a receiver that
// drains what is there and waits again, as the server's owner does. A lost signal would
// leave a message waiting for the whole of a long Wait. Then the same with wake-ups racing
// the messages (which would hide a lost signal, so the first run has none).
func TestNoLostSignal(t *testing.T) {
	for _, waking := range []bool{false, true} {
		t.Run(fmt.Sprintf("waking=%v", waking), func(t *testing.T) { drainAll(t, waking) })
	}
}

func drainAll(t *testing.T, waking bool) {
	push, pull := pair(t)
	w := newWaiter(t, pull)
	const n = 20000
	go func() {
		for i := range n {
			push.SendBytes([]byte("x"), 0)
			if i%7 == 0 {
				time.Sleep(time.Duration(i%50) * time.Microsecond)
			}
		}
	}()
	stopWaker := make(chan struct{})
	defer close(stopWaker)
	if waking {
		go func() {
			for {
				select {
				case <-stopWaker:
					return
				default:
					w.Wake()
					time.Sleep(100 * time.Microsecond)
				}
			}
		}()
	}
	got, waits := 0, 0
	for got < n {
		start := time.Now()
		if _, err := w.Wait(10*time.Second, func() bool { r, _ := Readable(pull); return r }); err != nil {
			t.Fatal(err)
		}
		waits++
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("a wait lasted %v with %d of %d messages taken: a signal was lost", d, got, n)
		}
		for {
			if _, err := pull.RecvBytes(zmq.DONTWAIT); err != nil {
				break
			}
			got++
		}
	}
	t.Logf("%d messages in %d waits", got, waits)
}

// A Waiter closed before its socket leaves the socket usable, and a Wake after Close is
// harmless.
func TestCloseBeforeSocket(t *testing.T) {
	push, pull := pair(t)
	w, err := NewWaiter(pull)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Wake()
	push.SendBytes([]byte("x"), 0)
	pull.SetRcvtimeo(5 * time.Second)
	if _, err := pull.RecvBytes(0); err != nil {
		t.Fatal(err)
	}
}

// Once ZeroMQ's context is terminated, Readable says so (ETERM) instead of reading as a
// message to take: a loop that waited on it would otherwise spin.
func TestReadableAfterTerm(t *testing.T) {
	ctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	sock, err := ctx.NewSocket(zmq.PULL)
	if err != nil {
		t.Fatal(err)
	}
	sock.SetLinger(0)
	if err := sock.Bind("inproc://zmqpoll-term"); err != nil {
		t.Fatal(err)
	}
	if r, err := Readable(sock); r || err != nil {
		t.Fatalf("before: %v, %v; want false, nil", r, err)
	}
	termed := make(chan error, 1)
	go func() { termed <- ctx.Term() }() // returns once the socket is closed
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := Readable(sock)
		if errors.Is(err, zmq.ETERM) {
			if r {
				t.Error("readable with ETERM")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ETERM 10s after Term: %v, %v", r, err)
		}
		time.Sleep(time.Millisecond)
	}
	sock.Close()
	if err := <-termed; err != nil {
		t.Fatal(err)
	}
}
