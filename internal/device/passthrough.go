package device

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq/internal/zapauth"
	"github.com/tlszmq/tlszmq/internal/zmqpoll"

	"github.com/tlszmq/tlszmq/internal/routekey"
)

// PassThrough forwards TLS bytes between clients and servers untouched: encryption stays end
// to end. Without Pin it is the C++ device, a ROUTER for clients and a DEALER for servers; the
// DEALER hands each message to the next server in turn, which splits a client's TLS stream
// when more than one server is connected. With Pin the backend is a ROUTER and every client
// stays with the server it first reached. A pinned server must announce itself when it
// connects (tlsserver -connect does, with ZMQ_PROBE_ROUTER); the C++ server does not, and
// libzmq 4.3's ZMQ_ROUTER_NOTIFY, which would reveal it, is a draft API that Debian's build
// leaves out.
//
// Messages pass frame for frame, so an end-of-session notice (internal/notice) from a server
// reaches its client unchanged. With Pin, the pin table is bounded by Limits (MaxClients,
// MaxClientsPerConn, MaxBackends, MaxEnvelope), and a server's message reaches a client only
// if that client is pinned to that server: no backend peer can write into another's sessions.
type PassThrough struct {
	front, back     *zmq.Socket
	frontEP, backEP string
	policy          *zapauth.Policy // Limits.Allow and Deny on front, or nil
	pin             bool
	lim             Limits
	pins            *pins
	log             *slog.Logger
	limit           *LogLimiter
	backends        atomic.Int64 // pinned servers known, for readers on other goroutines
}

// NewPassThrough binds the client side (frontend) and the server side (backend), with the
// default Limits but maxClients (0: the default).
func NewPassThrough(frontend, backend string, pin bool, maxClients int, log *slog.Logger) (*PassThrough, error) {
	return NewPassThroughLimits(frontend, backend, pin, Limits{MaxClients: maxClients}, log)
}

// NewPassThroughLimits is NewPassThrough with every limit of the pin table given.
func NewPassThroughLimits(frontend, backend string, pin bool, lim Limits, log *slog.Logger) (*PassThrough, error) {
	lim = lim.withDefaults()
	log = logger(log)
	front, frontEP, policy, err := newFrontend(frontend, pin, lim, log)
	if err != nil {
		return nil, err
	}
	d := &PassThrough{front: front, frontEP: frontEP, policy: policy, pin: pin, lim: lim, log: log}
	d.limit = NewLogLimiter(d.log)
	if pin {
		d.back, d.backEP, err = newRouter(backend, true, nil)
		d.pins = newPins(lim)
	} else {
		d.back, err = zmq.NewSocket(zmq.DEALER)
		if err == nil {
			err = d.back.SetLinger(500 * time.Millisecond)
		}
		if err == nil {
			err = d.back.SetSndhwm(queueDepth)
		}
		if err == nil {
			err = d.back.Bind(backend)
		}
		if err == nil {
			if d.backEP, err = d.back.GetLastEndpoint(); err != nil {
				d.backEP, err = backend, nil // as newRouter: the endpoint as given
			}
		}
		if err != nil {
			err = fmt.Errorf("binding %s: %w", backend, err)
		}
	}
	if err != nil {
		zapauth.CloseSocket(front, policy)
		if d.back != nil {
			d.back.Close()
		}
		return nil, err
	}
	return d, nil
}

// Endpoints returns the bound frontend and backend endpoints.
func (d *PassThrough) Endpoints() (frontend, backend string) { return d.frontEP, d.backEP }

// Run forwards until ctx ends, then closes the sockets.
func (d *PassThrough) Run(ctx context.Context) error {
	defer zapauth.CloseSocket(d.front, d.policy)
	defer d.back.Close()
	if !d.pin {
		return d.proxy(ctx)
	}
	poller := zmq.NewPoller()
	poller.Add(d.front, zmq.POLLIN)
	poller.Add(d.back, zmq.POLLIN)
	for ctx.Err() == nil {
		polled, err := zmqpoll.Poll(poller, 50*time.Millisecond)
		if err != nil {
			return err
		}
		for _, p := range polled {
			for range 256 {
				msg, err := p.Socket.RecvMessageBytes(zmq.DONTWAIT)
				if err != nil {
					break
				}
				if p.Socket == d.front {
					d.toBackend(msg)
				} else {
					d.toFrontend(msg)
				}
			}
		}
	}
	return nil
}

