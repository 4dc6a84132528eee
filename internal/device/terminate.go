package device

import (
	"container/list"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq"
)

// Terminate is the seed article's "client -> hop (ssl) -> server" layout: the device is the
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
// session goes on.
type Terminate struct {
	srv       *tlszmq.Server
	back      *zmq.Socket
	backEP    string
	tick      *zmq.Socket // the receiving end of the ticker, polled by the server
	tickEP    string
	lim       Limits
	pins      *pins
	pending   map[string]*pendingRequest // by token
	byAge     *list.List                 // *pendingRequest, oldest first (one Timeout for all)
	perClient map[string]*clientPending  // by the client's Peer.Key
	log       *slog.Logger
	limit     *LogLimiter
	workers   atomic.Int64
	waiting   atomic.Int64 // len(pending), for readers on other goroutines
}

type pendingRequest struct {
	token    string
	peer     *tlszmq.Peer
	key      string
	worker   string
	deadline time.Time
	age      *list.Element
	gone     bool // its worker is gone: answer it with nothing at the next tick
}

// clientPending is one client's share of the requests waiting for a worker.
type clientPending struct {
	n       int
	refused bool // a refusal has been logged since the client's queue was last empty
}

// tokenSize is the length of a request's token: 128 random bits.
const tokenSize = 16

// tickEvery is how often the server's goroutine looks for requests past their Timeout.
const tickEvery = 100 * time.Millisecond

// NewTerminate binds the TLS frontend (a tlszmq.Server on ctx) and the plaintext backend.
// lim bounds the pin table and the requests waiting for workers; opts.MaxSessions and
// opts.MaxEnvelopeFrames, if zero, are lim.MaxClients and lim.MaxEnvelope.
func NewTerminate(ctx *tlszmq.Context, frontend, backend string, opts tlszmq.ServerOptions, lim Limits) (*Terminate, error) {
	lim = lim.withDefaults()
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = lim.MaxClients
	}
	if opts.MaxEnvelopeFrames <= 0 {
		opts.MaxEnvelopeFrames = lim.MaxEnvelope // the server drops longer envelopes as they arrive
	}
	back, backEP, err := newRouter(backend, true)
	if err != nil {
		return nil, err
	}
	d := &Terminate{back: back, backEP: backEP, lim: lim, pins: newPins(lim), pending: map[string]*pendingRequest{},
		byAge: list.New(), perClient: map[string]*clientPending{}, log: logger(opts.Logger)}
	d.limit = NewLogLimiter(d.log)
	d.tickEP = fmt.Sprintf("inproc://tlsdevice-tick-%p", d)
	if d.tick, err = zmq.NewSocket(zmq.PAIR); err == nil {
		if err = d.tick.Bind(d.tickEP); err != nil {
			d.tick.Close()
		}
	}
	if err != nil {
		back.Close()
		return nil, err
	}
	opts.Poll = append(opts.Poll, tlszmq.PollItem{Socket: back, Ready: d.fromWorker},
		tlszmq.PollItem{Socket: d.tick, Ready: d.ticked})
	d.srv, err = tlszmq.NewServer(ctx, frontend, d.toWorker, &opts)
	if err != nil {
		back.Close()
		d.tick.Close()
		return nil, err
	}
	return d, nil
}

// Endpoints returns the bound frontend and backend endpoints.
func (d *Terminate) Endpoints() (frontend, backend string) { return d.srv.Endpoint(), d.backEP }

// Server returns the TLS server of the frontend, for its Stats.
func (d *Terminate) Server() *tlszmq.Server { return d.srv }

// Workers returns how many workers have announced themselves.
func (d *Terminate) Workers() int { return int(d.workers.Load()) }

// Pending returns how many requests wait for a worker's reply.
func (d *Terminate) Pending() int { return int(d.waiting.Load()) }

// Run serves until ctx ends: close_notify to every client, then the sockets are closed.
func (d *Terminate) Run(ctx context.Context) error {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.ticker(stop) }()
	err := d.srv.Serve(ctx)
	close(stop)
	wg.Wait()
	d.back.Close()
	d.tick.Close()
	return err
}

