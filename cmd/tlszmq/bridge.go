package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq/internal/device"
	"github.com/tlszmq/tlszmq/internal/notice"
	"github.com/tlszmq/tlszmq/internal/zmqpoll"

	"github.com/tlszmq/tlszmq/internal/cli"
	"github.com/tlszmq/tlszmq/internal/defaults"
	"github.com/tlszmq/tlszmq/internal/routekey"
)

// runBridge carries TCP byte streams as TLSZMQ frames, so that standard TLS tools meet TLSZMQ
// peers. The TLS bytes pass through untouched; the bridge holds no key.
//
//	-listen ADDR -to ENDPOINT    TCP clients (openssl s_client) reach the TLSZMQ server at
//	                             ENDPOINT: one DEALER socket per TCP connection, every read
//	                             leaves as one ["", bytes] message. The DEALER's routing id
//	                             asks for end-of-session notices (internal/notice): when the
//	                             server ends the session (close_notify, a fatal alert, a
//	                             budget) the bridge writes the server's last TLS bytes, closes
//	                             the TCP connection and logs the server's reason, as a TLS
//	                             server over TCP would.
//	-bind ENDPOINT -connect ADDR TLSZMQ clients (DEALER) reach the TCP TLS server at ADDR
//	                             (openssl s_server): one TCP connection per client envelope,
//	                             opened by a ClientHello and dialled beside the loop; when
//	                             it closes, a client whose routing id asks for notices gets
//	                             one, and bytes that follow open nothing.
//
// Limits (flags): -max-conns connections at once (500; past it a new TCP connection is closed
// at once, or a new TLSZMQ client's bytes are dropped, with a log line), -idle (5m; a
// connection with no bytes either way for that long is closed), -dial-timeout (5s), -max-queue
// (4 MiB of bytes waiting for one TCP server connection; past it that connection is closed),
// -max-envelope (16 routing frames of a TLSZMQ client's message; past it the message is
// dropped).
func runBridge(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bridge")
	listen := fs.String("listen", "", "TCP address to accept TLS clients on, e.g. 127.0.0.1:4433")
	to := fs.String("to", "tcp://localhost:5556", "with -listen: the TLSZMQ server's endpoint")
	bind := fs.String("bind", "", "ZeroMQ endpoint to accept TLSZMQ clients on, e.g. tcp://*:5556")
	connect := fs.String("connect", "", "with -bind: the TCP TLS server's address, e.g. localhost:4433")
	maxConns := fs.Int("max-conns", defaultMaxConns, "most connections carried at once (with -listen each is a ZeroMQ socket and two goroutines;\n"+
		"ZeroMQ allows 1,023 sockets per process); past it a new TCP connection is closed at once (-listen)\n"+
		"or a new TLSZMQ client's bytes are dropped (-bind), with a log line")
	idle := fs.Duration("idle", defaultIdle, "close a connection that carried no bytes either way for this long")
	dialTimeout := fs.Duration("dial-timeout", defaultDialTimeout, "with -bind: how long a TCP dial may take (dials run beside the loop, never in it)")
	maxQueue := fs.Int("max-queue", defaultMaxQueue, "with -bind: most bytes waiting to be written to one TCP connection (and the largest ZeroMQ\n"+
		"message taken); past it that connection is closed, with a log line")
	maxEnvelope := fs.Int("max-envelope", device.DefaultMaxEnvelope, "with -bind: most routing frames of a TLSZMQ client's message (each at most 255 bytes);\n"+
		"a message with more is dropped, with a log line")
	if err := cli.Parse(fs, args, stderr); err != nil {
		return err
	}
	if *maxConns < 1 || *maxQueue < 1 || *maxEnvelope < 1 || *idle <= 0 || *dialTimeout <= 0 {
		return cli.Usagef("-max-conns, -max-queue, -max-envelope, -idle and -dial-timeout must be positive")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := newBridge(bridgeOptions{MaxConns: *maxConns, Idle: *idle, DialTimeout: *dialTimeout, MaxQueue: *maxQueue,
		MaxEnvelope: *maxEnvelope, Log: cli.Logger(stderr, "tlszmq bridge")})
	switch {
	case *listen != "" && *bind == "":
		if err := cli.CheckEndpoint("to", *to, false); err != nil {
			return err
		}
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "tlszmq bridge: TCP %s → TLSZMQ %s\n", ln.Addr(), *to)
		return b.tcpToZMQ(ctx, ln, *to)
	case *bind != "" && *connect != "" && *listen == "":
		if err := cli.CheckEndpoint("bind", *bind, true); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "tlszmq bridge: TLSZMQ %s → TCP %s\n", *bind, *connect)
		return b.zmqToTCP(ctx, *bind, *connect)
	}
	return cli.Usagef("give either -listen (with -to) or -bind with -connect")
}

