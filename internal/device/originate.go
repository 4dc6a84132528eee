package device

import (
	"container/list"
	"context"
	"log/slog"
	"sync"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq/internal/zmqpoll"

	"github.com/tlszmq/tlszmq"
)

// Originate takes plaintext clients (REQ or DEALER, [identity, "", part...]) and carries each
// one's messages over its own TLS session to an upstream TLS server; the replies come back to
// the client in order. Each plaintext client has a tlszmq.Client of its own, owned by one
// goroutine; the least recently used one is closed (with close_notify) when there are more
// than the maximum.
type Originate struct {
	front    *zmq.Socket
	frontEP  string
	upstream string
	tctx     *tlszmq.Context
	max      int
	timeout  time.Duration
	log      *slog.Logger

	clients map[string]*list.Element // *upstreamClient, by route key
	lru     *list.List
	replies chan reply
	wg      sync.WaitGroup
}

type upstreamClient struct {
	key      string
	requests chan request
}

type request struct {
	env   [][]byte
	parts [][]byte
}

type reply struct {
	env   [][]byte
	parts [][]byte
}

// NewOriginate binds the plaintext frontend; sessions towards upstream use the client Context.
func NewOriginate(tctx *tlszmq.Context, frontend, upstream string, maxClients int, timeout time.Duration, log *slog.Logger) (*Originate, error) {
	front, frontEP, err := newRouter(frontend, true)
	if err != nil {
		return nil, err
	}
	return &Originate{front: front, frontEP: frontEP, upstream: upstream, tctx: tctx, max: maxClients, timeout: timeout,
		log: logger(log), clients: map[string]*list.Element{}, lru: list.New(), replies: make(chan reply, 1024)}, nil
}

// Endpoint returns the bound frontend endpoint.
func (d *Originate) Endpoint() string { return d.frontEP }

// Run forwards until ctx ends; then every upstream session is closed with close_notify.
func (d *Originate) Run(ctx context.Context) error {
	defer d.front.Close()
	defer func() {
		for e := d.lru.Front(); e != nil; e = e.Next() {
			close(e.Value.(*upstreamClient).requests)
		}
		d.wg.Wait()
	}()
	poller := zmq.NewPoller()
	poller.Add(d.front, zmq.POLLIN)
	for ctx.Err() == nil {
		for drained := false; !drained; {
			select {
			case r := <-d.replies:
				d.sendBack(r)
			default:
				drained = true
			}
		}
		polled, err := zmqpoll.Poll(poller, 5*time.Millisecond)
		if err != nil {
			return err
		}
		if len(polled) == 0 {
			continue
		}
		for range 256 {
			msg, err := d.front.RecvMessageBytes(zmq.DONTWAIT)
			if err != nil {
				break
			}
			env := envelopeOf(msg)
			if env == nil {
				d.log.Warn("tlsdevice: message without an envelope dropped", "frames", len(msg))
				continue
			}
			select {
			case d.clientFor(ctx, env).requests <- request{env: env, parts: msg[len(env)+1:]}:
			default: // one client's backlog must not stall the others
				d.log.Warn("tlsdevice: request dropped: the client has too many in flight", "client", printable(string(env[len(env)-1])))
			}
		}
	}
	return nil
}

// clientFor returns the upstream client of a plaintext client, starting one if needed.
func (d *Originate) clientFor(ctx context.Context, env [][]byte) *upstreamClient {
	key := tlszmq.RouteKey(env)
	if e, ok := d.clients[key]; ok {
		d.lru.MoveToFront(e)
		return e.Value.(*upstreamClient)
	}
	for d.lru.Len() >= d.max {
		old := d.lru.Remove(d.lru.Back()).(*upstreamClient)
		delete(d.clients, old.key)
		close(old.requests)
	}
	u := &upstreamClient{key: key, requests: make(chan request, 64)}
	d.clients[key] = d.lru.PushFront(u)
	d.wg.Add(1)
	go d.serve(ctx, u, append([]byte(nil), env[len(env)-1]...))
	return u
}

// serve carries one plaintext client's requests upstream, one at a time, until its channel
// closes; then it closes the TLS session with close_notify.
func (d *Originate) serve(ctx context.Context, u *upstreamClient, identity []byte) {
	defer d.wg.Done()
	var c *tlszmq.Client
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for req := range u.requests {
		if c == nil {
			var err error
			if c, err = tlszmq.NewClient(d.tctx, d.upstream, &tlszmq.ClientOptions{Pattern: tlszmq.DEALER, Timeout: d.timeout}); err != nil {
				d.log.Warn("tlsdevice: no upstream session", "client", printable(string(identity)), "reason", err)
				continue
			}
		}
		rctx, cancel := context.WithTimeout(context.Background(), d.timeout)
		parts, err := c.Request(rctx, req.parts...)
		cancel()
		if err != nil {
			// The session is broken: the next request starts a new one.
			d.log.Warn("tlsdevice: upstream request failed", "client", printable(string(identity)), "upstream", d.upstream, "reason", err)
			c.Close()
			c = nil
			continue
		}
		select {
		case d.replies <- reply{env: req.env, parts: parts}:
		case <-ctx.Done():
			return
		}
	}
}

// sendBack sends a reply to its plaintext client.
func (d *Originate) sendBack(r reply) {
	frames := make([]any, 0, len(r.env)+1+len(r.parts))
	for _, f := range r.env {
		frames = append(frames, f)
	}
	frames = append(frames, "")
	for _, p := range r.parts {
		frames = append(frames, p)
	}
	if _, err := d.front.SendMessageDontwait(frames...); err != nil {
		d.log.Info("tlsdevice: reply to a client that is gone dropped", "client", printable(string(r.env[len(r.env)-1])), "reason", err)
	}
}
