package zapauth

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/tlszmq/tlszmq/internal/syncbuf"
	"github.com/tlszmq/tlszmq/internal/waitfor"
)

// These tests attach policies to ROUTER sockets on random loopback ports and connect DEALERs
// from two loopback addresses: 127.0.0.1, and 127.0.0.2 as the source address of the
// connection (ZeroMQ's "tcp://source:0;host:port"). Linux routes all of 127.0.0.0/8 to lo.

// guarded is a ROUTER at a random loopback port with a policy, echoing what it receives on a
// goroutine of its own until close.
type guarded struct {
	p        *Policy
	endpoint string
	logs     *syncbuf.Buffer
	stop     chan struct{}
	done     chan struct{}
}

// newGuarded makes the policy and its socket; the test's end closes them if close was not
// called.
func newGuarded(t *testing.T, allow, deny []string) *guarded {
	t.Helper()
	g := &guarded{logs: &syncbuf.Buffer{}, stop: make(chan struct{}), done: make(chan struct{})}
	var err error
	g.p, err = NewPolicy(allow, deny, slog.New(slog.NewTextHandler(g.logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	sock, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		t.Fatal(err)
	}
	sock.SetLinger(0)
	if err := g.p.Attach(sock); err != nil {
		sock.Close()
		t.Fatal(err)
	}
	if err := sock.Bind("tcp://127.0.0.1:*"); err != nil {
		sock.Close()
		g.p.Release()
		t.Fatal(err)
	}
	g.endpoint, _ = sock.GetLastEndpoint()
	g.p.SetName(g.endpoint)
	go func() {
		defer close(g.done)
		defer g.p.Release() // after the socket closed
		defer sock.Close()
		poller := zmq.NewPoller()
		poller.Add(sock, zmq.POLLIN)
		for {
			select {
			case <-g.stop:
				return
			default:
			}
			if polled, _ := poller.Poll(20 * time.Millisecond); len(polled) == 0 {
				continue
			}
			if msg, err := sock.RecvMessageBytes(0); err == nil {
				sock.SendMessage(msg)
			}
		}
	}()
	t.Cleanup(g.close)
	return g
}

// close closes the socket, then releases the policy, and waits for both.
func (g *guarded) close() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	<-g.done
}

// ask connects a DEALER from source, sends "ping" and reports whether the echo came within
// wait.
func (g *guarded) ask(t *testing.T, source string, wait time.Duration) bool {
	t.Helper()
	d, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.SetLinger(0)
	d.SetRcvtimeo(wait)
	endpoint := fmt.Sprintf("tcp://%s:0;%s", source, strings.TrimPrefix(g.endpoint, "tcp://"))
	if err := d.Connect(endpoint); err != nil {
		t.Fatalf("connecting %s: %v", endpoint, err)
	}
	if _, err := d.Send("ping", 0); err != nil {
		t.Fatal(err)
	}
	got, err := d.Recv(0)
	return err == nil && got == "ping"
}

func wantAnswered(t *testing.T, g *guarded, source string) {
	t.Helper()
	if !g.ask(t, source, 10*time.Second) {
		t.Fatalf("a peer from %s was not answered", source)
	}
}

func wantRefused(t *testing.T, g *guarded, source string, list List) {
	t.Helper()
	before := g.p.Refused()[list]
	if g.ask(t, source, 500*time.Millisecond) {
		t.Fatalf("a peer from %s was answered, past the %s list", source, list)
	}
	waitfor.Cond(t, func() bool { return g.p.Refused()[list] > before }, "the refusal to be counted under "+list.String())
	line := fmt.Sprintf(`level=WARN msg="tlszmq: connection refused" server=%s address=%s list=%s `, g.endpoint, source, list)
	if !strings.Contains(g.logs.String(), line) {
		t.Fatalf("no line %q in the log:\n%s", line, g.logs.String())
	}
}

// The policy's decisions, IPv6 and IPv4-mapped addresses included.
func TestCheck(t *testing.T) {
	p, err := NewPolicy([]string{"10.0.0.0/8", "2001:db8::/32", " 192.0.2.7 "}, []string{"10.0.0.5", "2001:db8::bad"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{
		"10.1.2.3": "", "10.0.0.5": "deny", "192.0.2.7": "", "192.0.2.8": "allow",
		"::ffff:10.1.2.3": "", "::ffff:10.0.0.5": "deny", "2001:db8::1": "", "2001:db8::bad": "deny",
		"2001:db9::1": "allow", "fe80::1%lo": "allow", "": "allow", "not an address": "allow",
	} {
		ok, list := p.check(addr)
		got := ""
		if !ok {
			got = list.String()
		}
		if got != want {
			t.Errorf("%q: refused by %q, want %q", addr, got, want)
		}
	}
	// An IPv4-mapped prefix matches the IPv4 addresses it maps.
	m, err := NewPolicy(nil, []string{"::ffff:10.0.0.0/104"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{"10.9.9.9": false, "::ffff:10.9.9.9": false, "11.0.0.1": true} {
		if ok, _ := m.check(addr); ok != want {
			t.Errorf("deny ::ffff:10.0.0.0/104: %q admitted %v, want %v", addr, ok, want)
		}
	}
	d, err := NewPolicy(nil, []string{"::1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{"::1": false, "127.0.0.1": true, "": true} {
		if ok, _ := d.check(addr); ok != want {
			t.Errorf("deny ::1: %q admitted %v, want %v", addr, ok, want)
		}
	}
	if p, err := NewPolicy(nil, nil, nil); p != nil || err != nil {
		t.Errorf("no lists: %v, %v: want no policy", p, err)
	}
	var none *Policy
	if n := none.Refused(); Total(n) != 0 {
		t.Errorf("a nil policy refused %v", n)
	}
	none.Release() // no panic
}

func TestBadEntry(t *testing.T) {
	for _, c := range []struct {
		allow, deny []string
		list        List
		entry, text string
	}{
		{[]string{"127.0.0.1", "not-an-ip"}, nil, Allow, "not-an-ip", `Allow: "not-an-ip" is not an IP address or CIDR prefix`},
		{nil, []string{"10.0.0.0/33"}, Deny, "10.0.0.0/33", `Deny: "10.0.0.0/33" is not an IP address or CIDR prefix`},
		{[]string{""}, nil, Allow, "", `Allow: "" is not an IP address or CIDR prefix`},
		{[]string{"10.0.0.1"}, []string{"fe80::1%eth0"}, Deny, "fe80::1%eth0", `Deny: "fe80::1%eth0" is not an IP address or CIDR prefix`},
	} {
		p, err := NewPolicy(c.allow, c.deny, nil)
		var ee *EntryError
		if p != nil || !errors.As(err, &ee) || ee.List != c.list || ee.Entry != c.entry || err.Error() != c.text {
			t.Errorf("allow %q deny %q: %v, %v: want the EntryError %q", c.allow, c.deny, p, err, c.text)
		}
	}
}

// Live sockets: one policy admits and refuses, counts and logs; another's refusals are its own.
// One released (its domain is refused from then on, the other still enforced); the handler
// stops with the last, and its endpoint is free again.
func TestTwoPolicies(t *testing.T) {
	base := runtime.NumGoroutine()
	a := newGuarded(t, []string{"127.0.0.1"}, nil)
	b := newGuarded(t, nil, []string{"127.0.0.1"})
	if !Running() {
		t.Fatal("no handler with policies attached")
	}
	wantAnswered(t, a, "127.0.0.1")
	wantRefused(t, a, "127.0.0.2", Allow)
	wantAnswered(t, b, "127.0.0.2")
	wantRefused(t, b, "127.0.0.1", Deny)
	if n := a.p.Refused(); n[Deny] != 0 || Total(n) != n[Allow] {
		t.Errorf("a refused %v: none by deny", n)
	}
	if n := b.p.Refused(); n[Allow] != 0 {
		t.Errorf("b refused %v: none by allow", n)
	}
	if strings.Contains(a.logs.String(), "list=deny") || strings.Contains(b.logs.String(), "list=allow") ||
		strings.Contains(a.logs.String(), "address=127.0.0.1 ") || strings.Contains(b.logs.String(), "address=127.0.0.2 ") {
		t.Errorf("one policy logged the other's refusals, or an admitted peer:\nA:\n%s\nB:\n%s", a.logs.String(), b.logs.String())
	}

	domainA := a.p.domain
	a.close()
	a.p.Release() // idempotent
	if got := answer(request(domainA, "127.0.0.1")); string(got[2]) != "400" {
		t.Errorf("the released policy's domain: %q, want 400", got[2])
	}
	if !Running() {
		t.Fatal("the handler stopped while a policy is attached")
	}
	wantAnswered(t, b, "127.0.0.2")
	wantRefused(t, b, "127.0.0.1", Deny)

	b.close()
	if Running() {
		t.Fatal("the handler runs after the last policy was released")
	}
	rep, err := zmq.NewSocket(zmq.REP)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Bind(Endpoint); err != nil {
		t.Errorf("binding %s after the last release: %v", Endpoint, err)
	} else {
		rep.Unbind(Endpoint)
	}
	rep.Close()
	waitfor.Cond(t, func() bool { return runtime.NumGoroutine() <= base },
		fmt.Sprintf("the goroutines to go back to %d (now %d)", base, runtime.NumGoroutine()))

	// A new policy starts a new handler.
	c := newGuarded(t, nil, []string{"127.0.0.2"})
	wantAnswered(t, c, "127.0.0.1")
	wantRefused(t, c, "127.0.0.2", Deny)
	c.close()
	if Running() {
		t.Fatal("the handler runs after the last policy was released")
	}
}

// request is a well-formed ZAP request for the NULL mechanism.
func request(domain, address string) [][]byte {
	return [][]byte{[]byte("1.0"), []byte("7"), []byte(domain), []byte(address), []byte("id"), []byte("NULL")}
}

// Malformed requests, and requests for unknown tlszmq domains, get 400 over the live handler,
// which goes on answering; requests for domains that are not the package's get 200, as if no
// handler ran.
func TestMalformedRequests(t *testing.T) {
	g := newGuarded(t, []string{"127.0.0.1"}, nil)
	req, err := zmq.NewSocket(zmq.REQ)
	if err != nil {
		t.Fatal(err)
	}
	defer req.Close()
	req.SetLinger(0)
	req.SetRcvtimeo(5 * time.Second)
	if err := req.Connect(Endpoint); err != nil {
		t.Fatal(err)
	}
	domain := g.p.domain
	for _, c := range []struct {
		name  string
		req   [][]byte
		code  string
		reqID string
	}{
		{"one frame", [][]byte{[]byte("1.0")}, "400", ""},
		{"short", [][]byte{[]byte("1.0"), []byte("9"), []byte(domain)}, "400", "9"},
		{"bad version", append([][]byte{[]byte("2.0")}, request(domain, "127.0.0.1")[1:]...), "400", "7"},
		{"unknown domain", request("tlszmq-none", "127.0.0.1"), "400", "7"},
		{"another application's domain", request("", "192.0.2.1"), "200", "7"},
		{"another application's named domain", request("global", "192.0.2.1"), "200", "7"},
		{"not an address", request(domain, "garbage"), "400", "7"},
		{"refused", request(domain, "192.0.2.1"), "400", "7"},
		{"admitted", request(domain, "127.0.0.1"), "200", "7"},
		{"with credentials", append(request(domain, "127.0.0.1"), []byte("cred")), "200", "7"},
	} {
		if _, err := req.SendMessage(c.req); err != nil {
			t.Fatalf("%s: send: %v", c.name, err)
		}
		reply, err := req.RecvMessageBytes(0)
		if err != nil {
			t.Fatalf("%s: no reply: %v", c.name, err)
		}
		if len(reply) != 6 || string(reply[0]) != "1.0" || string(reply[1]) != c.reqID || string(reply[2]) != c.code ||
			len(reply[4]) != 0 || len(reply[5]) != 0 {
			t.Errorf("%s: reply %q, want code %s for request id %q", c.name, reply, c.code, c.reqID)
		}
	}
	if n := g.p.Refused(); n[Allow] != 2 || n[Deny] != 0 { // "garbage" and 192.0.2.1
		t.Errorf("refused %v, want 2 by allow", n)
	}
	wantAnswered(t, g, "127.0.0.1")
}

// An application that runs its own ZAP handler cannot use the lists: Attach says so instead of
// letting everyone in, and nothing stays registered.
func TestHandlerTaken(t *testing.T) {
	rep, err := zmq.NewSocket(zmq.REP)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Bind(Endpoint); err != nil {
		t.Fatal(err)
	}
	defer func() { rep.Unbind(Endpoint); rep.Close() }()
	p, err := NewPolicy(nil, []string{"192.0.2.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sock, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	err = p.Attach(sock)
	if !errors.Is(err, ErrHandlerTaken) || !strings.Contains(err.Error(), Endpoint+" is taken") {
		t.Fatalf("Attach with another handler bound: %v, want ErrHandlerTaken", err)
	}
	if Running() {
		t.Error("the handler counts as running")
	}
	if domain, _ := sock.GetZapDomain(); domain != "" {
		t.Errorf("the socket got ZAP domain %q", domain)
	}
	p.Release()
	zap.polMu.RLock()
	n := len(zap.policies)
	zap.polMu.RUnlock()
	if n != 0 {
		t.Errorf("%d policies registered", n)
	}
	if err := p.Attach(sock); err == nil {
		t.Error("a policy attached a second time")
	}
}

// A CURVE socket of the application's own, which libzmq sends to whatever ZAP handler is bound
// whatever its domain, still admits its peers while a policy is attached, as it does when no
// handler runs.
func TestOtherSocketsUnaffected(t *testing.T) {
	g := newGuarded(t, []string{"192.0.2.1"}, nil) // refuses loopback on its own socket
	serverPublic, serverSecret, err := zmq.NewCurveKeypair()
	if err != nil {
		t.Fatalf("libzmq without CURVE (Debian's has it): %v", err)
	}
	clientPublic, clientSecret, err := zmq.NewCurveKeypair()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := zmq.NewSocket(zmq.REP)
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	rep.SetLinger(0)
	if err := rep.SetCurveServer(1); err != nil { // no ZAP domain: the application's own
		t.Fatal(err)
	}
	if err := rep.SetCurveSecretkey(serverSecret); err != nil {
		t.Fatal(err)
	}
	if err := rep.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	endpoint, _ := rep.GetLastEndpoint()
	req, err := zmq.NewSocket(zmq.REQ)
	if err != nil {
		t.Fatal(err)
	}
	defer req.Close()
	req.SetLinger(0)
	if err := req.ClientAuthCurve(serverPublic, clientPublic, clientSecret); err != nil {
		t.Fatal(err)
	}
	if err := req.Connect(endpoint); err != nil {
		t.Fatal(err)
	}
	rep.SetRcvtimeo(5 * time.Second)
	if _, err := req.Send("ping", 0); err != nil {
		t.Fatal(err)
	}
	if msg, err := rep.Recv(0); err != nil || msg != "ping" {
		t.Fatalf("the CURVE server received %q, %v: its peer was refused", msg, err)
	}
	if n := g.p.Refused(); Total(n) != 0 {
		t.Errorf("the policy counted the other socket's peer: %v", n)
	}
}
