package tlszmq_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/tlszmq/tlszmq"
)

// A client and a server engine talking in memory: what GetData returns would travel as ZeroMQ
// messages, and PutData takes them at the other end.
func ExampleEngine() {
	server, err := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{
		CertFile: "testdata/certs/server.crt",
		KeyFile:  "testdata/certs/server.key",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer server.Close()
	client, err := tlszmq.NewContext(tlszmq.RoleClient, &tlszmq.Config{
		CAFile:     "testdata/certs/ca.crt",
		ServerName: "localhost",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	c, _ := tlszmq.NewClientEngine(client)
	defer c.Close()
	s, _ := tlszmq.NewServerEngine(server)
	defer s.Close()

	// The client's first write starts the handshake; the data waits for it to finish.
	c.Write([]byte("hello world!"))
	for !s.CanRecv() {
		if c.NeedsWrite() {
			s.PutData(c.GetData()) // client → server, one ZeroMQ message
		}
		if s.NeedsWrite() {
			c.PutData(s.GetData()) // server → client
		}
	}
	msg, _ := s.Read()
	fmt.Printf("Received: %s\n", msg)

	s.Write([]byte("Got it!"))
	c.PutData(s.GetData())
	reply, _ := c.Read()
	fmt.Printf("Received - [%s]\n", reply)
	fmt.Println(c.ConnectionState().VersionName)
	// Output:
	// Received: hello world!
	// Received - [Got it!]
	// TLSv1.3
}

// A Context is made once per program and role; every failure quotes OpenSSL.
func ExampleNewContext() {
	_, err := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{
		CertFile: "testdata/certs/legacy.crt", // the C++ original's 1024-bit certificate
		KeyFile:  "testdata/certs/legacy.key",
	})
	fmt.Println(err)

	ctx, err := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{
		CertFile:      "testdata/certs/legacy.crt",
		KeyFile:       "testdata/certs/legacy.key",
		SecurityLevel: 1, // lowered explicitly for the legacy certificate
	})
	fmt.Println(err)
	ctx.Close()
	// Output:
	// tlszmq: loading the certificate file testdata/certs/legacy.crt: SSL routines: ee key too small
	// <nil>
}

// Errors carry the alert and the certificate verification result.
func ExampleCertificateVerificationError() {
	server, _ := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{
		CertFile: "testdata/certs/wronghost.crt", KeyFile: "testdata/certs/wronghost.key"})
	defer server.Close()
	client, _ := tlszmq.NewContext(tlszmq.RoleClient, &tlszmq.Config{
		CAFile: "testdata/certs/ca.crt", ServerName: "localhost"})
	defer client.Close()
	c, _ := tlszmq.NewClientEngine(client)
	defer c.Close()
	s, _ := tlszmq.NewServerEngine(server)
	defer s.Close()

	c.Update()
	for c.Err() == nil && !c.HandshakeComplete() {
		s.PutData(c.GetData())
		c.PutData(s.GetData())
	}
	var v *tlszmq.CertificateVerificationError
	if errors.As(c.Err(), &v) {
		fmt.Println(v.Code, v.Reason)
	}
	// Output:
	// 62 hostname mismatch
}