// The defaults of the bridge's limits.
const (
	defaultMaxConns    = 500
	defaultIdle        = 5 * time.Minute
	defaultDialTimeout = 5 * time.Second
	defaultMaxQueue    = 4 << 20
)

// closeLinger is how long the bridge waits, after its FIN, for a TCP client to close its side
// once the TLSZMQ server has ended the session; reading what it still sends, so that the close
// does not turn into a reset that could destroy the server's last bytes before they are read.
const closeLinger = 500 * time.Millisecond

// bridgeOptions bound what the bridge holds; a zero field takes its default.
type bridgeOptions struct {
	MaxConns    int           // connections at once (defaultMaxConns)
	Idle        time.Duration // a connection quiet both ways this long is closed (defaultIdle)
	DialTimeout time.Duration // -bind: one TCP dial (defaultDialTimeout)
	MaxQueue    int           // -bind: bytes waiting for one TCP connection (defaultMaxQueue)
	MaxEnvelope int           // -bind: routing frames of a client's message (device.DefaultMaxEnvelope)
	Log         *slog.Logger  // default slog.Default()
	// Dial opens a TCP connection (-bind); the default is a net.Dialer with DialTimeout.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// bridge runs one direction of `tlszmq bridge`.
type bridge struct {
	opts       bridgeOptions
	log        *slog.Logger
	limit      *device.LogLimiter
	conns      atomic.Int64 // connections carried now
	goroutines atomic.Int64 // per-connection goroutines running
}

func newBridge(o bridgeOptions) *bridge {
	defaults.Or(&o.MaxConns, defaultMaxConns)
	defaults.Or(&o.Idle, defaultIdle)
	defaults.Or(&o.DialTimeout, defaultDialTimeout)
	defaults.Or(&o.MaxQueue, defaultMaxQueue)
	defaults.Or(&o.MaxEnvelope, device.DefaultMaxEnvelope)
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Dial == nil {
		d := &net.Dialer{Timeout: o.DialTimeout}
		o.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	return &bridge{opts: o, log: o.Log, limit: device.NewLogLimiter(o.Log)}
}

// spawn runs fn on a goroutine counted in b.goroutines and wg.
func (b *bridge) spawn(wg *sync.WaitGroup, fn func()) {
	wg.Add(1)
	b.goroutines.Add(1)
	go func() {
		defer wg.Done()
		defer b.goroutines.Add(-1)
		fn()
	}()
}

// tcpToZMQ accepts TCP connections and carries each one over a DEALER socket of its own, at
// most MaxConns at once: one past it is closed at once, with a log line.
func (b *bridge) tcpToZMQ(ctx context.Context, ln net.Listener, endpoint string) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	slots := make(chan struct{}, b.opts.MaxConns)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors, or a connection reset before it was taken: the
			// listener goes on, after a pause.
			b.limit.Warn("bridge: accept failed", "reason", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		select {
		case slots <- struct{}{}:
		default:
			b.limit.Warn("bridge: TCP connection refused", "peer", conn.RemoteAddr().String(),
				"reason", fmt.Sprintf("%d connections carried already (-max-conns)", b.opts.MaxConns))
			conn.Close()
			continue
		}
		b.conns.Add(1)
		b.spawn(&wg, func() {
			defer func() { <-slots; b.conns.Add(-1) }()
			if err := b.carry(ctx, conn, endpoint); err != nil {
				b.log.Info("bridge: connection ended", "peer", conn.RemoteAddr().String(), "reason", err)
			}
		})
	}
}

// carry moves one TCP connection's bytes to a DEALER socket and back. The socket belongs to
// this goroutine; a reader goroutine hands TCP bytes over through a channel, and has ended
// when carry returns. The DEALER's routing id asks for end-of-session notices: when one
// arrives, the bytes before it have been written, nothing more is, and the TCP connection is
// closed.
func (b *bridge) carry(ctx context.Context, conn net.Conn, endpoint string) error {
	defer conn.Close()
	sock, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		return err
	}
	defer sock.Close()
	sock.SetLinger(500 * time.Millisecond)
	sock.SetSndtimeo(b.opts.Idle) // a server that takes nothing for that long is as good as idle
	if err := sock.SetIdentity(notice.Identity()); err != nil {
		return err
	}
	if err := sock.Connect(endpoint); err != nil {
		return err
	}
	in := make(chan []byte, 16)
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer close(in)
		buf := make([]byte, 64<<10)
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				select {
				case in <- append([]byte(nil), buf[:n]...):
				case <-stop:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		close(stop)
		conn.Close() // ends the reader's Read
		<-readerDone
	}()
	poller := zmq.NewPoller()
	poller.Add(sock, zmq.POLLIN)
	last := time.Now()
	for ctx.Err() == nil {
		select {
		case p, ok := <-in:
			if !ok {
				return nil // the TCP side closed
			}
			if _, err := sock.SendMessage("", p); err != nil {
				return err
			}
			last = time.Now()
			continue
		default:
		}
		msg, err := zmqpoll.Recv(poller, sock, 5*time.Millisecond)
		if err != nil {
			return err
		}
		if msg == nil {
			if time.Since(last) > b.opts.Idle {
				return fmt.Errorf("no bytes either way for %v (-idle)", b.opts.Idle)
			}
			continue
		}
		last = time.Now()
		p := msg[len(msg)-1]
		if reason, ok := notice.Parse(p); ok {
			b.log.Info("bridge: the TLSZMQ server ended the session; TCP connection closed", "peer", conn.RemoteAddr().String(), "reason", reason)
			closeGracefully(conn, in)
			return nil
		}
		if len(p) > 0 {
			conn.SetWriteDeadline(time.Now().Add(b.opts.Idle))
			if _, err := conn.Write(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// closeGracefully sends the TCP client a FIN and reads (and drops) what it still sends until
// it closes too, or for closeLinger: closing with unread bytes would send a reset instead,
// which may destroy the bytes written last before the client reads them.
func closeGracefully(conn net.Conn, in <-chan []byte) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	t := time.NewTimer(closeLinger)
	defer t.Stop()
	for {
		select {
		case _, ok := <-in:
			if !ok {
				return
			}
		case <-t.C:
			return
		}
	}
}

// tcpLink is one TLSZMQ client's TCP connection, in zmqToTCP. Its fields belong to the loop,
// but for the channels and the byte count its goroutines share.
type tcpLink struct {
	key    string
	env    [][]byte
	conn   net.Conn      // nil while the dial runs
	early  [][]byte      // bytes received while the dial runs
	nearly int           // their length
	out    chan []byte   // to the writer
	queued atomic.Int64  // bytes in out and being written
	stop   chan struct{} // closed when the link is dropped
	cancel context.CancelFunc
	last   time.Time
	born   time.Time // when the link was made
	heard  bool      // the TCP server has sent bytes on it
}

// linkEvent is what a link's goroutines tell the loop.
type linkEvent struct {
	link *tcpLink
	conn net.Conn // a dial's result
	data []byte   // bytes read from the TCP server
	err  error    // the dial failed, or the connection ended
	kind int
}

const (
	evDialed = iota
	evData
	evClosed
)

// linkQueue bounds the writes waiting for one link's writer, beside MaxQueue's bytes.
const linkQueue = 1024

// zmqToTCP accepts TLSZMQ clients on a ROUTER socket and opens one TCP connection per client
// envelope, at most MaxConns at once, for bytes that start a TLS ClientHello (other bytes from
// a client without a connection, such as the rest of a stream whose connection has gone, are
// dropped). Dials, reads and writes run on each link's goroutines;
// the loop only moves messages, so that no client's slow dial or slow server holds up another.
// A link ends when its TCP connection closes, when it has been idle for Idle, or when its
// writes fall MaxQueue bytes behind; its goroutines end and its entry goes with it.
func (b *bridge) zmqToTCP(ctx context.Context, endpoint, addr string) error {
	sock, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		return err
	}
	defer sock.Close()
	sock.SetLinger(500 * time.Millisecond)
	if err := sock.SetMaxmsgsize(int64(b.opts.MaxQueue)); err != nil {
		return err
	}
	if err := sock.Bind(endpoint); err != nil {
		return err
	}
	events := make(chan linkEvent, 256)
	links := map[string]*tcpLink{}
	var wg sync.WaitGroup
	drop := func(l *tcpLink, reason string) {
		if links[l.key] != l {
			return
		}
		delete(links, l.key)
		b.conns.Store(int64(len(links)))
		close(l.stop)
		l.cancel()
		if l.conn != nil {
			l.conn.Close()
		}
		b.log.Info("bridge: TCP connection closed", "client", device.PrintableID(l.env[len(l.env)-1]), "to", addr, "reason", reason)
		if notice.Capable(l.env) {
			b.send(sock, l.env, notice.Payload(reason))
		}
	}
	defer func() {
		for _, l := range links {
			drop(l, "the bridge is stopping")
		}
		wg.Wait()
	}()
	poller := zmq.NewPoller()
	poller.Add(sock, zmq.POLLIN)
	nextSweep := time.Now()
	for ctx.Err() == nil {
	events:
		for range 256 {
			var ev linkEvent
			select {
			case ev = <-events:
			default:
				break events
			}
			l := ev.link
			if links[l.key] != l {
				if ev.conn != nil {
					ev.conn.Close()
				}
				continue // dropped already
			}
			switch ev.kind {
			case evDialed:
				if ev.err != nil {
					drop(l, "no TCP connection: "+ev.err.Error())
					continue
				}
				l.conn = ev.conn
				b.startLink(&wg, l, events)
				for _, p := range l.early {
					if !b.queue(l, p) {
						drop(l, "the TCP server does not read fast enough (-max-queue)")
						break
					}
				}
				l.early, l.nearly = nil, 0
			case evData:
				l.last, l.heard = time.Now(), true
				b.send(sock, l.env, ev.data)
			case evClosed:
				reason := "the TCP server closed the connection"
				if ev.err != nil && !errors.Is(ev.err, io.EOF) {
					reason = "the TCP connection failed: " + ev.err.Error()
				}
				drop(l, reason)
			}
		}
		if now := time.Now(); now.After(nextSweep) {
			nextSweep = now.Add(min(time.Second, b.opts.Idle/4))
			for _, l := range links {
				if now.Sub(l.last) > b.opts.Idle {
					drop(l, fmt.Sprintf("no bytes either way for %v (-idle)", b.opts.Idle))
				}
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
			msg, err := sock.RecvMessageBytes(zmq.DONTWAIT)
			if err != nil {
				break
			}
			env, payload, ok := b.split(msg)
			if !ok {
				continue
			}
			key := routekey.Of(env)
			l := links[key]
			if l == nil {
				if !startsClientHello(payload) {
					// The rest of a stream whose connection has gone, or not TLS: a new
					// connection would only carry it to the server as garbage.
					b.limit.Info("bridge: TLSZMQ client's bytes dropped", "client", device.PrintableID(env[len(env)-1]),
						"reason", "no TCP connection, and the bytes do not start a TLS ClientHello")
					continue
				}
				if len(links) >= b.opts.MaxConns {
					// Room is made, in this order: by the ZeroMQ connection that carries the
					// most links (routes behind one connection are made up at will), its
					// oldest; else by a link the TCP server has not answered for a while (a
					// ClientHello that never ends), the oldest; else the bytes are refused.
					if old := oldestOfBusiestConn(links); old != nil {
						drop(old, fmt.Sprintf("%d connections carried already: the ZeroMQ connection with the most links gives up its oldest (-max-conns)", b.opts.MaxConns))
					} else if old := oldestUnheard(links, time.Now().Add(-unheardGrace)); old != nil {
						drop(old, fmt.Sprintf("%d connections carried already, and the TCP server has not answered this one yet: the oldest such makes room (-max-conns)", b.opts.MaxConns))
					} else {
						reason := fmt.Sprintf("%d connections carried already (-max-conns)", b.opts.MaxConns)
						b.limit.Warn("bridge: TLSZMQ client's bytes dropped", "client", device.PrintableID(env[len(env)-1]), "reason", reason)
						if notice.Capable(env) {
							b.send(sock, env, notice.Payload(reason))
						}
						continue
					}
				}
				l = b.dial(ctx, &wg, key, env, addr, events)
				links[key] = l
				b.conns.Store(int64(len(links)))
			}
			if len(payload) == 0 {
				continue // not activity: empty frames keep no link alive
			}
			l.last = time.Now()
			if l.conn == nil {
				l.early = append(l.early, payload)
				if l.nearly += len(payload); l.nearly > b.opts.MaxQueue {
					drop(l, "too many bytes while the TCP dial runs (-max-queue)")
				}
				continue
			}
			if !b.queue(l, payload) {
				drop(l, "the TCP server does not read fast enough (-max-queue)")
			}
		}
	}
	return nil
}

// oldestOfBusiestConn returns the oldest link of the ZeroMQ connection (the first envelope
// frame) that carries the most links, if it carries more than one; else nil.
func oldestOfBusiestConn(links map[string]*tcpLink) *tcpLink {
	count := map[string]int{}
	busiest, most := "", 1
	for _, l := range links {
		c := string(l.env[0])
		if count[c]++; count[c] > most {
			busiest, most = c, count[c]
		}
	}
	if busiest == "" {
		return nil
	}
	var old *tcpLink
	for _, l := range links {
		if string(l.env[0]) == busiest && (old == nil || l.born.Before(old.born)) {
			old = l
		}
	}
	return old
}

// unheardGrace is how long a new link may wait for the TCP server's first bytes before it can
// be made to give its place to another client.
const unheardGrace = time.Second

// oldestUnheard returns the oldest link made before since that the TCP server has sent
// nothing on, or nil.
func oldestUnheard(links map[string]*tcpLink, since time.Time) *tcpLink {
	var old *tcpLink
	for _, l := range links {
		if !l.heard && l.born.Before(since) && (old == nil || l.born.Before(old.born)) {
			old = l
		}
	}
	return old
}

// startsClientHello reports whether bytes start a TLS session: a handshake record (type 22,
// version 3.x) whose first message is a ClientHello (type 1).
func startsClientHello(p []byte) bool {
	return len(p) >= 6 && p[0] == 22 && p[1] == 3 && p[5] == 1
}

// split returns a client message's envelope and payload, or false (after a log line) for one
// that is not [routing frames..., "", payload] within MaxEnvelope.
func (b *bridge) split(msg [][]byte) (env [][]byte, payload []byte, ok bool) {
	for i, f := range msg {
		if len(f) == 0 {
			env = msg[:i]
			break
		}
	}
	if len(env) == 0 || len(msg) != len(env)+2 {
		b.limit.Warn("bridge: malformed TLSZMQ message dropped", "frames", len(msg))
		return nil, nil, false
	}
	if err := device.CheckEnvelope(env, b.opts.MaxEnvelope); err != nil {
		b.limit.Warn("bridge: TLSZMQ message dropped", "reason", err)
		return nil, nil, false
	}
	return env, msg[len(msg)-1], true
}

// dial starts a link: its TCP dial runs on a goroutine of its own and reports to the loop.
func (b *bridge) dial(ctx context.Context, wg *sync.WaitGroup, key string, env [][]byte, addr string, events chan<- linkEvent) *tcpLink {
	route := make([][]byte, len(env))
	for i, f := range env {
		route[i] = append([]byte(nil), f...)
	}
	dctx, cancel := context.WithTimeout(ctx, b.opts.DialTimeout)
	now := time.Now()
	l := &tcpLink{key: key, env: route, out: make(chan []byte, linkQueue), stop: make(chan struct{}), cancel: cancel, last: now, born: now}
	b.spawn(wg, func() {
		conn, err := b.opts.Dial(dctx, addr)
		cancel()
		select {
		case events <- linkEvent{link: l, kind: evDialed, conn: conn, err: err}:
		case <-l.stop:
			if conn != nil {
				conn.Close()
			}
		}
	})
	return l
}

// startLink starts a dialled link's reader and writer.
func (b *bridge) startLink(wg *sync.WaitGroup, l *tcpLink, events chan<- linkEvent) {
	conn := l.conn
	report := func(ev linkEvent) bool {
		select {
		case events <- ev:
			return true
		case <-l.stop:
			return false
		}
	}
	b.spawn(wg, func() { // reader
		buf := make([]byte, 64<<10)
		for {
			n, err := conn.Read(buf)
			if n > 0 && !report(linkEvent{link: l, kind: evData, data: append([]byte(nil), buf[:n]...)}) {
				return
			}
			if err != nil {
				report(linkEvent{link: l, kind: evClosed, err: err})
				return
			}
		}
	})
	b.spawn(wg, func() { // writer
		for {
			select {
			case p := <-l.out:
				conn.SetWriteDeadline(time.Now().Add(b.opts.Idle))
				_, err := conn.Write(p)
				l.queued.Add(-int64(len(p)))
				if err != nil {
					report(linkEvent{link: l, kind: evClosed, err: err})
					return
				}
			case <-l.stop:
				return
			}
		}
	})
}

// queue hands bytes to a link's writer; false if that would go past MaxQueue.
func (b *bridge) queue(l *tcpLink, p []byte) bool {
	if l.queued.Add(int64(len(p))) > int64(b.opts.MaxQueue) {
		return false
	}
	select {
	case l.out <- p:
		return true
	default:
		return false
	}
}

// send sends one message to a TLSZMQ client without waiting: a client that does not read
// loses it (the ROUTER's queue toward it is full), as it would over TCP.
func (b *bridge) send(sock *zmq.Socket, env [][]byte, payload []byte) {
	frames := make([]any, 0, len(env)+2)
	for _, f := range env {
		frames = append(frames, f)
	}
	if _, err := sock.SendMessageDontwait(append(frames, "", payload)...); err != nil {
		b.limit.Info("bridge: bytes for a TLSZMQ client dropped", "client", device.PrintableID(env[len(env)-1]), "reason", err)
	}
}
