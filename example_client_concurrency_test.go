package tlszmq_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tlszmq/tlszmq"
)

// Goroutines sharing one DEALER client: their Requests pipeline on one TLS session, and each
// gets its own reply. A Request that gives up (here: a deadline too short for a slow answer)
// does not disturb the next: its late reply is dropped when it comes.
func ExampleClient_concurrent() {
	serverCtx, _ := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{
		CertFile: "testdata/certs/server-ec.crt", KeyFile: "testdata/certs/server-ec.key"})
	defer serverCtx.Close()
	srv, _ := tlszmq.NewServer(serverCtx, "inproc://example-concurrent",
		func(_ context.Context, _ *tlszmq.Peer, req [][]byte) ([][]byte, error) {
			if string(req[0]) == "slow" {
				time.Sleep(300 * time.Millisecond)
			}
			return append([][]byte{[]byte("re:")}, req...), nil
		}, &tlszmq.ServerOptions{Logger: slog.New(slog.DiscardHandler)})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go srv.Serve(ctx)

	clientCtx, _ := tlszmq.NewContext(tlszmq.RoleClient, &tlszmq.Config{
		CAFile: "testdata/certs/ca.crt", ServerName: "localhost"})
	defer clientCtx.Close()
	c, _ := tlszmq.NewClient(clientCtx, "inproc://example-concurrent", &tlszmq.ClientOptions{Pattern: tlszmq.DEALER})
	defer c.Close()

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err := c.Request(short, []byte("slow"))
	cancel()
	fmt.Println("slow:", err != nil)

	replies := make([]string, 4)
	var wg sync.WaitGroup
	for i := range replies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reply, err := c.Request(ctx, []byte(fmt.Sprint("caller ", i)))
			replies[i] = fmt.Sprintf("%q %v", reply, err)
		}()
	}
	wg.Wait()
	for _, r := range replies {
		fmt.Println(r)
	}
	// Output:
	// slow: true
	// ["re:" "caller 0"] <nil>
	// ["re:" "caller 1"] <nil>
	// ["re:" "caller 2"] <nil>
	// ["re:" "caller 3"] <nil>
}
