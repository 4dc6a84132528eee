package tlszmq

import (
	"errors"
	"fmt"
	"log/slog"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq/internal/zapauth"
)

// ServerOptions.Allow and Deny are enforced by package internal/zapauth, with ZeroMQ's own
// authentication (ZAP) under the NULL mechanism and the library's own ZAP handler: its
// package comment says how, and why not zmq4's AuthAllow. This file is the server's side.

// newZAPPolicy checks ServerOptions.Allow and Deny; it returns nil when both are empty (no ZAP
// at all).
func newZAPPolicy(allow, deny []string, log *slog.Logger) (*zapauth.Policy, error) {
	p, err := zapauth.NewPolicy(allow, deny, log)
	if err != nil {
		// zapauth's text starts with the field: ServerOptions.Allow: "x" is not ...
		return nil, fmt.Errorf("%w: ServerOptions.%w", ErrInvalidConfig, err)
	}
	return p, nil
}

// attachZAP gives the server's socket the policy's ZAP domain, before the socket binds or
// connects. A ZAP handler of the application's own makes it fail with ErrInvalidConfig.
func attachZAP(p *zapauth.Policy, sock *zmq.Socket) error {
	err := p.Attach(sock)
	if errors.Is(err, zapauth.ErrHandlerTaken) {
		return fmt.Errorf("%w: ServerOptions.Allow and Deny need the library's ZAP handler: %w", ErrInvalidConfig, err)
	}
	return err
}

// closeSocket closes the server's socket, then takes its lists from the ZAP handler.
func (s *Server) closeSocket() error { return zapauth.CloseSocket(s.sock, s.zap) }
