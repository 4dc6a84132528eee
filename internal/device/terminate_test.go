package device

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cmdtest"
	"github.com/tlszmq/tlszmq/internal/waitfor"
	"github.com/tlszmq/tlszmq/internal/zmqpoll"
)

// Many clients at once, each on its own goroutine with its own Client, through a terminating
// device to two workers: each client gets its own replies, in order, from the one worker it is
// pinned to, and nothing is left pending.
func TestTerminateConcurrentClients(t *testing.T) {
	const clients, requests = 8, 50
	d := terminating(t, Limits{}, quiet())
	front, back := d.Endpoints()
	for _, name := range []string{"W1", "W2"} {
		cmdtest.Serve(t, func(ctx context.Context) error {
			return RunWorker(ctx, back, func(id []byte, _ string, req [][]byte) [][]byte {
				return append([][]byte{[]byte(name), id}, req...)
			})
		})
	}
	waitfor.Cond(t, func() bool { return d.Workers() == 2 }, "both workers to announce themselves")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs := make([]*tlszmq.Client, clients)
	for i := range cs {
		cs[i] = tlsClient(t, front, &tlszmq.ClientOptions{Identity: fmt.Sprintf("client-%d", i)})
	}
	workerOf := make([]string, clients)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("client-%d", i)
			for j := range requests {
				msg := fmt.Sprintf("%s/%d", id, j)
				got, err := c.Request(ctx, []byte(msg), []byte("second part"))
				if err != nil {
					errs <- fmt.Errorf("%s: %w", msg, err)
					return
				}
				if len(got) != 4 || string(got[1]) != id || string(got[2]) != msg || string(got[3]) != "second part" {
					errs <- fmt.Errorf("%s: got %q", msg, got)
					return
				}
				if j == 0 {
					workerOf[i] = string(got[0])
				} else if string(got[0]) != workerOf[i] {
					errs <- fmt.Errorf("%s moved from %s to %s", id, workerOf[i], got[0])
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
	if t.Failed() {
		return
	}
	used := map[string]int{}
	for _, w := range workerOf {
		used[w]++
	}
	if len(used) != 2 {
		t.Fatalf("clients per worker: %v; want both workers used", used)
	}
	if d.Pending() != 0 {
		t.Fatalf("%d requests still pending", d.Pending())
	}
}

// The handler runs on many goroutines at once: every request it takes reaches the worker once,
// each client's in the order they came, and is let go when the worker answers. The peers here
// have no session, so that the test leans on the device's own state alone and runs under
// -race whatever the server: their answers fail at Server.Reply, with a log line.
func TestTerminateHandlerConcurrent(t *testing.T) {
	const clients, requests = 8, 50
	var log logLines
	d := terminating(t, Limits{}, log.logger())
	_, back := d.Endpoints()
	w := rawWorker(t, back)
	waitfor.Cond(t, func() bool { return d.Workers() == 1 }, "the worker to announce itself")
	var mu sync.Mutex
	seen := map[string][]string{} // identity → requests, in the order they reached the worker
	cmdtest.Serve(t, func(ctx context.Context) error {
		defer w.Close()
		poller := zmq.NewPoller()
		poller.Add(w, zmq.POLLIN)
		for ctx.Err() == nil {
			msg, err := zmqpoll.Recv(poller, w, 20*time.Millisecond)
			if err != nil {
				return err
			}
			if len(msg) != 5 || len(msg[1]) != 0 { // [token, "", identity, subject, request]
				continue
			}
			mu.Lock()
			seen[string(msg[2])] = append(seen[string(msg[2])], string(msg[4]))
			mu.Unlock()
			if _, err := w.SendMessage(msg[0], "", "answer"); err != nil {
				return err
			}
		}
		return nil
	})
	var wg sync.WaitGroup
	errs := make(chan error, clients*requests)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("client-%d", i)
			peer := &tlszmq.Peer{Identity: []byte(id), Route: [][]byte{[]byte(fmt.Sprintf("conn-%d", i%3)), []byte(id)}}
			for j := range requests {
				msg := []byte(fmt.Sprintf("%s/%d", id, j))
				reply, err := d.toWorker(context.Background(), peer, [][]byte{msg})
				copy(msg, "overwritten") // the device keeps its own copy
				if reply != nil || !errors.Is(err, tlszmq.ErrDeferred) {
					errs <- fmt.Errorf("%s/%d: %q, %v; want the reply deferred", id, j, reply, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitfor.Cond(t, func() bool { return d.Pending() == 0 }, "every request to be answered")
	mu.Lock()
	defer mu.Unlock()
	for i := range clients {
		id := fmt.Sprintf("client-%d", i)
		if len(seen[id]) != requests {
			t.Fatalf("%s: the worker got %d requests, want %d", id, len(seen[id]), requests)
		}
		for j, got := range seen[id] {
			if want := fmt.Sprintf("%s/%d", id, j); got != want {
				t.Fatalf("%s: request %d reached the worker as %q, want %q", id, j, got, want)
			}
		}
	}
	if log.count("reply dropped") == 0 {
		t.Fatal("the answers to peers without a session were not logged as dropped")
	}
}

// Run stops its goroutine and closes its sockets when ctx ends, leaving no goroutine behind;
// the handler takes nothing more.
func TestTerminateRunStops(t *testing.T) {
	sctx := serverTLS(t)
	before := runtime.NumGoroutine()
	d, err := NewTerminate(sctx, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", tlszmq.ServerOptions{Logger: quiet()}, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	_, back := d.Endpoints()
	w := rawWorker(t, back)
	waitfor.Cond(t, func() bool { return d.Workers() == 1 }, "the worker to announce itself") // the loop runs
	w.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	d.mu.Lock()
	stopped := d.stopping && d.wakeOut == nil
	d.mu.Unlock()
	if !stopped {
		t.Fatal("the loop is not marked stopped, or the wake socket is still open")
	}
	peer := &tlszmq.Peer{Identity: []byte("late"), Route: [][]byte{[]byte("late")}}
	if reply, err := d.toWorker(context.Background(), peer, [][]byte{[]byte("hello")}); reply != nil || err != nil || d.Pending() != 0 {
		t.Fatalf("after Run: %q, %v, %d pending; want the request refused", reply, err, d.Pending())
	}
	waitfor.Cond(t, func() bool { return runtime.NumGoroutine() <= before }, fmt.Sprintf("the goroutines to go back to %d", before))
}
