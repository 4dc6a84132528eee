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

	"github.com/tlszmq/tlszmq/internal/zapauth"
)

// pins assigns each client (by route key) to one backend peer (by routing id), taking the
// backends in turn, and bounds what it holds: at most max clients (the least recently used
// goes first), at most perConn of them through one frontend connection (that connection's
// least recently used goes first, so that one connection inventing envelopes only evicts its
// own), and at most maxBackends backends. A backend found gone takes its clients' pins with it.
type pins struct {
	max, perConn, maxBackends int
	backends                  map[string]int // routing id → clients pinned to it
	order                     []string       // backends in the order they announced themselves
	next                      int            // the next backend's turn, an index into order
	clients                   map[string]*list.Element
	lru                       *list.List            // *pin, most recent first
	conns                     map[string]*list.List // connection → its *pin, most recent first
}

type pin struct {
	client, backend, conn string
	lru, inConn           *list.Element
}

func newPins(lim Limits) *pins {
	return &pins{max: lim.MaxClients, perConn: lim.MaxClientsPerConn, maxBackends: lim.MaxBackends,
		backends: map[string]int{}, clients: map[string]*list.Element{}, lru: list.New(), conns: map[string]*list.List{}}
}

// errTooManyBackends refuses an announcement past Limits.MaxBackends.
var errTooManyBackends = errors.New("too many backends: the announcement is ignored (Limits.MaxBackends, -max-backends)")

// announce records a backend that has connected: true if it is new, an error if the table is
// full.
func (p *pins) announce(id string) (bool, error) {
	if _, ok := p.backends[id]; ok {
		return false, nil
	}
	if len(p.order) >= p.maxBackends {
		return false, errTooManyBackends
	}
	p.backends[id] = 0
	p.order = append(p.order, id)
	return true, nil
}

// forget drops a backend that is gone, and its clients' pins.
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
		if pn := e.Value.(*pin); pn.backend == id {
			p.drop(pn)
		}
		e = next
	}
}

// drop removes one pin.
func (p *pins) drop(pn *pin) {
	delete(p.clients, pn.client)
	p.lru.Remove(pn.lru)
	if l := p.conns[pn.conn]; l != nil {
		l.Remove(pn.inConn)
		if l.Len() == 0 {
			delete(p.conns, pn.conn)
		}
	}
	if _, ok := p.backends[pn.backend]; ok {
		p.backends[pn.backend]--
	}
}

// errNoBackend is returned when no backend has announced itself yet.
var errNoBackend = errors.New("no backend has connected and announced itself yet")

// backendFor returns the backend of a client that came through conn, pinning it to the next
// backend in turn if it has none. Taking turns, rather than the backend with the fewest
// clients, means that a backend that has just connected gets its share of the new clients,
// not all of them.
func (p *pins) backendFor(client, conn string) (string, error) {
	if e, ok := p.clients[client]; ok {
		pn := e.Value.(*pin)
		p.lru.MoveToFront(pn.lru)
		p.conns[pn.conn].MoveToFront(pn.inConn)
		return pn.backend, nil
	}
	if len(p.order) == 0 {
		return "", errNoBackend
	}
	p.next %= len(p.order)
	backend := p.order[p.next]
	p.next++
	if l := p.conns[conn]; l != nil && l.Len() >= p.perConn {
		p.drop(l.Back().Value.(*pin))
	}
	for p.lru.Len() >= p.max {
		p.drop(p.lru.Back().Value.(*pin))
	}
	l := p.conns[conn]
	if l == nil {
		l = list.New()
		p.conns[conn] = l
	}
	pn := &pin{client: client, backend: backend, conn: conn}
	pn.lru = p.lru.PushFront(pn)
	pn.inConn = l.PushFront(pn)
	p.clients[client] = pn.lru
	p.backends[backend]++
	return backend, nil
}

// pinnedTo returns the backend a client is pinned to, without touching it; "" if none.
func (p *pins) pinnedTo(client string) string {
	if e, ok := p.clients[client]; ok {
		return e.Value.(*pin).backend
	}
	return ""
}

// count returns how many backends are known.
func (p *pins) count() int { return len(p.order) }

// len returns how many clients are pinned.
func (p *pins) len() int { return p.lru.Len() }

// queueDepth is the high-water mark of the device's sockets: how many messages may wait for
// one peer (ZeroMQ's default is 1,000). A ROUTER drops what goes beyond it, and a frame
// dropped from a TLS stream breaks the session (the peer fails the next record's MAC), so it
// is as deep as a tlszmq server's.
const queueDepth = 100000

// newFrontend makes a device's client-facing ROUTER (newRouter), with the policy of
// lim.Allow and lim.Deny attached before it binds (nil without lists), refusals logged to log.
// Whoever closes the socket releases the policy after it (zapauth.CloseSocket).
func newFrontend(endpoint string, mandatory bool, lim Limits, log *slog.Logger) (*zmq.Socket, string, *zapauth.Policy, error) {
	policy, err := zapauth.NewPolicy(lim.Allow, lim.Deny, log)
	if err != nil {
		return nil, "", nil, fmt.Errorf("device: Limits.%w", err)
	}
	s, bound, err := newRouter(endpoint, mandatory, policy)
	if err != nil {
		return nil, "", nil, err
	}
	if policy != nil {
		policy.SetName(bound)
	}
	return s, bound, policy, nil
}

// newRouter makes a ROUTER that binds endpoint. A mandatory one reports sends to peers that
// are gone (EHOSTUNREACH) instead of dropping them; libzmq's proxy stops at such an error, so
// the proxy's sockets are not mandatory. A policy (nil: none) is attached before the socket
// binds; on failure the socket is closed and the policy released.
func newRouter(endpoint string, mandatory bool, policy *zapauth.Policy) (*zmq.Socket, string, error) {
	s, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		return nil, "", err
	}
	if policy != nil {
		if err := policy.Attach(s); err != nil {
			zapauth.CloseSocket(s, policy)
			return nil, "", fmt.Errorf("device: Allow and Deny on %s: %w", endpoint, err)
		}
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
		zapauth.CloseSocket(s, policy)
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

// PrintableID renders a routing id for logs: as it is if it is printable ASCII, else in hex.
func PrintableID(id []byte) string { return printable(string(id)) }

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