// A server and a client over ZeroMQ: the C++ peers' exchange, on inproc here; any transport
// works the same.
func ExampleServer() {
	serverCtx, err := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{
		CertFile: "testdata/certs/server.crt", KeyFile: "testdata/certs/server.key"})
	if err != nil {
		log.Fatal(err)
	}
	defer serverCtx.Close()
	srv, err := tlszmq.NewServer(serverCtx, "inproc://example-server",
		tlszmq.SinglePart(func(_ context.Context, peer *tlszmq.Peer, req []byte) ([]byte, error) {
			fmt.Printf("Received: %s\n", req)
			return []byte("Got it!"), nil
		}), &tlszmq.ServerOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error)
	go func() { served <- srv.Serve(ctx) }()

	clientCtx, _ := tlszmq.NewContext(tlszmq.RoleClient, &tlszmq.Config{
		CAFile: "testdata/certs/ca.crt", ServerName: "localhost"})
	defer clientCtx.Close()
	c, _ := tlszmq.NewClient(clientCtx, "inproc://example-server", &tlszmq.ClientOptions{Pattern: tlszmq.REQ})
	reply, err := c.Request(context.Background(), []byte("hello world!"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Received - [%s]\n", reply[0])
	c.Close()
	stop()
	<-served
	fmt.Println(srv.Stats().HandshakesDone, "handshake")
	// Output:
	// Received: hello world!
	// Received - [Got it!]
	// 1 handshake
}

// Multi-part messages between tlszmq peers, pipelined on a DEALER socket.
func ExampleClient() {
	serverCtx, _ := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{
		CertFile: "testdata/certs/server-ec.crt", KeyFile: "testdata/certs/server-ec.key"})
	defer serverCtx.Close()
	srv, _ := tlszmq.NewServer(serverCtx, "inproc://example-client",
		func(_ context.Context, _ *tlszmq.Peer, req [][]byte) ([][]byte, error) {
			return append([][]byte{[]byte("parts:")}, req...), nil
		}, &tlszmq.ServerOptions{Logger: slog.New(slog.DiscardHandler)})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go srv.Serve(ctx)

	clientCtx, _ := tlszmq.NewContext(tlszmq.RoleClient, &tlszmq.Config{
		CAFile: "testdata/certs/ca.crt", ServerName: "localhost"})
	defer clientCtx.Close()
	c, _ := tlszmq.NewClient(clientCtx, "inproc://example-client", &tlszmq.ClientOptions{Pattern: tlszmq.DEALER})
	defer c.Close()
	c.Send(ctx, []byte("one"), []byte("two"))
	c.Send(ctx, []byte("three"))
	for range 2 {
		msg, _ := c.Recv(ctx)
		fmt.Printf("%q\n", msg)
	}
	// Output:
	// ["parts:" "one" "two"]
	// ["parts:" "three"]
}

// Streaming small messages: Queue gathers them, Flush sends them in one TLS write and one
// ZeroMQ message, and the server answers the batch in one reply.
func ExampleClient_Queue() {
	serverCtx, _ := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{
		CertFile: "testdata/certs/server-ec.crt", KeyFile: "testdata/certs/server-ec.key"})
	defer serverCtx.Close()
	total := 0
	srv, _ := tlszmq.NewServer(serverCtx, "inproc://example-queue",
		tlszmq.SinglePart(func(_ context.Context, _ *tlszmq.Peer, req []byte) ([]byte, error) {
			if total += len(req); string(req) == "done" {
				return []byte(fmt.Sprint(total, " bytes")), nil
			}
			return nil, nil // no answer to the others
		}), &tlszmq.ServerOptions{Logger: slog.New(slog.DiscardHandler)})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go srv.Serve(ctx)

	clientCtx, _ := tlszmq.NewContext(tlszmq.RoleClient, &tlszmq.Config{
		CAFile: "testdata/certs/ca.crt", ServerName: "localhost"})
	defer clientCtx.Close()
	c, _ := tlszmq.NewClient(clientCtx, "inproc://example-queue", &tlszmq.ClientOptions{Pattern: tlszmq.DEALER})
	defer c.Close()
	for range 1000 {
		c.Queue(ctx, []byte("sixty-five bytes of something that matters to somebody, somewhere"))
	}
	c.Send(ctx, []byte("done")) // Send flushes what Queue gathered, then itself
	reply, _ := c.Recv(ctx)
	fmt.Printf("%s\n", reply[0])
	// Output:
	// 65004 bytes
}

