package device

import (
	"context"
	"fmt"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq/internal/zmqpoll"
)

// WorkerFunc answers one plaintext request that a terminating device passed on.
type WorkerFunc func(identity []byte, subject string, request [][]byte) [][]byte

// RunWorker connects to a terminating device's backend, announces itself and answers requests
// until ctx ends. Each reply goes back on the socket the request came in on, with the
// request's token (16 random bytes) as it came: the device takes a reply only from the worker
// it sent the request to.
func RunWorker(ctx context.Context, endpoint string, h WorkerFunc) error {
	sock, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		return err
	}
	defer sock.Close()
	sock.SetLinger(500 * time.Millisecond)
	if err := sock.SetProbeRouter(1); err != nil {
		return err
	}
	if err := sock.Connect(endpoint); err != nil {
		return fmt.Errorf("worker: connecting to %s: %w", endpoint, err)
	}
	poller := zmq.NewPoller()
	poller.Add(sock, zmq.POLLIN)
	for ctx.Err() == nil {
		msg, err := zmqpoll.Recv(poller, sock, 50*time.Millisecond)
		if err != nil {
			return err
		}
		if msg == nil {
			continue
		}
		// [device, token, "", identity, subject, part...]
		if len(msg) < 5 || len(msg[2]) != 0 {
			continue
		}
		reply := h(msg[3], string(msg[4]), msg[5:])
		frames := []any{msg[0], msg[1], ""}
		for _, p := range reply {
			frames = append(frames, p)
		}
		if _, err := sock.SendMessage(frames...); err != nil {
			return fmt.Errorf("worker: replying: %w", err)
		}
	}
	return nil
}