// ticker wakes the server's goroutine every tickEvery, until stop closes.
func (d *Terminate) ticker(stop <-chan struct{}) {
	s, err := zmq.NewSocket(zmq.PAIR)
	if err != nil {
		d.log.Error("tlsdevice: no ticker: requests past their timeout are found only as traffic passes", "reason", err)
		return
	}
	defer s.Close()
	s.SetLinger(0)
	if err := s.Connect(d.tickEP); err != nil {
		d.log.Error("tlsdevice: no ticker: requests past their timeout are found only as traffic passes", "reason", err)
		return
	}
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s.SendBytes(nil, zmq.DONTWAIT) // a full queue means a tick is waiting already
		}
	}
}

// ticked runs on the server's goroutine at each tick.
func (d *Terminate) ticked(context.Context) {
	for {
		if _, err := d.tick.RecvBytes(zmq.DONTWAIT); err != nil {
			break
		}
	}
	d.expire(time.Now())
}

// toWorker is the frontend's handler: it passes the request on and defers the reply. A
// refused request gets no reply (nil, nil: the server logs nothing more for it).
func (d *Terminate) toWorker(_ context.Context, peer *tlszmq.Peer, req [][]byte) ([][]byte, error) {
	// Nothing here answers a deferred request (Server.Reply): this runs in the middle of
	// the server's handling of one session, which may be among those waiting; expire and
	// forget leave that to the ticker's and the backend's callbacks.
	now := time.Now()
	if err := d.lim.checkEnvelope(peer.Route); err != nil {
		d.limit.Warn("tlsdevice: request refused: its envelope is not honoured", "client", peer.String(), "reason", err)
		return nil, nil
	}
	key := peer.Key()
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
	subject := ""
	if peer.Verified && len(peer.Certificates) > 0 {
		subject = peer.Certificates[0].Subject.String()
	}
	var tok [tokenSize]byte
	rand.Read(tok[:]) // never fails (crypto/rand)
	token := string(tok[:])
	for range 2 {
		worker, err := d.pins.backendFor(key, string(peer.Route[0]))
		if err != nil {
			d.limit.Warn("tlsdevice: request refused", "client", peer.String(), "reason", err)
			return nil, nil
		}
		frames := []any{worker, token, "", peer.Identity, subject}
		for _, p := range req {
			frames = append(frames, p)
		}
		_, err = d.back.SendMessageDontwait(frames...)
		if err == nil {
			d.add(&pendingRequest{token: token, peer: peer, key: key, worker: worker, deadline: now.Add(d.lim.Timeout)})
			return nil, tlszmq.ErrDeferred
		}
		if !isHostUnreachable(err) {
			d.limit.Warn("tlsdevice: request refused", "client", peer.String(), "worker", printable(worker), "reason", err)
			return nil, nil
		}
		d.forget(worker)
	}
	d.limit.Warn("tlsdevice: request refused", "client", peer.String(), "reason", errNoBackend)
	return nil, nil
}

// add records a request sent to a worker.
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

// done forgets a request, answered or not.
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

// expire answers, with nothing, the requests whose worker has not replied by their deadline.
func (d *Terminate) expire(now time.Time) {
	for e := d.byAge.Front(); e != nil; e = d.byAge.Front() {
		r := e.Value.(*pendingRequest)
		if now.Before(r.deadline) {
			return
		}
		d.done(r)
		if !r.gone {
			d.limit.Warn("tlsdevice: no reply from the worker in time; the client gets an empty answer", "client", r.peer.String(),
				"worker", printable(r.worker), "timeout", d.lim.Timeout)
		}
		d.srv.Reply(r.peer, nil) // fails only if the session is gone already
	}
}

// fromWorker takes the workers' replies and announcements.
func (d *Terminate) fromWorker(context.Context) {
	d.expire(time.Now())
	for range 256 {
		msg, err := d.back.RecvMessageBytes(zmq.DONTWAIT)
		if err != nil {
			return
		}
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
				"client", req.peer.String())
			continue
		}
		d.done(req)
		if err := d.srv.Reply(req.peer, msg[3:]); err != nil {
			d.limit.Info("tlsdevice: reply dropped", "client", req.peer.String(), "reason", err)
		}
	}
}

// forget drops a worker that is gone; the requests it held are answered with nothing at the
// next tick, so that their clients learn at once instead of waiting for their timeout.
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
