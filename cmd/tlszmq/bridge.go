package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq/internal/zmqpoll"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cli"
)

// runBridge carries TCP byte streams as TLSZMQ frames, so that standard TLS tools meet TLSZMQ
// peers. The TLS bytes pass through untouched; the bridge holds no key.
//
//	-listen ADDR -to ENDPOINT    TCP clients (openssl s_client) reach the TLSZMQ server at
//	                             ENDPOINT: one DEALER socket per TCP connection, every read
//	                             leaves as one ["", bytes] message
//	-bind ENDPOINT -connect ADDR TLSZMQ clients (DEALER) reach the TCP TLS server at ADDR
//	                             (openssl s_server): one TCP connection per client envelope
func runBridge(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bridge")
	listen := fs.String("listen", "", "TCP address to accept TLS clients on, e.g. 127.0.0.1:4433")
	to := fs.String("to", "tcp://localhost:5556", "with -listen: the TLSZMQ server's endpoint")
	bind := fs.String("bind", "", "ZeroMQ endpoint to accept TLSZMQ clients on, e.g. tcp://*:5556")
	connect := fs.String("connect", "", "with -bind: the TCP TLS server's address, e.g. localhost:4433")
	if err := cli.Parse(fs, args, stderr); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	switch {
	case *listen != "" && *bind == "":
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "bridge: TCP %s → TLSZMQ %s\n", ln.Addr(), *to)
		return tcpToZMQ(ctx, ln, *to, log)
	case *bind != "" && *connect != "" && *listen == "":
		fmt.Fprintf(stdout, "bridge: TLSZMQ %s → TCP %s\n", *bind, *connect)
		return zmqToTCP(ctx, *bind, *connect, log)
	}
	return cli.Usagef("give either -listen (with -to) or -bind with -connect")
}

// tcpToZMQ accepts TCP connections and carries each one over a DEALER socket of its own.
func tcpToZMQ(ctx context.Context, ln net.Listener, endpoint string, log *slog.Logger) error {
	go func() { <-ctx.Done(); ln.Close() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := carry(ctx, conn, endpoint); err != nil {
				log.Info("bridge: connection ended", "peer", conn.RemoteAddr().String(), "reason", err)
			}
		}()
	}
}

// carry moves one TCP connection's bytes to a DEALER socket and back. The socket belongs to
// this goroutine; a reader goroutine hands TCP bytes over through a channel.
func carry(ctx context.Context, conn net.Conn, endpoint string) error {
	defer conn.Close()
	sock, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		return err
	}
	defer sock.Close()
	sock.SetLinger(500 * time.Millisecond)
	if err := sock.Connect(endpoint); err != nil {
		return err
	}
	in := make(chan []byte, 16)
	go func() {
		defer close(in)
		buf := make([]byte, 64<<10)
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				in <- append([]byte(nil), buf[:n]...)
			}
			if err != nil {
				return
			}
		}
	}()
	poller := zmq.NewPoller()
	poller.Add(sock, zmq.POLLIN)
	for ctx.Err() == nil {
		select {
		case b, ok := <-in:
			if !ok {
				return nil // the TCP side closed
			}
			if _, err := sock.SendMessage("", b); err != nil {
				return err
			}
			continue
		default:
		}
		msg, err := zmqpoll.Recv(poller, sock, 5*time.Millisecond)
		if err != nil {
			return err
		}
		if msg == nil {
			continue
		}
		if p := msg[len(msg)-1]; len(p) > 0 {
			if _, err := conn.Write(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// zmqToTCP accepts TLSZMQ clients on a ROUTER socket and opens one TCP connection per client
// envelope.
func zmqToTCP(ctx context.Context, endpoint, addr string, log *slog.Logger) error {
	sock, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		return err
	}
	defer sock.Close()
	sock.SetLinger(500 * time.Millisecond)
	if err := sock.Bind(endpoint); err != nil {
		return err
	}
	type chunk struct {
		env [][]byte
		b   []byte
	}
	back := make(chan chunk, 64)
	conns := map[string]net.Conn{}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	poller := zmq.NewPoller()
	poller.Add(sock, zmq.POLLIN)
	for ctx.Err() == nil {
		for drained := false; !drained; {
			select {
			case c := <-back:
				frames := make([]any, 0, len(c.env)+2)
				for _, f := range c.env {
					frames = append(frames, f)
				}
				if _, err := sock.SendMessage(append(frames, "", c.b)...); err != nil {
					log.Info("bridge: bytes for a TLSZMQ client dropped", "reason", err)
				}
			default:
				drained = true
			}
		}
		msg, err := zmqpoll.Recv(poller, sock, 5*time.Millisecond)
		if err != nil {
			return err
		}
		if msg == nil {
			continue
		}
		var env [][]byte
		for i, f := range msg {
			if len(f) == 0 {
				env = msg[:i]
				break
			}
		}
		if len(env) == 0 || len(msg) != len(env)+2 {
			continue
		}
		key := tlszmq.RouteKey(env)
		conn, ok := conns[key]
		if !ok {
			if conn, err = net.DialTimeout("tcp", addr, 5*time.Second); err != nil {
				log.Warn("bridge: no TCP connection", "to", addr, "reason", err)
				continue
			}
			conns[key] = conn
			go func(env [][]byte) {
				buf := make([]byte, 64<<10)
				for {
					n, err := conn.Read(buf)
					if n > 0 {
						back <- chunk{env, append([]byte(nil), buf[:n]...)}
					}
					if err != nil {
						return
					}
				}
			}(env)
		}
		if p := msg[len(msg)-1]; len(p) > 0 {
			if _, err := conn.Write(p); err != nil {
				log.Info("bridge: TCP write failed", "to", addr, "reason", err)
			}
		}
	}
	return nil
}
