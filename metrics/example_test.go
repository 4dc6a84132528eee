package metrics_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/metrics"
)

// A server's metrics on a registry of the program's own, served by the program's own HTTP
// server at /metrics.
func ExampleNewCollector() {
	tctx, err := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{CertFile: "server.crt", KeyFile: "server.key"})
	if err != nil {
		log.Fatal(err)
	}
	defer tctx.Close()
	echo := func(_ context.Context, _ *tlszmq.Peer, req [][]byte) ([][]byte, error) { return req, nil }
	srv, err := tlszmq.NewServer(tctx, "tcp://*:5556", echo, nil)
	if err != nil {
		log.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(srv))
	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	go func() { log.Fatal(http.ListenAndServe("127.0.0.1:9464", nil)) }()

	log.Fatal(srv.Serve(context.Background()))
}

// A Context's certificate and TLS settings as metrics, here read back from the registry
// (a program serves the registry as above).
func ExampleNewContextCollector() {
	tctx, err := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{
		CertFile: "../testdata/certs/server.crt", KeyFile: "../testdata/certs/server.key"})
	if err != nil {
		log.Fatal(err)
	}
	defer tctx.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewContextCollector(tctx))
	families, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			fmt.Print(mf.GetName())
			for _, l := range m.GetLabel() {
				fmt.Printf(" %s=%q", l.GetName(), l.GetValue())
			}
			if v := m.GetGauge().GetValue(); v > 1 {
				fmt.Printf(" %s\n", time.Unix(int64(v), 0).UTC().Format(time.DateOnly))
			} else {
				fmt.Printf(" %v\n", v)
			}
		}
	}
	// Output:
	// tlszmq_certificate_expiry_timestamp_seconds issuer="CN=tlszmq test CA,O=tlszmq,C=ZZ" subject="CN=localhost,O=tlszmq,C=ZZ" 2086-11-10
	// tlszmq_certificate_not_before_timestamp_seconds issuer="CN=tlszmq test CA,O=tlszmq,C=ZZ" subject="CN=localhost,O=tlszmq,C=ZZ" 2026-11-25
	// tlszmq_tls_info fips="off" max_version="TLS 1.3" min_version="TLS 1.2" 1
}
