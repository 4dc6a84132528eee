package metrics_test

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/metrics"
)

// opensslDate returns a certificate's -enddate or -startdate as the openssl command reads it:
// the expected values come from a tool other than the code under test.
func opensslDate(t *testing.T, file, which string) time.Time {
	t.Helper()
	out, err := exec.Command("openssl", "x509", "-in", file, "-noout", "-"+which).Output()
	if err != nil {
		t.Fatalf("openssl x509 -%s: %v (make deps installs openssl)", which, err)
	}
	_, date, _ := strings.Cut(strings.TrimSpace(string(out)), "=")
	when, err := time.Parse("Jan _2 15:04:05 2006 MST", date)
	if err != nil {
		t.Fatalf("openssl's date %q: %v", date, err)
	}
	return when
}

// gather registers c alone and returns its metric families by name.
func gather(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	return byName(t, reg)
}

// byName gathers g's metric families, by name.
func byName(t *testing.T, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	families := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		families[mf.GetName()] = mf
	}
	return families
}

// one returns the only metric of a family, with its labels as a map.
func one(t *testing.T, mfs map[string]*dto.MetricFamily, name string) (float64, map[string]string) {
	t.Helper()
	mf := mfs[name]
	if mf == nil || len(mf.Metric) != 1 {
		t.Fatalf("%s: %v, want one metric", name, mf)
	}
	labels := map[string]string{}
	for _, l := range mf.Metric[0].Label {
		labels[l.GetName()] = l.GetValue()
	}
	return mf.Metric[0].GetGauge().GetValue(), labels
}

// The served certificate's dates, subject and issuer, as openssl reads them, and the TLS
// versions and FIPS mode; a Reload shows at the next scrape.
func TestContextCollector(t *testing.T) {
	const dir = "../testdata/certs/"
	ctx, err := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{CertFile: dir + "server.crt", KeyFile: dir + "server.key", MaxVersion: tlszmq.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	c := metrics.NewContextCollector(ctx, metrics.WithLabels(prometheus.Labels{"server": "front"}))

	check := func(file, subject, issuer string) {
		t.Helper()
		mfs := gather(t, c)
		expiry, labels := one(t, mfs, "tlszmq_certificate_expiry_timestamp_seconds")
		if want := opensslDate(t, file, "enddate"); expiry != float64(want.Unix()) {
			t.Errorf("%s: expiry %v, want %v (%s)", file, expiry, want.Unix(), want)
		}
		if labels["subject"] != subject || labels["issuer"] != issuer || labels["server"] != "front" {
			t.Errorf("%s: labels %v, want subject %q, issuer %q, server front", file, labels, subject, issuer)
		}
		notBefore, _ := one(t, mfs, "tlszmq_certificate_not_before_timestamp_seconds")
		if want := opensslDate(t, file, "startdate"); notBefore != float64(want.Unix()) {
			t.Errorf("%s: not before %v, want %v", file, notBefore, want.Unix())
		}
	}
	check(dir+"server.crt", "CN=localhost,O=tlszmq,C=ZZ", "CN=tlszmq test CA,O=tlszmq,C=ZZ")
	v, labels := one(t, gather(t, c), "tlszmq_tls_info")
	if v != 1 || labels["min_version"] != "TLS 1.2" || labels["max_version"] != "TLS 1.2" || labels["fips"] != "off" {
		t.Errorf("tlszmq_tls_info %v %v, want 1 with TLS 1.2 to TLS 1.2, fips off", v, labels)
	}

	if err := ctx.Reload(&tlszmq.Config{CertFile: dir + "expired.crt", KeyFile: dir + "expired.key"}); err != nil {
		t.Fatal(err)
	}
	check(dir+"expired.crt", "CN=localhost,O=tlszmq,C=ZZ", "CN=tlszmq test CA,O=tlszmq,C=ZZ")
	if _, labels := one(t, gather(t, c), "tlszmq_tls_info"); labels["max_version"] != "TLS 1.3" {
		t.Errorf("after Reload: tlszmq_tls_info %v, want max_version TLS 1.3", labels)
	}
}

// A Context without a certificate reports its TLS settings and no certificate.
func TestContextCollectorNoCertificate(t *testing.T) {
	ctx, err := tlszmq.NewContext(tlszmq.RoleClient, &tlszmq.Config{CAFile: "../testdata/certs/ca.crt"})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	mfs := gather(t, metrics.NewContextCollector(ctx))
	if mf := mfs["tlszmq_certificate_expiry_timestamp_seconds"]; mf != nil {
		t.Errorf("a certificate expiry for a Context without a certificate: %v", mf)
	}
	if v, _ := one(t, mfs, "tlszmq_tls_info"); v != 1 {
		t.Errorf("tlszmq_tls_info %v, want 1", v)
	}
}
