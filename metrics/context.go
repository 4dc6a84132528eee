package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tlszmq/tlszmq"
)

// NewContextCollector returns a collector of ctx's configuration: its certificate's validity
// and its TLS versions and FIPS mode, read at each scrape. It reports no certificate metric
// when ctx presents none (a client Context without a certificate).
func NewContextCollector(ctx *tlszmq.Context, opts ...Option) prometheus.Collector {
	labels := apply(opts).labels
	return &contextCollector{
		ctx: ctx,
		expiry: prometheus.NewDesc("tlszmq_certificate_expiry_timestamp_seconds",
			"When the served certificate expires (its NotAfter), in Unix seconds.", []string{"subject", "issuer"}, labels),
		notBefore: prometheus.NewDesc("tlszmq_certificate_not_before_timestamp_seconds",
			"When the served certificate became valid (its NotBefore), in Unix seconds.", []string{"subject", "issuer"}, labels),
		info: prometheus.NewDesc("tlszmq_tls_info",
			"Always 1: the TLS versions the Context allows and whether it runs in FIPS mode.", []string{"min_version", "max_version", "fips"}, labels),
	}
}

// contextCollector is NewContextCollector's prometheus.Collector.
type contextCollector struct {
	ctx                     *tlszmq.Context
	expiry, notBefore, info *prometheus.Desc
}

// Describe sends the descriptions of every metric.
func (c *contextCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.expiry
	ch <- c.notBefore
	ch <- c.info
}

// Collect reads the Context's current configuration and sends it.
func (c *contextCollector) Collect(ch chan<- prometheus.Metric) {
	lo, hi := c.ctx.Config().VersionRange()
	fips := "off"
	if c.ctx.FIPS() {
		fips = "on"
	}
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, tlszmq.VersionName(lo), tlszmq.VersionName(hi), fips)
	if cert := c.ctx.Certificate(); cert != nil {
		subject, issuer := cert.Subject.String(), cert.Issuer.String()
		ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, float64(cert.NotAfter.Unix()), subject, issuer)
		ch <- prometheus.MustNewConstMetric(c.notBefore, prometheus.GaugeValue, float64(cert.NotBefore.Unix()), subject, issuer)
	}
}
