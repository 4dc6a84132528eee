// Package metricsrv serves a tlszmq server's Prometheus metrics over HTTP for the commands
// (tlsserver -metrics, tlsdevice -metrics): the address check and the /metrics handler they
// share.
package metricsrv

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cli"
	"github.com/tlszmq/tlszmq/metrics"
)

// CheckAddr returns a usage error unless addr is empty (no metrics) or a host:port to
// listen on: host an IP address, a name or empty (every interface), port 0 to 65535.
func CheckAddr(addr string) error {
	if addr == "" {
		return nil
	}
	bad := func(why string) error {
		return cli.Usagef("-metrics %s: %s: want host:port, e.g. 127.0.0.1:9464", strconv.Quote(addr), why)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return bad("not a host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || port != strconv.Itoa(n) {
		return bad(fmt.Sprintf("port %q is not 0 to 65535", port))
	}
	if _, err := netip.ParseAddr(host); err != nil && host != "" && !validHostName(host) {
		return bad(fmt.Sprintf("%q is not an IP address or a host name", host))
	}
	return nil
}

// validHostName reports whether s is a DNS name: letters, digits, '-', '_' and dots.
func validHostName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return s[0] != '.' && s[0] != '-'
}

// Serve serves srv's metrics, its Context's (certificate expiry, TLS versions, FIPS), and the
// Go runtime's and the process's, at /metrics on ln, until the returned stop is called.
func Serve(ln net.Listener, srv *tlszmq.Server, tctx *tlszmq.Context, log *slog.Logger) (stop func()) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(srv), metrics.NewContextCollector(tctx), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics: serving stopped", "reason", err)
		}
	}()
	log.Info("serving Prometheus metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() {
		hs.Close()
		<-done
	}
}
