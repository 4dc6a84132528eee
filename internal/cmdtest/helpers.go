package cmdtest

import (
	"context"
	"testing"

	"github.com/tlszmq/tlszmq"
)

// Serve runs fn (a server's or a device's Run) on a goroutine until the test ends, then
// cancels its context and checks that it stopped without an error.
func Serve(t testing.TB, fn func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("stopped with %v", err)
		}
	})
}

// Context makes a tlszmq Context that is closed when the test ends.
func Context(t testing.TB, role tlszmq.Role, cfg *tlszmq.Config) *tlszmq.Context {
	t.Helper()
	ctx, err := tlszmq.NewContext(role, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctx.Close() })
	return ctx
}
