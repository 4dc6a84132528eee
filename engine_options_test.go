package tlszmq

import (
	"errors"
	"strings"
	"testing"
	"unsafe"
)

// NewEngine's options: a server name of the engine's own, checked against the server's
// certificate instead of the Context's; protocols of its own, offered before the Context's.
func TestNewEngineOptions(t *testing.T) {
	sctx := mustContext(t, RoleServer, serverConfig("server-ec"))
	wrongName := clientConfig()
	wrongName.ServerName = "not-the-server.example"
	cctx := mustContext(t, RoleClient, wrongName)

	t.Run("the engine's server name is checked, not the Context's", func(t *testing.T) {
		c, err := NewEngine(cctx, EngineOptions{ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s := mustEngine(t)(NewServerEngine(sctx))
		if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
			t.Fatalf("handshake: client %v, server %v", cerr, serr)
		}
	})
	t.Run("without it the Context's name is checked", func(t *testing.T) {
		c := mustEngine(t)(NewEngine(cctx, EngineOptions{}))
		s := mustEngine(t)(NewServerEngine(sctx))
		cerr, _ := handshake(c, s)
		if cerr == nil || !strings.Contains(cerr.Error(), "not-the-server.example") {
			t.Fatalf("client error %v, want a name mismatch naming not-the-server.example", cerr)
		}
	})
	t.Run("the engine's protocol is offered first", func(t *testing.T) {
		c := mustEngine(t)(NewEngine(mustContext(t, RoleClient, withProtos(clientConfig(), "x")),
			EngineOptions{NextProtos: []string{"mine"}}))
		s := mustEngine(t)(NewServerEngine(mustContext(t, RoleServer, withProtos(serverConfig("server-ec"), "mine", "x"))))
		if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
			t.Fatalf("handshake: client %v, server %v", cerr, serr)
		}
		if got := c.ConnectionState().NegotiatedProtocol; got != "mine" {
			t.Fatalf("negotiated %q, want mine", got)
		}
	})
	for _, tc := range []struct {
		name string
		ctx  *Context
		opts EngineOptions
		want string
	}{
		{"a server name on a server engine", sctx, EngineOptions{ServerName: "localhost"}, "EngineOptions.ServerName is for client engines"},
		{"an empty protocol", cctx, EngineOptions{NextProtos: []string{""}}, "EngineOptions.NextProtos[0]"},
		{"a protocol too long", cctx, EngineOptions{NextProtos: []string{strings.Repeat("p", 256)}}, "has 256 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := NewEngine(tc.ctx, tc.opts)
			if err == nil {
				e.Close()
				t.Fatal("NewEngine accepted it")
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want ErrInvalidConfig naming %q", err, tc.want)
			}
		})
	}
}

// TakeData hands out the engine's own storage, and PutDataInPlace decrypts a frame where it
// lies: a message crosses from one engine to the other with no copy of the engine's.
func TestTakeDataAndPutDataInPlace(t *testing.T) {
	c := mustEngine(t)(NewClientEngine(mustContext(t, RoleClient, clientConfig())))
	s := mustEngine(t)(NewServerEngine(mustContext(t, RoleServer, serverConfig("server-ec"))))
	if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
		t.Fatalf("handshake: client %v, server %v", cerr, serr)
	}
	if _, err := c.Write([]byte("in place")); err != nil {
		t.Fatal(err)
	}
	frame := c.TakeData()
	if len(frame) == 0 || c.State().Pending != 0 {
		t.Fatalf("TakeData gave %d bytes and left %d", len(frame), c.State().Pending)
	}
	if c.TakeData() != nil {
		t.Fatal("a second TakeData gave bytes again")
	}
	plain, err := s.PutDataInPlace(frame)
	if err != nil {
		t.Fatal(err)
	}
	if string(plain) != "in place" {
		t.Fatalf("PutDataInPlace gave %q", plain)
	}
	start, end := uintptr(unsafe.Pointer(&frame[0])), uintptr(unsafe.Pointer(&frame[0]))+uintptr(len(frame))
	if p := uintptr(unsafe.Pointer(&plain[0])); p < start || p >= end {
		t.Fatal("the plaintext is not in the frame's memory")
	}
	if _, err := s.Read(); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("Read after an in-place frame: %v, want ErrWouldBlock (nothing left in the engine)", err)
	}
}

// mustEngine(t)(NewXEngine(...)) fails the test on an error and closes the engine at its end.
func mustEngine(t *testing.T) func(*Engine, error) *Engine {
	return func(e *Engine, err error) *Engine {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
}
