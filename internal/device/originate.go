package device

import (
	"container/list"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq/internal/zapauth"
	"github.com/tlszmq/tlszmq/internal/zmqpoll"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/routekey"
)

// Originate takes plaintext clients (REQ or DEALER, [identity, "", part...]) and carries each
// one's messages over its own TLS session to an upstream TLS server; the replies come back to
// the client in order. Each plaintext client has a tlszmq.Client of its own, owned by one
// goroutine.
//
// What it holds is bounded (Limits): at most MaxSessions upstream sessions, whose goroutines
// and sockets really end when they go (an evicted session's goroutine holds its place until it
// has stopped, so goroutines never outnumber twice MaxSessions); a new client takes the place
// of the least recently used session if that one is idle, and is refused, with a log line,
// while the least recently used is still busy. A session unused for IdleTimeout is closed, with
// close_notify. One client's queue holds MaxPendingPerClient requests; past it its requests
// are dropped, with one log line until its queue has emptied.
//
// Anyone who reaches the plaintext frontend speaks to the upstream server with the device's
// client certificate: bind it where only the intended clients reach (tlsdevice binds
// 127.0.0.1 in this mode by default).
type Originate struct {
	front    *zmq.Socket
	frontEP  string
	policy   *zapauth.Policy // Limits.Allow and Deny on front, or nil
	upstream string
	tctx     *tlszmq.Context
	lim      Limits
	log      *slog.Logger
	limit    *LogLimiter

	clients map[string]*list.Element // *upstreamClient, by route key; Run's goroutine only
	lru     *list.List               // most recently used first
	results chan result
	slots   chan struct{} // one per goroutine that may hold an upstream session
	wg      sync.WaitGroup

	sessions   atomic.Int64 // upstream clients in the table
	goroutines atomic.Int64 // serve goroutines running, evicted ones included
}

type upstreamClient struct {
	key      string
	identity []byte
	requests chan request
	ctx      context.Context
	cancel   context.CancelFunc
	elem     *list.Element
	inflight int // requests handed to the goroutine and not yet come back (Run's goroutine only)
	lastUsed time.Time
	refused  bool // a dropped request was logged since the queue was last empty
}

type request struct {
	env   [][]byte
	parts [][]byte
}

// result is what the goroutine of u made of one request: a reply, or ok false.
type result struct {
	u     *upstreamClient
	env   [][]byte
	parts [][]byte
	ok    bool
}

// NewOriginate binds the plaintext frontend; sessions towards upstream use the client Context.
func NewOriginate(tctx *tlszmq.Context, frontend, upstream string, lim Limits, log *slog.Logger) (*Originate, error) {
	lim = lim.withDefaults()
	log = logger(log)
	front, frontEP, policy, err := newFrontend(frontend, true, lim, log)
	if err != nil {
		return nil, err
	}
	d := &Originate{front: front, frontEP: frontEP, policy: policy, upstream: upstream, tctx: tctx, lim: lim, log: log,
		clients: map[string]*list.Element{}, lru: list.New(), results: make(chan result, 1024),
		slots: make(chan struct{}, lim.MaxSessions)}
	d.limit = NewLogLimiter(d.log)
	return d, nil
}

// Endpoint returns the bound frontend endpoint.
func (d *Originate) Endpoint() string { return d.frontEP }

// Refused returns how many plaintext client connections Limits.Allow and Deny refused.
func (d *Originate) Refused() int64 { return zapauth.Total(d.policy.Refused()) }

// Sessions returns how many upstream clients the device holds.
func (d *Originate) Sessions() int { return int(d.sessions.Load()) }

// Goroutines returns how many of the device's per-client goroutines are running, those of
// evicted or expired clients that have not stopped yet included.
func (d *Originate) Goroutines() int { return int(d.goroutines.Load()) }

// Run forwards until ctx ends; then every upstream session is closed with close_notify and
// every goroutine has ended before it returns.
func (d *Originate) Run(ctx context.Context) error {
	defer zapauth.CloseSocket(d.front, d.policy)
	defer func() {
		for e := d.lru.Front(); e != nil; e = d.lru.Front() {
			d.drop(e.Value.(*upstreamClient))
		}
		d.wg.Wait()
	}()
	poller := zmq.NewPoller()
	poller.Add(d.front, zmq.POLLIN)
	for ctx.Err() == nil {
		for drained := false; !drained; {
			select {
			case r := <-d.results:
				d.finished(r)
			default:
				drained = true
			}
		}
		d.expire(time.Now())
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
			d.take(ctx, msg)
		}
	}
	return nil
}

// take hands one plaintext message to its client's goroutine.
func (d *Originate) take(ctx context.Context, msg [][]byte) {
	env := clientEnvelope(msg, d.lim, d.limit)
	if env == nil {
		return
	}
	u := d.clientFor(ctx, env)
	if u == nil {
		return
	}
	select {
	case u.requests <- request{env: env, parts: msg[len(env)+1:]}:
		u.inflight++
		u.lastUsed = time.Now()
		d.lru.MoveToFront(u.elem)
	default: // one client's backlog must not stall the others
		if !u.refused {
			u.refused = true
			d.log.Warn("tlsdevice: requests dropped until the client's earlier ones are answered", "client", printable(string(u.identity)),
				"reason", fmt.Sprintf("%d requests queued already (Limits.MaxPendingPerClient, -max-pending-per-client)", cap(u.requests)))
		}
	}
}

