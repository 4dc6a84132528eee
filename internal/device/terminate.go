package device

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync/atomic"

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
// the device's, to be sent back as it came.
type Terminate struct {
	srv     *tlszmq.Server
	back    *zmq.Socket
	backEP  string
	pins    *pins
	pending map[uint64]pendingRequest
	next    uint64
	log     *slog.Logger
	workers atomic.Int64
}

type pendingRequest struct {
	peer   *tlszmq.Peer
	worker string
}

// maxPending bounds the requests waiting for a worker; a request beyond it is refused.
const maxPending = 100000

// NewTerminate binds the TLS frontend (a tlszmq.Server on ctx) and the plaintext backend.
func NewTerminate(ctx *tlszmq.Context, frontend, backend string, opts tlszmq.ServerOptions, maxClients int) (*Terminate, error) {
	back, backEP, err := newRouter(backend, true)
	if err != nil {
		return nil, err
	}
	d := &Terminate{back: back, backEP: backEP, pins: newPins(maxClients), pending: map[uint64]pendingRequest{}, log: logger(opts.Logger)}
	opts.Poll = append(opts.Poll, tlszmq.PollItem{Socket: back, Ready: d.fromWorker})
	d.srv, err = tlszmq.NewServer(ctx, frontend, d.toWorker, &opts)
	if err != nil {
		back.Close()
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

// Run serves until ctx ends: close_notify to every client, then the sockets are closed.
func (d *Terminate) Run(ctx context.Context) error {
	err := d.srv.Serve(ctx)
	d.back.Close()
	return err
}

// toWorker is the frontend's handler: it passes the request on and defers the reply.
func (d *Terminate) toWorker(_ context.Context, peer *tlszmq.Peer, req [][]byte) ([][]byte, error) {
	if len(d.pending) >= maxPending {
		return nil, fmt.Errorf("%d requests already wait for a worker", maxPending)
	}
	subject := ""
	if peer.Verified && len(peer.Certificates) > 0 {
		subject = peer.Certificates[0].Subject.String()
	}
	d.next++
	token := binary.BigEndian.AppendUint64(nil, d.next)
	for range 2 {
		worker, err := d.pins.backendFor(peer.Key())
		if err != nil {
			return nil, err
		}
		frames := []any{worker, token, "", peer.Identity, subject}
		for _, p := range req {
			frames = append(frames, p)
		}
		_, err = d.back.SendMessageDontwait(frames...)
		if err == nil {
			d.pending[d.next] = pendingRequest{peer, worker}
			return nil, tlszmq.ErrDeferred
		}
		if !isHostUnreachable(err) {
			return nil, fmt.Errorf("to worker %s: %w", printable(worker), err)
		}
		d.forget(worker)
	}
	return nil, errNoBackend
}

// fromWorker takes the workers' replies and announcements.
func (d *Terminate) fromWorker(context.Context) {
	for range 256 {
		msg, err := d.back.RecvMessageBytes(zmq.DONTWAIT)
		if err != nil {
			return
		}
		worker := string(msg[0])
		if d.pins.announce(worker) {
			d.workers.Store(int64(d.pins.count()))
			d.log.Info("tlsdevice: worker connected", "worker", printable(worker), "workers", d.pins.count())
		}
		if len(msg) < 3 {
			continue // an announcement
		}
		if len(msg[1]) != 8 || len(msg[2]) != 0 {
			d.log.Warn("tlsdevice: malformed worker reply dropped", "worker", printable(worker))
			continue
		}
		token := binary.BigEndian.Uint64(msg[1])
		req, ok := d.pending[token]
		if !ok {
			continue // the client is gone, or the token is not ours
		}
		delete(d.pending, token)
		if err := d.srv.Reply(req.peer, msg[3:]); err != nil {
			d.log.Info("tlsdevice: reply dropped", "client", req.peer.String(), "reason", err)
		}
	}
}

// forget drops a worker that is gone; the requests it held are answered with nothing, so that
// their clients learn at once instead of waiting for their timeout.
func (d *Terminate) forget(worker string) {
	d.log.Info("tlsdevice: worker gone", "worker", printable(worker))
	d.pins.forget(worker)
	d.workers.Store(int64(d.pins.count()))
	for token, req := range d.pending {
		if req.worker == worker {
			delete(d.pending, token)
			if err := d.srv.Reply(req.peer, nil); err != nil {
				d.log.Info("tlsdevice: client of a gone worker not answered", "client", req.peer.String(), "reason", err)
			}
		}
	}
}
