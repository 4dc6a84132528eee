package device

import (
	"container/list"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/zmqpoll"
)

// Terminate is the original article's "client -> hop (ssl) -> server" layout: the device is the
// TLS server for its clients and hands the plaintext to backend workers, each client pinned to
// one worker. Workers connect a ROUTER (or DEALER) socket to the backend and announce
// themselves with an empty message (ZMQ_PROBE_ROUTER does it); see Worker.
//
// Backend messages, after the routing frames:
//
//	device → worker: [token, "", client identity, client certificate subject, part...]
//	worker → device: [token, "", reply part...]
//
// The subject is the verified client certificate's subject ("" without one); the token is
// the device's, 16 random bytes, to be sent back as it came. A reply counts only from the
// worker the request went to: one with a token that worker did not receive, from any other
// backend peer, is dropped with a log line.
//
// Anyone who can connect to the backend becomes a worker and reads the plaintext of the
// clients pinned to it: bind it where only workers reach (tlsdevice binds 127.0.0.1 in this
// mode by default).
//
// What waits for workers is bounded (Limits): each client has MaxPendingPerClient requests
// waiting at most and all together MaxPending; a request past either is refused (it gets no
// reply) with one log line per client until that client's requests have all been answered.
// A request not answered within Timeout is answered with nothing, so that the client's
// session goes on; so is one that was taken but then found no worker to go to (every worker
// it was offered to is gone).
//
// The server may call the handler on many goroutines at once. The handler only admits a
// request, within the limits, and queues it; the device's own goroutine, started by Run, owns
// the backend socket: it sends the queued requests to their workers, takes the workers'
// replies, answers the clients with Server.Reply and answers the requests past their Timeout.
type Terminate struct {
	srv    *tlszmq.Server
	backEP string
	lim    Limits
	log    *slog.Logger
	limit  *LogLimiter

	// The loop's sockets: only the goroutine that Run starts uses them, and it closes them.
	back   *zmq.Socket // the backend ROUTER
	wakeIn *zmq.Socket // the receiving end of the handlers' wakes

	workers atomic.Int64 // pins.count(), for readers on other goroutines
	waiting atomic.Int64 // len(pending), for readers on other goroutines

	// mu guards what follows, which the handlers (on any of the server's goroutines) and the
	// loop share. Nothing that waits runs under it: not Server.Reply in particular, which
	// waits for the session's goroutine, and that one may be in the handler, waiting for mu.
	mu sync.Mutex
	// wakeOut is the sending end of the wakes; nil once Run has stopped. The loop sleeps in
	// a poll of the backend, so a handler that queues a request wakes it through a socket
	// that the poll watches too. A ZeroMQ socket must not be used by two threads at once, but
	// may pass from one to another behind a full memory barrier: so the handlers share this
	// one inproc PAIR under mu, which they hold anyway to queue the request, and at most one
	// wake is on its way at a time (woken), so that a send never finds the pipe full. (Polling
	// with a short timeout and draining a Go channel would do too, at the price of that
	// timeout's latency on each request and of an idle loop waking hundreds of times a
	// second.)
	wakeOut   *zmq.Socket
	woken     bool                       // a wake is on its way that the loop has not taken yet
	stopping  bool                       // the loop is stopping or stopped: no request is taken
	queue     []*pendingRequest          // admitted and not yet sent to a worker, oldest first
	pins      *pins                      // which worker each client goes to
	pending   map[string]*pendingRequest // by token, from admission until answered
	byAge     *list.List                 // *pendingRequest, oldest first (one Timeout for all)
	perClient map[string]*clientPending  // by the client's Peer.Key
}

// pendingRequest is a request from its admission by the handler until it is answered.
type pendingRequest struct {
	token    string
	peer     *tlszmq.Peer
	client   string // peer.String(), for logs
	key      string // peer.Key()
	conn     string // the envelope's first frame: the connection the client came through
	identity []byte
	subject  string
	parts    [][]byte // the request, until the loop sends it
	worker   string   // the worker it went to; "" until sent
	deadline time.Time
	age      *list.Element
	gone     bool // its worker is gone: answer it with nothing at once
}