// proxy runs libzmq's own proxy, stopped through its control socket when ctx ends.
func (d *PassThrough) proxy(ctx context.Context) error {
	ep := fmt.Sprintf("inproc://tlsdevice-control-%p", d)
	ctl, err := zmq.NewSocket(zmq.PAIR)
	if err != nil {
		return err
	}
	defer ctl.Close()
	if err := ctl.Bind(ep); err != nil {
		return err
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		stop, err := zmq.NewSocket(zmq.PAIR)
		if err != nil {
			return
		}
		defer stop.Close()
		stop.Connect(ep)
		select {
		case <-ctx.Done():
			stop.Send("TERMINATE", 0)
		case <-done:
		}
	}()
	err = zmq.ProxySteerable(d.front, d.back, nil, ctl)
	close(done)
	<-stopped
	return err
}

// toBackend passes a client's message to its server: [server, client envelope, "", tls].
func (d *PassThrough) toBackend(msg [][]byte) {
	env := clientEnvelope(msg, d.lim, d.limit)
	if env == nil {
		return
	}
	key := routekey.Of(env)
	for range 2 { // a second try after a server turned out to be gone
		server, err := d.pins.backendFor(key, string(env[0]))
		if err != nil {
			d.limit.Warn("tlsdevice: client message dropped", "client", printable(string(env[len(env)-1])), "reason", err)
			return
		}
		frames := make([]any, 0, len(msg)+1)
		frames = append(frames, server)
		for _, f := range msg {
			frames = append(frames, f)
		}
		_, err = d.back.SendMessageDontwait(frames...)
		if err == nil {
			return
		}
		if !isHostUnreachable(err) {
			d.limit.Warn("tlsdevice: forwarding failed", "server", printable(server), "reason", err)
			return
		}
		d.log.Info("tlsdevice: server gone", "server", printable(server))
		d.pins.forget(server)
		d.backends.Store(int64(d.pins.count()))
	}
}

// toFrontend passes a server's message back to the client, or records an announcement.
func (d *PassThrough) toFrontend(msg [][]byte) {
	if len(msg) == 0 {
		return
	}
	server := string(msg[0])
	if added, err := d.pins.announce(server); added {
		d.backends.Store(int64(d.pins.count()))
		d.log.Info("tlsdevice: server connected", "server", printable(server), "servers", d.pins.count())
	} else if err != nil {
		d.limit.Warn("tlsdevice: server not taken", "server", printable(server), "servers", d.pins.count(), "reason", err)
		return
	}
	if len(msg) < 3 {
		return // an announcement (ZMQ_PROBE_ROUTER's empty message)
	}
	// Only to a client pinned to this server: a backend peer cannot write into the TLS
	// stream of another server's client.
	env := envelopeOf(msg[1:])
	if env == nil || d.pins.pinnedTo(routekey.Of(env)) != server {
		d.limit.Warn("tlsdevice: server message dropped: the client is not pinned to that server", "server", printable(server))
		return
	}
	frames := make([]any, 0, len(msg)-1)
	for _, f := range msg[1:] {
		frames = append(frames, f)
	}
	if _, err := d.front.SendMessageDontwait(frames...); err != nil {
		d.limit.Info("tlsdevice: reply to a client that is gone dropped", "client", printable(string(msg[1])), "reason", err)
	}
}

// Refused returns how many client connections Limits.Allow and Deny refused.
func (d *PassThrough) Refused() int64 { return zapauth.Total(d.policy.Refused()) }

// Backends returns how many pinned servers have announced themselves (0 without Pin).
func (d *PassThrough) Backends() int { return int(d.backends.Load()) }

// clientEnvelope returns the envelope of a client's message, or nil, after a log line, if it
// has none or one that lim does not honour.
func clientEnvelope(msg [][]byte, lim Limits, limit *LogLimiter) [][]byte {
	env := envelopeOf(msg)
	if env == nil {
		limit.Warn("tlsdevice: message without an envelope dropped", "frames", len(msg))
		return nil
	}
	if err := lim.checkEnvelope(env); err != nil {
		limit.Warn("tlsdevice: client message dropped: its envelope is not honoured", "conn", printable(string(env[0])), "reason", err)
		return nil
	}
	return env
}

// envelopeOf returns the identity frames before the first empty frame, nil if there are none.
func envelopeOf(msg [][]byte) [][]byte {
	for i, f := range msg {
		if len(f) == 0 {
			if i == 0 {
				return nil
			}
			return msg[:i]
		}
	}
	return nil
}
