// Package metrics exports a tlszmq.Server's counters to Prometheus.
//
// NewCollector returns a prometheus.Collector that reads the server's counters
// (tlszmq.Server.Counters) at each scrape; the caller registers it and serves it as it likes
// (promhttp, a push gateway): this package starts no HTTP server. Only this package imports
// github.com/prometheus/client_golang; a program that uses package tlszmq alone does not
// build it in.
//
// The metrics, every counter since the server was made:
//
//	tlszmq_sessions                          gauge: live sessions
//	tlszmq_handshakes_total{result,version}  handshakes: result "done" with the TLS version
//	                                         ("TLS 1.2", "TLS 1.3"), or "failed" (no version)
//	tlszmq_handshake_failures_total{cause}   failed handshakes by cause: timeout, alert_sent,
//	                                         alert_received, verify, budget, evicted, other
//	tlszmq_handshake_duration_seconds        histogram: first frame to handshake done
//	tlszmq_bytes_total{direction}            TLS bytes, "in" and "out"
//	tlszmq_messages_total{direction}         application messages, "in" and "out"
//	tlszmq_sessions_removed_total{cause}     removed sessions by cause: close_notify, idle,
//	                                         handshake_timeout, evicted, restarted, budget,
//	                                         unsendable, stopping, failed
//	tlszmq_budget_exceeded_total{kind}       budget violations by option: MaxMessageSize,
//	                                         MaxParts, MaxMessagesPerFrame, MaxPendingOutput,
//	                                         MaxEnvelopeFrames, MaxKeyUpdates, MaxRecordsPerPump
//	tlszmq_dropped_messages_total            ZeroMQ messages dropped before any session
//	tlszmq_connections_refused_total{list}   ZeroMQ connections refused by the server's
//	                                         ServerOptions.Allow ("allow") or Deny ("deny")
//
// tlszmq.Counters documents each cause and kind. Every label value of the fixed sets is
// exported from the first scrape on, at zero until it happens.
//
// NewContextCollector reports a tlszmq.Context's configuration, read at each scrape (so a
// Context.Reload shows at the next one):
//
//	tlszmq_certificate_expiry_timestamp_seconds{subject,issuer}  the served certificate's
//	                                         NotAfter, in Unix seconds: alert on
//	                                         tlszmq_certificate_expiry_timestamp_seconds - time()
//	tlszmq_certificate_not_before_timestamp_seconds{subject,issuer}  its NotBefore
//	tlszmq_tls_info{min_version,max_version,fips}  1: the TLS versions allowed ("TLS 1.2",
//	                                         "TLS 1.3") and FIPS mode ("on", "off")
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tlszmq/tlszmq"
)

// Option tunes a collector.
type Option func(*options)

// options are what the Options set.
type options struct {
	labels prometheus.Labels
}

// WithLabels adds constant labels to every metric of the collector: to tell apart several
// servers registered in one registry, for example {"server": "frontend"}.
func WithLabels(labels prometheus.Labels) Option {
	return func(o *options) {
		o.labels = prometheus.Labels{}
		for k, v := range labels {
			o.labels[k] = v
		}
	}
}

// apply returns the options opts set.
func apply(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// NewCollector returns a collector of srv's counters, read at each scrape (Collect). It may
// be registered before srv serves, and keeps reporting the last counts after srv has stopped.
func NewCollector(srv *tlszmq.Server, opts ...Option) prometheus.Collector {
	c := &collector{srv: srv, labels: apply(opts).labels}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, c.labels)
	}
	c.sessions = desc("tlszmq_sessions", "Live TLS sessions of the server.")
	c.handshakes = desc("tlszmq_handshakes_total", "TLS handshakes by result (done, failed) and, when done, TLS version.", "result", "version")
	c.failures = desc("tlszmq_handshake_failures_total", "Failed TLS handshakes by cause.", "cause")
	c.duration = desc("tlszmq_handshake_duration_seconds", "Time from a session's first frame to its completed handshake.")
	c.bytes = desc("tlszmq_bytes_total", "TLS bytes received (in) and sent (out).", "direction")
	c.messages = desc("tlszmq_messages_total", "Application messages received (in) and sent (out).", "direction")
	c.removed = desc("tlszmq_sessions_removed_total", "Sessions removed, by cause.", "cause")
	c.budget = desc("tlszmq_budget_exceeded_total", "Budget violations by the option that bounds them.", "kind")
	c.dropped = desc("tlszmq_dropped_messages_total", "ZeroMQ messages dropped before reaching a session (malformed, or over a budget).")
	c.refused = desc("tlszmq_connections_refused_total", "ZeroMQ connections refused by the server's allow or deny list, by list.", "list")
	return c
}

// collector is NewCollector's prometheus.Collector.
type collector struct {
	srv    *tlszmq.Server
	labels prometheus.Labels

	sessions, handshakes, failures, duration, bytes, messages, removed, budget, dropped, refused *prometheus.Desc
}

// Describe sends the descriptions of every metric.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sessions, c.handshakes, c.failures, c.duration, c.bytes, c.messages, c.removed, c.budget, c.dropped, c.refused} {
		ch <- d
	}
}

// Collect reads the server's counters and sends them.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	n := c.srv.Counters()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, float64(n.Sessions))
	for version, v := range n.HandshakesByVersion {
		counter(c.handshakes, v, "done", version)
	}
	counter(c.handshakes, n.HandshakesFailed, "failed", "")
	for cause, v := range n.FailedByCause {
		counter(c.failures, v, cause)
	}
	ch <- histogram(c.duration, n.HandshakeTime)
	counter(c.bytes, n.BytesIn, "in")
	counter(c.bytes, n.BytesOut, "out")
	counter(c.messages, n.MessagesIn, "in")
	counter(c.messages, n.MessagesOut, "out")
	for cause, v := range n.RemovedByCause {
		counter(c.removed, v, cause)
	}
	for kind, v := range n.BudgetByKind {
		counter(c.budget, v, kind)
	}
	counter(c.dropped, n.Dropped)
	for list, v := range n.RefusedByList {
		counter(c.refused, v, list)
	}
}

// histogram turns a DurationHistogram into a Prometheus histogram in seconds, its buckets
// cumulative.
func histogram(d *prometheus.Desc, h tlszmq.DurationHistogram) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var below uint64
	for i, bound := range h.Bounds {
		below += uint64(h.Counts[i])
		buckets[bound.Seconds()] = below
	}
	return prometheus.MustNewConstHistogram(d, uint64(h.Count), h.Sum.Seconds(), buckets)
}