// clientPending is one client's share of the requests waiting for a worker.
type clientPending struct {
	n       int
	refused bool // a refusal has been logged since the client's queue was last empty
}

// answer is a client's answer, for the loop to hand to Server.Reply once mu is released.
type answer struct {
	peer   *tlszmq.Peer
	client string
	reply  [][]byte // nil: answered with nothing
	logErr bool     // a worker's reply: one that cannot be delivered is logged
}

// tokenSize is the length of a request's token: 128 random bits.
const tokenSize = 16

// tickEvery is the longest the loop sleeps: how often, at worst, it looks for requests past
// their Timeout (it wakes at the oldest request's deadline if that comes sooner).
const tickEvery = 100 * time.Millisecond

// backendBatch is how many backend messages the loop takes before it answers what they
// carry and looks at its queue again.
const backendBatch = 256

// NewTerminate binds the TLS frontend (a tlszmq.Server on ctx) and the plaintext backend.
// lim bounds the pin table and the requests waiting for workers; opts.MaxSessions and
// opts.MaxEnvelopeFrames, if zero, are lim.MaxClients and lim.MaxEnvelope. lim.Allow and
// lim.Deny are added to opts.Allow and opts.Deny: the server enforces them, and counts their
// refusals in its Counters.
func NewTerminate(ctx *tlszmq.Context, frontend, backend string, opts tlszmq.ServerOptions, lim Limits) (*Terminate, error) {
	lim = lim.withDefaults()
	opts.Allow = append(slices.Clip(opts.Allow), lim.Allow...)
	opts.Deny = append(slices.Clip(opts.Deny), lim.Deny...)
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = lim.MaxClients
	}
	if opts.MaxEnvelopeFrames <= 0 {
		opts.MaxEnvelopeFrames = lim.MaxEnvelope // the server drops longer envelopes as they arrive
	}
	back, backEP, err := newRouter(backend, true, nil)
	if err != nil {
		return nil, err
	}
	d := &Terminate{back: back, backEP: backEP, lim: lim, pins: newPins(lim), pending: map[string]*pendingRequest{},
		byAge: list.New(), perClient: map[string]*clientPending{}, log: logger(opts.Logger)}
	d.limit = NewLogLimiter(d.log)
	if d.wakeIn, d.wakeOut, err = wakePair(fmt.Sprintf("inproc://tlsdevice-wake-%p", d)); err != nil {
		back.Close()
		return nil, err
	}
	d.srv, err = tlszmq.NewServer(ctx, frontend, d.toWorker, &opts)
	if err != nil {
		back.Close()
		d.wakeIn.Close()
		d.wakeOut.Close()
		return nil, err
	}
	return d, nil
}

// wakePair makes the two ends of an inproc PAIR on endpoint: in bound, out connected.
func wakePair(endpoint string) (in, out *zmq.Socket, err error) {
	if in, err = zmq.NewSocket(zmq.PAIR); err != nil {
		return nil, nil, err
	}
	if err = in.SetLinger(0); err == nil {
		err = in.Bind(endpoint)
	}
	if err == nil {
		out, err = zmq.NewSocket(zmq.PAIR)
	}
	if err != nil {
		in.Close()
		return nil, nil, err
	}
	if err = out.SetLinger(0); err == nil {
		err = out.Connect(endpoint)
	}
	if err != nil {
		in.Close()
		out.Close()
		return nil, nil, err
	}
	return in, out, nil
}

// Endpoints returns the bound frontend and backend endpoints.
func (d *Terminate) Endpoints() (frontend, backend string) { return d.srv.Endpoint(), d.backEP }

// Server returns the TLS server of the frontend, for its Stats.
func (d *Terminate) Server() *tlszmq.Server { return d.srv }

// Workers returns how many workers have announced themselves.
func (d *Terminate) Workers() int { return int(d.workers.Load()) }

// Pending returns how many requests wait for a worker's reply.
func (d *Terminate) Pending() int { return int(d.waiting.Load()) }