// clientFor returns the upstream client of a plaintext client, starting one if needed; nil
// (after a log line) if there is no room.
func (d *Originate) clientFor(ctx context.Context, env [][]byte) *upstreamClient {
	key := routekey.Of(env)
	if e, ok := d.clients[key]; ok {
		return e.Value.(*upstreamClient)
	}
	if d.lru.Len() >= d.lim.MaxSessions {
		old := d.lru.Back().Value.(*upstreamClient)
		if old.inflight > 0 {
			d.limit.Warn("tlsdevice: new client refused: every upstream session is busy", "client", printable(string(env[len(env)-1])),
				"sessions", d.lru.Len(), "reason", "Limits.MaxSessions, -max-sessions")
			return nil
		}
		d.log.Info("tlsdevice: upstream session closed to make room", "client", printable(string(old.identity)), "sessions", d.lru.Len())
		d.drop(old)
	}
	uctx, cancel := context.WithCancel(ctx)
	u := &upstreamClient{key: key, identity: append([]byte(nil), env[len(env)-1]...), ctx: uctx, cancel: cancel,
		requests: make(chan request, d.lim.MaxPendingPerClient), lastUsed: time.Now()}
	u.elem = d.lru.PushFront(u)
	d.clients[key] = u.elem
	d.sessions.Store(int64(d.lru.Len()))
	d.wg.Add(1)
	d.goroutines.Add(1)
	go d.serve(u)
	return u
}

// drop takes a client out of the table and stops its goroutine, which closes its session.
func (d *Originate) drop(u *upstreamClient) {
	d.lru.Remove(u.elem)
	delete(d.clients, u.key)
	d.sessions.Store(int64(d.lru.Len()))
	u.cancel()
}

// expire closes the sessions that have been idle for IdleTimeout.
func (d *Originate) expire(now time.Time) {
	for e := d.lru.Back(); e != nil; e = d.lru.Back() {
		u := e.Value.(*upstreamClient)
		if u.inflight > 0 || now.Sub(u.lastUsed) < d.lim.IdleTimeout {
			return
		}
		d.log.Info("tlsdevice: upstream session closed", "client", printable(string(u.identity)), "reason", fmt.Sprintf("idle for %v", d.lim.IdleTimeout))
		d.drop(u)
	}
}

// finished takes a request's outcome: the reply goes to its plaintext client.
func (d *Originate) finished(r result) {
	r.u.inflight--
	if r.u.inflight == 0 {
		r.u.refused = false
	}
	r.u.lastUsed = time.Now()
	if r.ok {
		d.sendBack(r)
	}
}

// serve carries one plaintext client's requests upstream, one at a time, until its context
// ends; then it closes the TLS session with close_notify. It waits for a slot first, so that
// no more than MaxSessions goroutines hold sessions, those still stopping included.
func (d *Originate) serve(u *upstreamClient) {
	defer d.wg.Done()
	defer d.goroutines.Add(-1)
	select {
	case d.slots <- struct{}{}:
	case <-u.ctx.Done():
		return
	}
	defer func() { <-d.slots }()
	var c *tlszmq.Client
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for {
		var req request
		select {
		case req = <-u.requests:
		case <-u.ctx.Done():
			return
		}
		res := result{u: u, env: req.env}
		if c == nil {
			var err error
			if c, err = tlszmq.NewClient(d.tctx, d.upstream, &tlszmq.ClientOptions{Pattern: tlszmq.DEALER, Timeout: d.lim.Timeout}); err != nil {
				d.limit.Warn("tlsdevice: no upstream session", "client", printable(string(u.identity)), "reason", err)
				c = nil
			}
		}
		if c != nil {
			rctx, cancel := context.WithTimeout(u.ctx, d.lim.Timeout)
			parts, err := c.Request(rctx, req.parts...)
			cancel()
			if u.ctx.Err() != nil {
				return
			}
			if err != nil {
				// The session is broken: the next request starts a new one.
				d.limit.Warn("tlsdevice: upstream request failed", "client", printable(string(u.identity)), "upstream", d.upstream, "reason", err)
				c.Close()
				c = nil
			} else {
				res.parts, res.ok = parts, true
			}
		}
		select {
		case d.results <- res:
		case <-u.ctx.Done():
			return
		}
	}
}

// sendBack sends a reply to its plaintext client.
func (d *Originate) sendBack(r result) {
	frames := make([]any, 0, len(r.env)+1+len(r.parts))
	for _, f := range r.env {
		frames = append(frames, f)
	}
	frames = append(frames, "")
	for _, p := range r.parts {
		frames = append(frames, p)
	}
	if _, err := d.front.SendMessageDontwait(frames...); err != nil {
		d.limit.Info("tlsdevice: reply to a client that is gone dropped", "client", printable(string(r.env[len(r.env)-1])), "reason", err)
	}
}
