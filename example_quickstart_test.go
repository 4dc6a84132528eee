package tlszmq_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"strings"

	"github.com/tlszmq/tlszmq"
)

// The quick start: a server and a client over ZeroMQ on loopback, with the test certificates.
// The server binds a port the system chooses; the client, a REQ socket as the C++ client's,
// verifies the server's certificate against the CA and the endpoint's host, 127.0.0.1.
func Example() {
	serverCtx, err := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{
		CertFile: "testdata/certs/server.crt",
		KeyFile:  "testdata/certs/server.key",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer serverCtx.Close()
	srv, err := tlszmq.NewServer(serverCtx, "tcp://127.0.0.1:*",
		func(_ context.Context, peer *tlszmq.Peer, req [][]byte) ([][]byte, error) {
			fmt.Printf("Received: %s\n", req[0])
			return [][]byte{[]byte("Got it!")}, nil
		}, &tlszmq.ServerOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }() // until ctx ends: then close_notify to every session

	clientCtx, err := tlszmq.NewContext(tlszmq.RoleClient, &tlszmq.Config{
		CAFile: "testdata/certs/ca.crt",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer clientCtx.Close()
	c, err := tlszmq.NewClient(clientCtx, srv.Endpoint(), nil)
	if err != nil {
		log.Fatal(err)
	}
	reply, err := c.Request(context.Background(), []byte("hello world!"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Received - [%s]\n", reply[0])
	st := c.ConnectionState()
	fmt.Println(st.VersionName, "verified:", st.Verified)
	c.Close() // close_notify; a tlszmq server answers with its own, which Close waits for

	cancel()
	fmt.Println("Serve:", <-served)
	// Output:
	// Received: hello world!
	// Received - [Got it!]
	// TLSv1.3 verified: true
	// Serve: <nil>
}

// A Client's error names the operation and the endpoint, with one "tlszmq:" prefix; the cause
// is reachable through it: here a server certificate from a CA the client does not trust.
func ExampleOpError() {
	serverCtx, _ := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{
		CertFile: "testdata/certs/server.crt", KeyFile: "testdata/certs/server.key"})
	defer serverCtx.Close()
	srv, _ := tlszmq.NewServer(serverCtx, "inproc://example-operror",
		func(_ context.Context, _ *tlszmq.Peer, req [][]byte) ([][]byte, error) { return req, nil },
		&tlszmq.ServerOptions{Logger: slog.New(slog.DiscardHandler)})
	defer srv.Close()
	go srv.Serve(context.Background())

	clientCtx, _ := tlszmq.NewContext(tlszmq.RoleClient, &tlszmq.Config{
		CAFile: "testdata/certs/other-ca.crt", ServerName: "localhost"})
	defer clientCtx.Close()
	c, _ := tlszmq.NewClient(clientCtx, "inproc://example-operror", nil)
	defer c.Close()

	_, err := c.Request(context.Background(), []byte("hello world!"))
	var op *tlszmq.OpError
	if errors.As(err, &op) {
		fmt.Printf("%s %s\n", op.Op, op.Endpoint)
	}
	var v *tlszmq.CertificateVerificationError
	if errors.As(err, &v) {
		cert := v.UnverifiedChain[0]
		fmt.Printf("%d %s: subject %s, issuer %s\n", v.Code, v.Reason, cert.Subject.CommonName, cert.Issuer.CommonName)
	}
	fmt.Println(strings.Count(err.Error(), "tlszmq:"), "prefix")
	// Output:
	// handshake with inproc://example-operror
	// 20 unable to get local issuer certificate: subject localhost, issuer tlszmq test CA
	// 1 prefix
}