// Run serves until ctx ends: close_notify to every client, then the device's goroutine stops
// and the sockets are closed. If that goroutine fails (its poll of the backend does), the
// server is stopped too and Run returns the error.
func (d *Terminate) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	loopErr := make(chan error, 1)
	go func() {
		err := d.loop()
		if err != nil {
			d.stopLoop() // no request is taken that nobody would send
			cancel()     // the device cannot forward without its loop
		}
		loopErr <- err
	}()
	err := d.srv.Serve(ctx)
	d.stopLoop()
	if lerr := <-loopErr; err == nil {
		err = lerr
	}
	d.mu.Lock()
	d.wakeOut.Close()
	d.wakeOut = nil
	d.mu.Unlock()
	return err
}

// stopLoop tells the loop to stop, and the handlers to take no more requests.
func (d *Terminate) stopLoop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopping = true
	d.wakeLocked()
}

// wakeLocked wakes the loop, unless a wake is on its way already. d.mu is held.
func (d *Terminate) wakeLocked() {
	if d.woken || d.wakeOut == nil {
		return
	}
	// Never full: at most one wake is on its way. A send that fails anyway leaves the queue
	// to the loop's next tick.
	if _, err := d.wakeOut.SendBytes(nil, zmq.DONTWAIT); err == nil {
		d.woken = true
	}
}

// loop is the device's goroutine: it owns the backend and the receiving end of the wakes,
// and closes them when it returns, when stopLoop tells it to or when a poll fails.
func (d *Terminate) loop() error {
	defer d.back.Close()
	defer d.wakeIn.Close()
	poller := zmq.NewPoller()
	poller.Add(d.back, zmq.POLLIN)
	poller.Add(d.wakeIn, zmq.POLLIN)
	var answers []answer
	for {
		polled, err := zmqpoll.Poll(poller, d.wait(time.Now()))
		if err != nil {
			return fmt.Errorf("tlsdevice: polling the backend: %w", err)
		}
		var msgs [][][]byte
		for _, p := range polled {
			switch p.Socket {
			case d.wakeIn:
				// Taken before the queue is (sendQueued): a wake that comes after this
				// finds woken false and stays in the pipe for the next poll.
				for {
					if _, err := d.wakeIn.RecvBytes(zmq.DONTWAIT); err != nil {
						break
					}
				}
			case d.back:
				msgs = d.receive()
			}
		}
		d.mu.Lock()
		if d.stopping {
			d.mu.Unlock()
			return nil
		}
		answers = d.fromWorkers(msgs, answers)
		answers = d.sendQueued(answers)
		answers = d.expire(time.Now(), answers)
		d.mu.Unlock()
		for i, a := range answers {
			if err := d.srv.Reply(a.peer, a.reply); err != nil && a.logErr {
				d.limit.Info("tlsdevice: reply dropped", "client", a.client, "reason", err)
			}
			answers[i] = answer{}
		}
		answers = answers[:0]
	}
}

// wait returns how long the loop may sleep: until the oldest request's deadline, at most
// tickEvery, and not at all if requests are queued.
func (d *Terminate) wait(now time.Time) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := tickEvery
	if len(d.queue) > 0 {
		return 0
	}
	if e := d.byAge.Front(); e != nil {
		w = min(w, e.Value.(*pendingRequest).deadline.Sub(now))
	}
	if w <= 0 {
		return 0
	}
	return (w + time.Millisecond - 1).Truncate(time.Millisecond) // the poll counts whole milliseconds
}

// receive takes up to backendBatch messages from the backend, without waiting.
func (d *Terminate) receive() [][][]byte {
	var msgs [][][]byte
	for range backendBatch {
		msg, err := d.back.RecvMessageBytes(zmq.DONTWAIT)
		if err != nil {
			break
		}
		msgs = append(msgs, msg)
	}
	return msgs
}

