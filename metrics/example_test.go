package metrics_test

import (
	"context"
	"log"
	"net/http"

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