// A client that starts over by itself after a failure: the failed call reports its error, the
// next one reconnects (resuming the session where the server allows) and goes through.
func ExampleClientOptions_reconnect() {
	serverCtx, _ := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{
		CertFile: "testdata/certs/server-ec.crt", KeyFile: "testdata/certs/server-ec.key"})
	defer serverCtx.Close()
	echo := func(_ context.Context, _ *tlszmq.Peer, req [][]byte) ([][]byte, error) { return req, nil }
	quiet := &tlszmq.ServerOptions{Logger: slog.New(slog.DiscardHandler)}

	clientCtx, _ := tlszmq.NewContext(tlszmq.RoleClient, &tlszmq.Config{
		CAFile: "testdata/certs/ca.crt", ServerName: "localhost"})
	defer clientCtx.Close()
	c, _ := tlszmq.NewClient(clientCtx, "inproc://example-reconnect",
		&tlszmq.ClientOptions{Reconnect: true, Timeout: 300 * time.Millisecond})
	defer c.Close()

	// No server yet: the request fails with ErrTimeout.
	_, err := c.Request(context.Background(), []byte("first"))
	fmt.Println(errors.Is(err, tlszmq.ErrTimeout))

	srv, _ := tlszmq.NewServer(serverCtx, "inproc://example-reconnect", echo, quiet)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go srv.Serve(ctx)
	reply, err := c.Request(context.Background(), []byte("second"))
	fmt.Printf("%s %v\n", reply[0], err)
	// Output:
	// true
	// second <nil>
}

// A transport loop needs one value from the engine after each call: its State.
func ExampleEngine_State() {
	server, _ := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{
		CertFile: "testdata/certs/server.crt", KeyFile: "testdata/certs/server.key"})
	defer server.Close()
	client, _ := tlszmq.NewContext(tlszmq.RoleClient, &tlszmq.Config{
		CAFile: "testdata/certs/ca.crt", ServerName: "localhost"})
	defer client.Close()
	c, _ := tlszmq.NewClientEngine(client)
	defer c.Close()
	s, _ := tlszmq.NewServerEngine(server)
	defer s.Close()

	c.Write([]byte("hello")) // queued until the handshake is done
	for st := c.State(); st.Err == nil && st.Pending > 0; st = c.State() {
		s.PutData(c.GetData()) // what the client sends, the server takes
		if s.State().Pending > 0 {
			c.PutData(s.GetData())
		}
	}
	st := s.State()
	msg, _ := s.Read()
	fmt.Println(st.HandshakeDone, st.Readable, string(msg))
	_, err := s.Read()
	fmt.Println(errors.Is(err, tlszmq.ErrWouldBlock))
	// Output:
	// true 5 hello
	// true
}

// One client Context for many servers: each engine has a server name and protocols of its own.
// Once the handshake is done, TakeData and PutDataInPlace move a message with no copy of the
// engines': the frame the client hands out is decrypted where it lies.
func ExampleNewEngine() {
	server, _ := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{
		CertFile: "testdata/certs/server.crt", KeyFile: "testdata/certs/server.key",
		NextProtos: []string{"my-protocol/1"}})
	defer server.Close()
	client, _ := tlszmq.NewContext(tlszmq.RoleClient, &tlszmq.Config{CAFile: "testdata/certs/ca.crt"})
	defer client.Close()
	c, err := tlszmq.NewEngine(client, tlszmq.EngineOptions{ServerName: "localhost", NextProtos: []string{"my-protocol/1"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	s, _ := tlszmq.NewServerEngine(server)
	defer s.Close()

	c.Update() // the ClientHello
	for st := c.State(); st.Err == nil && st.Pending > 0; st = c.State() {
		s.PutData(c.GetData())
		if s.State().Pending > 0 {
			c.PutData(s.GetData())
		}
	}
	c.Write([]byte("no copies"))
	frame := c.TakeData() // the client's storage, now the transport's
	msg, _ := s.PutDataInPlace(frame)
	fmt.Println(c.ConnectionState().NegotiatedProtocol, string(msg))
	// Output:
	// my-protocol/1 no copies
}