// toWorker is the frontend's handler, on any of the server's goroutines: it admits the request
// and queues it for the loop, which sends it to the client's worker, and defers the reply. A
// refused request gets no reply (nil, nil: the server logs nothing more for it).
func (d *Terminate) toWorker(_ context.Context, peer *tlszmq.Peer, req [][]byte) ([][]byte, error) {
	if err := d.lim.checkEnvelope(peer.Route); err != nil {
		d.limit.Warn("tlsdevice: request refused: its envelope is not honoured", "client", peer.String(), "reason", err)
		return nil, nil
	}
	key := peer.Key()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopping {
		return nil, nil
	}
	cp := d.perClient[key]
	if cp != nil && cp.n >= d.lim.MaxPendingPerClient {
		if !cp.refused {
			cp.refused = true
			d.log.Warn("tlsdevice: requests refused until the client's earlier ones are answered", "client", peer.String(),
				"reason", fmt.Sprintf("%d requests wait for a worker already (Limits.MaxPendingPerClient, -max-pending-per-client)", cp.n))
		}
		return nil, nil
	}
	if len(d.pending) >= d.lim.MaxPending {
		d.limit.Warn("tlsdevice: request refused", "client", peer.String(),
			"reason", fmt.Sprintf("%d requests wait for a worker already (Limits.MaxPending, -max-pending)", len(d.pending)))
		return nil, nil
	}
	if d.pins.count() == 0 {
		d.limit.Warn("tlsdevice: request refused", "client", peer.String(), "reason", errNoBackend)
		return nil, nil
	}
	// Taken. What follows is done only now, so that a flood of refused requests costs
	// nothing more than the checks above.
	subject := ""
	if peer.Verified && len(peer.Certificates) > 0 {
		subject = peer.Certificates[0].Subject.String()
	}
	var tok [tokenSize]byte
	rand.Read(tok[:]) // never fails (crypto/rand)
	r := &pendingRequest{token: string(tok[:]), peer: peer, client: peer.String(), key: key,
		conn: string(peer.Route[0]), identity: peer.Identity, subject: subject, parts: clone(req),
		deadline: time.Now().Add(d.lim.Timeout)}
	d.add(r)
	d.queue = append(d.queue, r)
	d.wakeLocked()
	// The loop may send the request, and call Server.Reply with its answer, before this
	// returns: that relies on the server's contract that Reply takes effect on the session's
	// goroutine, after the handler call in progress there has returned ErrDeferred.
	return nil, tlszmq.ErrDeferred
}

// clone copies a request's parts into one buffer: they go out after the handler has
// returned, and the Handler's contract does not say how long the server leaves them be.
func clone(parts [][]byte) [][]byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	buf := make([]byte, 0, n)
	out := make([][]byte, len(parts))
	for i, p := range parts {
		buf = append(buf, p...)
		out[i] = buf[len(buf)-len(p) : len(buf) : len(buf)]
	}
	return out
}

// add records an admitted request. d.mu is held.
func (d *Terminate) add(r *pendingRequest) {
	d.pending[r.token] = r
	r.age = d.byAge.PushBack(r)
	cp := d.perClient[r.key]
	if cp == nil {
		cp = &clientPending{}
		d.perClient[r.key] = cp
	}
	cp.n++
	d.waiting.Store(int64(len(d.pending)))
}

// done forgets a request, answered or not. d.mu is held.
func (d *Terminate) done(r *pendingRequest) {
	delete(d.pending, r.token)
	d.byAge.Remove(r.age)
	if cp := d.perClient[r.key]; cp != nil {
		if cp.n--; cp.n <= 0 {
			delete(d.perClient, r.key)
		}
	}
	d.waiting.Store(int64(len(d.pending)))
}

// sendQueued sends the queued requests to their clients' workers, in the order they came,
// and appends an empty answer for each that cannot go. On the loop, with d.mu held.
func (d *Terminate) sendQueued(answers []answer) []answer {
	queue := d.queue
	d.queue, d.woken = nil, false
	for i, r := range queue {
		queue[i] = nil
		if d.pending[r.token] != r {
			continue // answered already (at its timeout)
		}
		if !d.forward(r) {
			d.done(r)
			answers = append(answers, answer{peer: r.peer, client: r.client})
		}
	}
	return answers
}

