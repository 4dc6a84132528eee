// Package device holds tlsdevice's modes: the C++ device's pass-through proxy (and a variant
// that pins every client to one server), the TLS-terminating device that hands plaintext to
// backend workers, and the originating device that encrypts plaintext clients' traffic
// towards a TLS server.
package device

import (
	"container/list"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// pins assigns each client (by route key) to one backend peer (by routing id), the one with
// the fewest clients when the client first comes, and keeps at most max assignments (the
// least recently used goes first).
type pins struct {
	max      int
	backends map[string]int // routing id → clients assigned
	order    []string       // backends in the order they announced themselves
	clients  map[string]*list.Element
	lru      *list.List // *pin, most recent first
}

type pin struct{ client, backend string }

func newPins(max int) *pins {
	return &pins{max: max, backends: map[string]int{}, clients: map[string]*list.Element{}, lru: list.New()}
}

// announce records a backend that has connected.
func (p *pins) announce(id string) bool {
	if _, ok := p.backends[id]; ok {
		return false
	}
	p.backends[id] = 0
	p.order = append(p.order, id)
	return true
}

// forget drops a backend that is gone, and its clients' assignments.
func (p *pins) forget(id string) {
	delete(p.backends, id)
	for i, b := range p.order {
		if b == id {
			p.order = append(p.order[:i], p.order[i+1:]...)
			break
		}
	}
	for e := p.lru.Front(); e != nil; {
		next := e.Next()
		if e.Value.(*pin).backend == id {
			delete(p.clients, e.Value.(*pin).client)
			p.lru.Remove(e)
		}
		e = next
	}
}

// errNoBackend is returned when no backend has announced itself yet.
var errNoBackend = errors.New("no backend has connected and announced itself yet")

// backendFor returns the backend of a client, assigning one if it has none.
func (p *pins) backendFor(client string) (string, error) {
	if e, ok := p.clients[client]; ok {
		p.lru.MoveToFront(e)
		return e.Value.(*pin).backend, nil
	}
	if len(p.order) == 0 {
		return "", errNoBackend
	}
	best := p.order[0]
	for _, b := range p.order[1:] {
		if p.backends[b] < p.backends[best] {
			best = b
		}
	}
	for p.lru.Len() >= p.max {
		old := p.lru.Remove(p.lru.Back()).(*pin)
		delete(p.clients, old.client)
		p.backends[old.backend]--
	}
	p.clients[client] = p.lru.PushFront(&pin{client, best})
	p.backends[best]++
	return best, nil
}

// count returns how many backends are known.
func (p *pins) count() int { return len(p.order) }

// queueDepth is the high-water mark of the device's sockets: how many messages may wait for
// one peer (ZeroMQ's default is 1,000). A ROUTER drops what goes beyond it, and a frame
// dropped from a TLS stream breaks the session (the peer fails the next record's MAC), so it
// is as deep as a tlszmq server's.
const queueDepth = 100000

// newRouter makes a ROUTER that binds endpoint. A mandatory one reports sends to peers that
// are gone (EHOSTUNREACH) instead of dropping them; libzmq's proxy stops at such an error, so
// the proxy's sockets are not mandatory.
func newRouter(endpoint string, mandatory bool) (*zmq.Socket, string, error) {
	s, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		return nil, "", err
	}
	if err = s.SetLinger(500 * time.Millisecond); err == nil && mandatory {
		err = s.SetRouterMandatory(1)
	}
	if err == nil {
		err = s.SetSndhwm(queueDepth)
	}
	if err == nil {
		err = s.Bind(endpoint)
	}
	if err != nil {
		s.Close()
		return nil, "", fmt.Errorf("binding %s: %w", endpoint, err)
	}
	bound, err := s.GetLastEndpoint()
	if err != nil {
		bound = endpoint
	}
	return s, bound, nil
}

// isHostUnreachable reports a ROUTER_MANDATORY send to a peer that is gone.
func isHostUnreachable(err error) bool { return errors.Is(err, zmq.EHOSTUNREACH) }

// printable renders a routing id for logs.
func printable(id string) string {
	if id != "" && strings.IndexFunc(id, func(r rune) bool { return r < 0x20 || r > 0x7e }) < 0 {
		return id
	}
	return fmt.Sprintf("0x%x", id)
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}
