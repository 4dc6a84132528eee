// Package zapauth restricts the peers of a ZeroMQ socket by IP address (allow and deny lists)
// with ZeroMQ's own authentication, ZAP (RFC 27, ZAP 1.0), under the NULL mechanism. It
// enforces tlszmq.ServerOptions.Allow and Deny, and tlsdevice's -allow and -deny on the
// device's client-facing socket in every mode.
//
// A socket with lists gets a ZAP domain of its own ("tlszmq-<n>", Policy.Attach), and libzmq
// then asks the ZAP handler bound at inproc://zeromq.zap.01, in the ZeroMQ context the
// library's sockets use (zmq4's default), about every peer before the peer's connection
// carries a message. Sockets without a ZAP domain are not asked about.
//
// The handler is the package's own, not zmq4's AuthStart/AuthAllow/AuthDeny: zmq4's handler
// reads package-level maps that AuthAllow and AuthDeny write without synchronisation (a data
// race as soon as a second socket adds its lists while the handler runs), and it has no way to
// remove a closed socket's lists. This one keeps one policy per ZAP domain in a
// mutex-protected map, runs while at least one policy is attached (a reference count), and
// owns its ZeroMQ socket on its goroutine: a REP at inproc://zeromq.zap.01, waited for in Go's
// netpoller, so that stopping it is a wake-up rather than a message. There is one handler per
// process, shared by every package that uses this one. An application that binds its own ZAP handler in that context (zmq4.AuthStart, say)
// cannot use the lists: Attach fails then (ErrHandlerTaken), rather than let everyone in.
//
// A policy is released (Policy.Release) after its socket is closed, never before: libzmq
// admits a peer under NULL when no handler answers, so a socket still open after its policy
// left the handler would let everyone in once the handler stops.
package zapauth

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq/internal/zmqpoll"
)

// Endpoint is where libzmq looks for the ZAP handler (RFC 27).
const Endpoint = "inproc://zeromq.zap.01"

// domainPrefix starts the ZAP domains of the package's policies; other domains are not theirs.
const domainPrefix = "tlszmq-"

// ErrHandlerTaken is the error Attach returns, wrapped, when the ZAP handler's endpoint is
// bound by someone else: the application runs a ZAP handler of its own.
var ErrHandlerTaken = errors.New("the ZAP handler at " + Endpoint + " is taken")

// List names one of a policy's lists: the one that refused a peer.
type List int

// The lists.
const (
	Allow    List = iota // the peer is not in the allow list
	Deny                 // the peer is in the deny list
	NumLists             // how many lists there are
)

// String returns the list's name as counters and log lines have it: "allow" or "deny".
func (l List) String() string {
	switch l {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return fmt.Sprintf("List(%d)", int(l))
}

// option is the list's name as an option field: "Allow" or "Deny".
func (l List) option() string {
	if l == Deny {
		return "Deny"
	}
	return "Allow"
}

// EntryError is NewPolicy's error for an entry that is neither an IP address nor a CIDR prefix.
// Its text starts with the list as an option field names it: `Allow: "x" is not ...`.
type EntryError struct {
	List  List   // the list the entry is in
	Entry string // the entry, as given
}

// Error says which entry of which list is bad.
func (e *EntryError) Error() string {
	return fmt.Sprintf("%s: %q is not an IP address or CIDR prefix", e.List.option(), e.Entry)
}

// Policy is one socket's lists, and what it counts and logs of their refusals. Its methods
// are safe for concurrent use; those that read it work on a nil Policy too.
type Policy struct {
	allow, deny []netip.Prefix
	refused     [NumLists]atomic.Int64
	log         *slog.Logger

	mu       sync.Mutex // guards what follows: the handler's goroutine logs, the owner names
	name     string     // the server or endpoint, for the log lines
	logged   time.Time  // when a refusal was last logged
	unlogged int        // refusals since
	domain   string     // the ZAP domain, while registered
	attached bool
	released bool
}

// NewPolicy checks the lists: IP addresses (IPv4 or IPv6, no zone) and CIDR prefixes, spaces
// around them ignored. It returns nil, nil when both are empty: no ZAP at all. A bad entry
// gives an *EntryError. Refusals are logged to log (nothing if nil).
func NewPolicy(allow, deny []string, log *slog.Logger) (*Policy, error) {
	if len(allow) == 0 && len(deny) == 0 {
		return nil, nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Policy{log: log}
	var err error
	if p.allow, err = parseList(Allow, allow); err != nil {
		return nil, err
	}
	if p.deny, err = parseList(Deny, deny); err != nil {
		return nil, err
	}
	return p, nil
}

// parseList reads the entries of one list.
func parseList(list List, entries []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, e := range entries {
		s := strings.TrimSpace(e)
		var p netip.Prefix
		if strings.Contains(s, "/") {
			pp, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, &EntryError{List: list, Entry: e}
			}
			p = pp.Masked()
			if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
				// An IPv4-mapped prefix (::ffff:10.0.0.0/104): peers' addresses are
				// compared unmapped, so the prefix is too.
				p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
			}
		} else {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" {
				return nil, &EntryError{List: list, Entry: e}
			}
			a = a.Unmap()
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p)
	}
	return out, nil
}