// forward sends a request to its client's worker, pinning the client to one if it has none.
// A worker found gone is forgotten and the client pinned to the next one, once. It reports
// whether the request went; if not, it has logged why. On the loop, with d.mu held.
func (d *Terminate) forward(r *pendingRequest) bool {
	for range 2 {
		worker, err := d.pins.backendFor(r.key, r.conn)
		if err != nil {
			d.limit.Warn("tlsdevice: request refused", "client", r.client, "reason", err)
			return false
		}
		frames := make([]any, 0, 5+len(r.parts))
		frames = append(frames, worker, r.token, "", r.identity, r.subject)
		for _, p := range r.parts {
			frames = append(frames, p)
		}
		_, err = d.back.SendMessageDontwait(frames...)
		if err == nil {
			r.worker, r.parts = worker, nil
			return true
		}
		if !isHostUnreachable(err) {
			d.limit.Warn("tlsdevice: request refused", "client", r.client, "worker", printable(worker), "reason", err)
			return false
		}
		d.forget(worker)
	}
	d.limit.Warn("tlsdevice: request refused", "client", r.client, "reason", errNoBackend)
	return false
}

// expire appends an empty answer for each request whose worker has not replied by its
// deadline, or is gone. On the loop, with d.mu held.
func (d *Terminate) expire(now time.Time, answers []answer) []answer {
	for e := d.byAge.Front(); e != nil; e = d.byAge.Front() {
		r := e.Value.(*pendingRequest)
		if now.Before(r.deadline) {
			break
		}
		d.done(r)
		if !r.gone {
			d.limit.Warn("tlsdevice: no reply from the worker in time; the client gets an empty answer", "client", r.client,
				"worker", printable(r.worker), "timeout", d.lim.Timeout)
		}
		answers = append(answers, answer{peer: r.peer, client: r.client}) // Reply fails only if the session is gone
	}
	return answers
}

// fromWorkers takes the workers' announcements and replies, and appends the replies to
// answers. On the loop, with d.mu held.
func (d *Terminate) fromWorkers(msgs [][][]byte, answers []answer) []answer {
	for _, msg := range msgs {
		worker := string(msg[0])
		if added, err := d.pins.announce(worker); added {
			d.workers.Store(int64(d.pins.count()))
			d.log.Info("tlsdevice: worker connected", "worker", printable(worker), "workers", d.pins.count())
		} else if err != nil {
			d.limit.Warn("tlsdevice: worker not taken", "worker", printable(worker), "workers", d.pins.count(), "reason", err)
			continue
		}
		if len(msg) < 3 {
			continue // an announcement
		}
		if len(msg[1]) != tokenSize || len(msg[2]) != 0 {
			d.limit.Warn("tlsdevice: malformed worker reply dropped", "worker", printable(worker))
			continue
		}
		req, ok := d.pending[string(msg[1])]
		if !ok {
			// Answered with nothing at its timeout, its worker gone, or not a token of ours.
			d.limit.Info("tlsdevice: worker reply with an unknown token dropped (late, or never sent)", "worker", printable(worker))
			continue
		}
		if req.worker != worker {
			d.limit.Warn("tlsdevice: worker reply dropped: the request went to another worker", "worker", printable(worker),
				"client", req.client)
			continue
		}
		d.done(req)
		answers = append(answers, answer{peer: req.peer, client: req.client, reply: msg[3:], logErr: true})
	}
	return answers
}

// forget drops a worker that is gone; the requests it held are answered with nothing at once
// (expire, in the same turn of the loop), so that their clients learn now instead of at their
// timeout. On the loop, with d.mu held.
func (d *Terminate) forget(worker string) {
	d.log.Info("tlsdevice: worker gone", "worker", printable(worker))
	d.pins.forget(worker)
	d.workers.Store(int64(d.pins.count()))
	for e := d.byAge.Back(); e != nil; {
		prev := e.Prev()
		if req := e.Value.(*pendingRequest); req.worker == worker && !req.gone {
			req.gone, req.deadline = true, time.Time{}
			d.byAge.MoveToFront(e)
		}
		e = prev
	}
}
