package tlszmq

import (
	"bytes"
	"errors"
	"sync"
	"testing"
)

var fuzzContexts struct {
	once           sync.Once
	client, server *Context
	err            error
}

// fuzzCtx makes one client and one server Context for all fuzz inputs.
func fuzzCtx(f *testing.F) (client, server *Context) {
	fuzzContexts.once.Do(func() {
		fuzzContexts.server, fuzzContexts.err = NewContext(RoleServer, serverConfig("server-ec"))
		if fuzzContexts.err == nil {
			fuzzContexts.client, fuzzContexts.err = NewContext(RoleClient, clientConfig())
		}
	})
	if fuzzContexts.err != nil {
		f.Fatal(fuzzContexts.err)
	}
	return fuzzContexts.client, fuzzContexts.server
}

// realFlights returns the frames of a real handshake and exchange: the client's and the
// server's, in order.
func realFlights(f *testing.F, client, server *Context) (fromClient, fromServer [][]byte) {
	c, _ := NewClientEngine(client)
	s, _ := NewServerEngine(server)
	defer c.Close()
	defer s.Close()
	c.Write([]byte("hello world!"))
	for range 10 {
		if m := c.GetData(); m != nil {
			fromClient = append(fromClient, m)
			s.PutData(m)
		}
		if s.CanRecv() {
			s.Read()
			s.Write([]byte("Got it!\x00"))
		}
		if m := s.GetData(); m != nil {
			fromServer = append(fromServer, m)
			c.PutData(m)
		}
	}
	if len(fromClient) < 2 || len(fromServer) < 2 {
		f.Fatalf("captured %d client and %d server frames", len(fromClient), len(fromServer))
	}
	return fromClient, fromServer
}

var hostileSeeds = [][]byte{
	{},
	[]byte("GET / HTTP/1.0\r\n\r\n"),
	{21, 3, 3, 0, 2, 2, 40},                  // a bare fatal alert record
	{22, 3, 1, 0xff, 0xff, 1, 0, 0xff, 0xff}, // a handshake record with an absurd length
	{23, 3, 3, 0, 5, 1, 2, 3, 4, 5},          // application data before any handshake
	bytes.Repeat([]byte{0x16}, 300),
}

// feed gives data to e in pieces cut as the first byte says, draining GetData after each, and
// checks that an error, once there, is sticky.
func feed(t *testing.T, e *Engine, data []byte) {
	step := 1
	if len(data) > 0 {
		step = 1 + int(data[0])%97
		data = data[1:]
	}
	var first error
	for len(data) > 0 {
		n := min(step, len(data))
		err := e.PutData(data[:n])
		data = data[n:]
		e.GetData()
		if first != nil && !errors.Is(err, first) {
			t.Fatalf("error not sticky: first %v, then %v", first, err)
		}
		if first == nil {
			first = err
		}
		if got, rerr := e.Read(); got == nil && rerr == nil && err != nil {
			t.Fatalf("Read after error %v returned nothing and no error", err)
		}
	}
	e.PutEOF()
	e.GetData()
}

// FuzzServerEngine feeds arbitrary bytes to a server engine as a hostile client would.
func FuzzServerEngine(f *testing.F) {
	client, server := fuzzCtx(f)
	fromClient, _ := realFlights(f, client, server)
	for _, seed := range append(hostileSeeds, fromClient...) {
		f.Add(append([]byte{0}, seed...))
	}
	f.Add(append([]byte{3}, fromClient[0]...))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := NewServerEngine(server)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		feed(t, s, data)
	})
}

// FuzzClientEngine feeds arbitrary bytes to a client engine, after its ClientHello, as a
// hostile server would.
func FuzzClientEngine(f *testing.F) {
	client, server := fuzzCtx(f)
	_, fromServer := realFlights(f, client, server)
	for _, seed := range append(hostileSeeds, fromServer...) {
		f.Add(append([]byte{0}, seed...))
	}
	f.Add(append([]byte{50}, fromServer[0]...))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := NewClientEngine(client)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("hello world!"))
		c.GetData()
		feed(t, c, data)
	})
}