// contains reports whether addr is in one of the prefixes.
func contains(list []netip.Prefix, addr netip.Addr) bool {
	for _, p := range list {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// check decides a peer's address: admitted, or refused by which list. Deny wins over Allow;
// an address that is not an IP address (an ipc:// peer's) is in no list.
func (p *Policy) check(address string) (ok bool, list List) {
	a, err := netip.ParseAddr(address)
	valid := err == nil
	if valid {
		a = a.WithZone("").Unmap()
	}
	if valid && contains(p.deny, a) {
		return false, Deny
	}
	if len(p.allow) > 0 && !(valid && contains(p.allow, a)) {
		return false, Allow
	}
	return true, 0
}

// refuse counts a refusal and logs it: one line a second at most, with the number of
// refusals it stands for, since a refused peer reconnects again and again.
func (p *Policy) refuse(address string, list List) {
	p.mu.Lock()
	p.unlogged++
	if now := time.Now(); now.Sub(p.logged) >= time.Second {
		p.log.Warn("tlszmq: connection refused", "server", p.name, "address", address, "list", list.String(),
			"refused since the last line", p.unlogged)
		p.logged, p.unlogged = now, 0
	}
	p.mu.Unlock()
	// The counter after the line: whoever sees it move finds the line.
	p.refused[list].Add(1)
}

// Attach registers the policy under a new ZAP domain, starting the handler if it is the first
// policy, and gives the domain to sock: call it before sock binds or connects. A policy is
// attached once. If the handler's endpoint is taken, the error wraps ErrHandlerTaken. After a
// successful Attach, close the socket, then call Release.
func (p *Policy) Attach(sock *zmq.Socket) error {
	p.mu.Lock()
	if p.attached || p.released {
		p.mu.Unlock()
		return errors.New("zapauth: the policy is attached already")
	}
	p.attached = true
	p.mu.Unlock()
	domain, err := register(p)
	if err != nil {
		return err
	}
	if err := sock.SetZapDomain(domain); err != nil {
		p.Release()
		return err
	}
	return nil
}

// SetName names the server or endpoint in the log lines ("server" attribute).
func (p *Policy) SetName(name string) {
	p.mu.Lock()
	p.name = name
	p.mu.Unlock()
}

// Release removes the policy from the handler (its domain is refused from then on), and
// stops the handler if no other policy remains. Call it after the socket is closed: libzmq
// admits a peer under NULL when no handler answers. It is idempotent, and does nothing on a
// nil Policy or one never attached.
func (p *Policy) Release() {
	if p == nil {
		return
	}
	p.mu.Lock()
	domain, done := p.domain, p.released
	p.released = true
	p.mu.Unlock()
	if !done && domain != "" {
		unregister(domain)
	}
}

// CloseSocket closes sock, then releases p (nil: a socket without lists): in that order, so
// that the socket never asks a handler that is gone.
func CloseSocket(sock *zmq.Socket, p *Policy) error {
	err := sock.Close()
	p.Release()
	return err
}

// Refused returns the refusals by list (index Allow, Deny). A nil Policy has none.
func (p *Policy) Refused() [NumLists]int64 {
	var n [NumLists]int64
	if p != nil {
		for i := range n {
			n[i] = p.refused[i].Load()
		}
	}
	return n
}

// Total adds up the counts of Refused.
func Total(n [NumLists]int64) int64 {
	var t int64
	for _, v := range n {
		t += v
	}
	return t
}

// Running reports whether the process's ZAP handler runs: while a policy is attached.
func Running() bool {
	zap.mu.Lock()
	defer zap.mu.Unlock()
	return zap.handler != nil
}

// zap is the process's ZAP handler and its policies.
var zap struct {
	mu       sync.Mutex // guards refs, next and handler: starting and stopping the handler
	refs     int
	next     uint64 // the last domain's number
	handler  *handler
	polMu    sync.RWMutex // guards policies, which the handler reads
	policies map[string]*Policy
}

// register adds a policy under a new domain, starting the handler if it is the first, and
// sets the policy's domain, so that a Release from then on unregisters it. A policy released
// before it is registered is not.
func register(p *Policy) (string, error) {
	zap.mu.Lock()
	defer zap.mu.Unlock()
	p.mu.Lock() // zap.mu, then p.mu: Release takes p.mu alone, then zap.mu in unregister
	defer p.mu.Unlock()
	if p.released {
		return "", errors.New("zapauth: the policy was released")
	}
	if zap.refs == 0 {
		h, err := startHandler()
		if err != nil {
			return "", err
		}
		zap.handler = h
	}
	zap.refs++
	zap.next++
	domain := fmt.Sprintf("%s%d", domainPrefix, zap.next)
	zap.polMu.Lock()
	if zap.policies == nil {
		zap.policies = map[string]*Policy{}
	}
	zap.policies[domain] = p
	zap.polMu.Unlock()
	p.domain = domain
	return domain, nil
}

// unregister removes a domain's policy, stopping the handler if it was the last.
func unregister(domain string) {
	zap.mu.Lock()
	defer zap.mu.Unlock()
	zap.polMu.Lock()
	delete(zap.policies, domain)
	zap.polMu.Unlock()
	zap.refs--
	if zap.refs == 0 {
		zap.handler.stop()
		zap.handler = nil
	}
}

// handler is the running handler: its goroutine owns the REP socket and waits for it in Go's
// netpoller (zmqpoll.Waiter), so that stop wakes it without a socket of its own.
type handler struct {
	waiter  *zmqpoll.Waiter
	stopped atomic.Bool
	done    chan struct{}
}

// startHandler binds the handler, or says why it cannot.
func startHandler() (*handler, error) {
	h := &handler{done: make(chan struct{})}
	ready := make(chan error, 1)
	go h.run(ready)
	if err := <-ready; err != nil {
		return nil, err
	}
	return h, nil
}

// stop tells the handler's goroutine to close its socket, and waits for it.
func (h *handler) stop() {
	h.stopped.Store(true)
	h.waiter.Wake()
	<-h.done
}

// run is the handler's goroutine: it answers ZAP requests until told to stop, or until the
// ZeroMQ context ends (ETERM), which ends every socket with it.
func (h *handler) run(ready chan<- error) {
	defer close(h.done)
	rep, err := zmq.NewSocket(zmq.REP)
	if err != nil {
		ready <- err
		return
	}
	defer rep.Close()
	rep.SetLinger(0)
	if err := rep.Bind(Endpoint); err != nil {
		ready <- fmt.Errorf("%w (the application runs a ZAP handler of its own, such as zmq4.AuthStart's): %w", ErrHandlerTaken, err)
		return
	}
	// Unbound before the socket closes: closing frees the endpoint later, on libzmq's reaper
	// thread, and a socket attached right after must find it free.
	defer rep.Unbind(Endpoint)
	if h.waiter, err = zmqpoll.NewWaiter(rep); err != nil {
		ready <- err
		return
	}
	defer h.waiter.Close()
	ready <- nil
	var sockErr error
	readable := false
	isReady := func() bool {
		readable, sockErr = zmqpoll.Readable(rep)
		return readable || sockErr != nil || h.stopped.Load()
	}
	for {
		_, err := h.waiter.Wait(time.Hour, isReady)
		if h.stopped.Load() || errors.Is(sockErr, zmq.ETERM) {
			return
		}
		if err != nil || sockErr != nil {
			// Not expected: try again, without spinning. Not return: while policies are
			// attached, a handler that is gone would let every peer in.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !readable {
			continue
		}
		req, err := rep.RecvMessageBytes(zmq.DONTWAIT)
		if err != nil {
			continue // nothing after all: a REP that received nothing owes no reply
		}
		// A REP sends its reply to the session that asked, over inproc: it fails only when
		// the ZeroMQ context ends, which the next wait reports (ETERM).
		rep.SendMessage(answer(req))
	}
}

// answer answers one ZAP request (RFC 27): version "1.0", request id, domain, address,
// identity, mechanism, credentials. The reply is version, request id, status code ("200" or
// "400"), status text, user id and metadata (both empty). A malformed request, or one for a
// tlszmq domain no attached policy has, gets 400. A request for another domain (a CURVE or
// PLAIN socket of the application's, which libzmq sends to any handler that is bound) gets
// 200, as if no handler ran: libzmq admits those peers when none is bound, and the lists must
// not change that. (Unless the socket sets ZMQ_ZAP_ENFORCE_DOMAIN, with which libzmq refuses
// them when no handler is bound; that option is a draft one, which Debian's libzmq 4.3.4 does
// not build, so no socket of this library's processes can set it.)
func answer(req [][]byte) [][]byte {
	id := []byte{}
	if len(req) >= 2 {
		id = req[1]
	}
	reply := func(code, text string) [][]byte {
		return [][]byte{[]byte("1.0"), id, []byte(code), []byte(text), {}, {}}
	}
	if len(req) < 6 || string(req[0]) != "1.0" {
		return reply("400", "malformed ZAP request")
	}
	address := string(req[3])
	domain := string(req[2])
	if !strings.HasPrefix(domain, domainPrefix) {
		return reply("200", "OK")
	}
	zap.polMu.RLock()
	p := zap.policies[domain]
	zap.polMu.RUnlock()
	if p == nil {
		return reply("400", "unknown ZAP domain")
	}
	ok, list := p.check(address)
	if !ok {
		p.refuse(address, list)
		return reply("400", "address refused by the "+list.String()+" list")
	}
	return reply("200", "OK")
}
