package tlszmq

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// A server whose ZeroMQ context is terminated under it (zmq.Term) returns from Serve with an
// error that says so, instead of waiting on a socket that can no longer be asked. It runs in a
// child process: terminating the context ends every socket of the process.
func TestServeEndsWhenZeroMQIsTerminated(t *testing.T) {
	if os.Getenv("TLSZMQ_TERM_CHILD") == "1" {
		serveUntilTerm(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServeEndsWhenZeroMQIsTerminated$", "-test.v")
	cmd.Env = append(os.Environ(), "TLSZMQ_TERM_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Serve: tlszmq: serving") || !strings.Contains(string(out), "Context was terminated") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func serveUntilTerm(t *testing.T) {
	srv, err := NewServer(mustContext(t, RoleServer, serverConfig("server-ec")), "tcp://127.0.0.1:*", echo, &ServerOptions{Logger: quietLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	go zmq.Term() // returns once every socket is closed: not waited for
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Serve returned nil")
		}
		t.Logf("Serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running 10s after zmq.Term")
	}
}
