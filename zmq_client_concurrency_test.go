package tlszmq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq/internal/waitfor"
)

// Many goroutines share one Client, over DEALER (pipelined on one session) and over REQ (in
// turns): every caller gets the reply to its own message, never another's.
func TestClientConcurrentRequests(t *testing.T) {
	const goroutines, perGoroutine = 8, 200
	for _, pat := range []Pattern{DEALER, REQ} {
		t.Run(pat.String(), func(t *testing.T) {
			srv := startServer(t, serverConfig("server-ec"), "tcp://127.0.0.1:*", echo, nil)
			c := newClient(t, clientConfig(), srv.Endpoint(), &ClientOptions{Pattern: pat})
			ctx := ctxTimeout(t, 60*time.Second)
			var wg sync.WaitGroup
			errs := make(chan error, goroutines)
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perGoroutine {
						msg := [][]byte{[]byte(fmt.Sprintf("goroutine %d", g)), []byte(fmt.Sprintf("message %d", i))}
						got, err := c.Request(ctx, msg...)
						if err != nil {
							errs <- fmt.Errorf("goroutine %d, message %d: %w", g, i, err)
							return
						}
						if !equalParts(got, msg) {
							errs <- fmt.Errorf("goroutine %d got %q for %q: a crossed reply", g, got, msg)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if st := srv.Stats(); st.HandshakesDone != 1 {
				t.Errorf("%d handshakes, want the one session shared: %+v", st.HandshakesDone, st)
			}
		})
	}
}

// Requests pipelined by several goroutines while others Queue and Flush one-way messages
// (the handler answers none of them) on the same DEALER client: the Requests get their own
// replies, and every one-way message arrives.
func TestClientConcurrentRequestsAndQueue(t *testing.T) {
	var oneWay atomic.Int64
	srv := startServer(t, serverConfig("server-ec"), "tcp://127.0.0.1:*", func(_ context.Context, _ *Peer, req [][]byte) ([][]byte, error) {
		if bytes.HasPrefix(req[0], []byte("one-way")) {
			oneWay.Add(1)
			return nil, nil
		}
		return req, nil
	}, nil)
	c := newClient(t, clientConfig(), srv.Endpoint(), &ClientOptions{Pattern: DEALER})
	ctx := ctxTimeout(t, 60*time.Second)
	const requesters, senders, each = 4, 2, 200
	var wg sync.WaitGroup
	errs := make(chan error, requesters+senders)
	for g := range requesters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				msg := []byte(fmt.Sprintf("request %d/%d", g, i))
				got, err := c.Request(ctx, msg)
				if err != nil {
					errs <- err
					return
				}
				if len(got) != 1 || !bytes.Equal(got[0], msg) {
					errs <- fmt.Errorf("got %q for %q: a crossed reply", got, msg)
					return
				}
			}
		}()
	}
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := c.Queue(ctx, []byte(fmt.Sprintf("one-way %d/%d", g, i))); err != nil {
					errs <- err
					return
				}
				if i%10 == 9 {
					if err := c.Flush(); err != nil {
						errs <- err
						return
					}
				}
			}
			if err := c.Flush(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitfor.Cond(t, func() bool { return oneWay.Load() == senders*each }, "every one-way message to arrive")
}

// Several goroutines Recv from one DEALER client while one sends: every message goes to one
// of them, none twice, none lost.
func TestClientConcurrentRecv(t *testing.T) {
	srv := startServer(t, serverConfig("server-ec"), "tcp://127.0.0.1:*", echo, nil)
	c := newClient(t, clientConfig(), srv.Endpoint(), &ClientOptions{Pattern: DEALER})
	ctx := ctxTimeout(t, 60*time.Second)
	const receivers, total = 4, 400
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	var left atomic.Int64
	left.Store(total)
	for range receivers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				got, err := c.Recv(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[string(got[0])]++
				mu.Unlock()
			}
		}()
	}
	for i := range total {
		if err := c.Send(ctx, []byte(fmt.Sprintf("message %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if len(seen) != total {
		t.Fatalf("%d distinct messages received, want %d", len(seen), total)
	}
	for m, n := range seen {
		if n != 1 {
			t.Errorf("%q received %d times", m, n)
		}
	}
}

// Close while Requests wait for replies that will not come in time: each ends at once with
// ErrClosed, and the client stays closed.
func TestClientCloseEndsWaits(t *testing.T) {
	for _, pat := range []Pattern{DEALER, REQ} {
		t.Run(pat.String(), func(t *testing.T) {
			srv, _ := startGatedServer(t) // no reply comes before Close
			c := newClient(t, clientConfig(), srv.Endpoint(), &ClientOptions{Pattern: pat})
			ctx := ctxTimeout(t, 20*time.Second)
			if err := c.Handshake(ctx); err != nil {
				t.Fatal(err)
			}
			const n = 4
			errs := make(chan error, n)
			for range n {
				go func() {
					_, err := c.Request(ctx, []byte("slow"))
					errs <- err
				}()
			}
			time.Sleep(200 * time.Millisecond)
			start := time.Now()
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			for range n {
				select {
				case err := <-errs:
					if !errors.Is(err, ErrClosed) {
						t.Errorf("a Request waiting when the client closed: %v, want ErrClosed", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("a Request still waits 5 s after Close")
				}
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("the waits ended %v after Close", d)
			}
			if _, err := c.Request(ctx, []byte("after")); !errors.Is(err, ErrClosed) {
				t.Errorf("Request after Close: %v, want ErrClosed", err)
			}
		})
	}
}
