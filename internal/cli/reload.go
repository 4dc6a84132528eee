package cli

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/tlszmq/tlszmq"
)

// Reload loads the configuration build returns into tctx (tlszmq.Context.Reload) and logs one
// line about it: "reloaded", with the new certificate's subject and expiry (and a warning line
// if it expires within 30 days), or "reload refused", with the reason: the old configuration
// then stays. build re-reads the files the command's flags name. It returns the error of a
// refused reload.
func Reload(log *slog.Logger, why string, tctx *tlszmq.Context, build func() (*tlszmq.Config, error)) error {
	cfg, err := build()
	if err == nil {
		err = tctx.Reload(cfg)
	}
	if err != nil {
		log.Error("reload refused: the old configuration stays", "on", why, "reason", err)
		return err
	}
	cert := tctx.Certificate() // the one OpenSSL loaded
	if cert == nil {
		log.Info("reloaded", "on", why, "certificate", "none")
		return nil
	}
	log.Info("reloaded", "on", why, "certificate", cert.Subject.String(), "expires", cert.NotAfter.UTC().Format(time.DateOnly))
	if left := time.Until(cert.NotAfter); left < expiryWarning {
		log.Warn("the reloaded certificate expires soon", "certificate", cert.Subject.String(),
			"expires", cert.NotAfter.UTC().Format(time.DateOnly), "days_left", int(left.Hours()/24))
	}
	return nil
}

// ReloadOnHangup reloads tctx on every SIGHUP (see Reload) until ctx ends or stop is called:
// SIGHUP no longer ends the process. The reloads happen one at a time, on a goroutine of
// their own; stop waits for the one under way.
func ReloadOnHangup(ctx context.Context, log *slog.Logger, tctx *tlszmq.Context, build func() (*tlszmq.Config, error)) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ch:
				Reload(log, "SIGHUP", tctx, build)
			case <-ctx.Done():
				return
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(ch)
			close(done)
			wg.Wait()
		})
	}
}
