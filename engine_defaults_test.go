package tlszmq

/*
These tests need OpenSSL's option bits; cgo is not allowed in test files, so the values are
written out (openssl/ssl.h, OpenSSL 3.0).
*/

import (
	"bytes"
	"crypto/tls"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

const sslOpNoCompression = 1 << 17 // SSL_OP_NO_COMPRESSION

// Over TLS 1.2 a default server takes only forward-secret AEAD suites: crypto/tls offering one
// suite at a time gets ECDHE with AES-GCM or ChaCha20-Poly1305, and nothing with RSA key
// exchange or CBC.
func TestDefaultCipherListWithGoClient(t *testing.T) {
	for _, key := range []string{"server", "server-ec"} {
		l := listenEngines(t, mustContext(t, RoleServer, serverConfig(key)))
		for _, suite := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
			if !slices.Contains(suite.SupportedVersions, tls.VersionTLS12) {
				continue
			}
			aead := strings.Contains(suite.Name, "_GCM_") || strings.Contains(suite.Name, "CHACHA20")
			wantKey := "ECDHE_RSA"
			if key == "server-ec" {
				wantKey = "ECDHE_ECDSA"
			}
			want := aead && strings.Contains(suite.Name, wantKey)
			cfg := &tls.Config{RootCAs: caPool(t), ServerName: "localhost", MaxVersion: tls.VersionTLS12,
				CipherSuites: []uint16{suite.ID}}
			_, err := goTLSExchange(l.ln.Addr().String(), cfg)
			if want != (err == nil) {
				t.Errorf("%s certificate, %s: %v, want accepted %v", key, suite.Name, err, want)
			}
		}
	}
}

// `openssl s_client` offering finite-field DHE only gets DHE-RSA with AES-GCM (the server
// picks its parameters, as s_server does), and a CBC or RSA key exchange suite gets nothing.
func TestDefaultCipherListWithOpenSSLClient(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("no openssl command: make deps installs it (Debian openssl)")
	}
	l := listenEngines(t, mustContext(t, RoleServer, serverConfig("server")))
	for cipher, ok := range map[string]bool{
		"DHE-RSA-AES256-GCM-SHA384":   true,
		"DHE-RSA-AES128-GCM-SHA256":   true,
		"ECDHE-RSA-AES256-GCM-SHA384": true, // what the C++ original negotiates
		"DHE-RSA-AES256-SHA":          false,
		"AES256-GCM-SHA384":           false,
		"ECDHE-RSA-AES128-SHA":        false,
	} {
		cmd := exec.Command("openssl", "s_client", "-connect", l.ln.Addr().String(), "-tls1_2", "-cipher", cipher,
			"-CAfile", cert("ca.crt"), "-verify_return_error", "-servername", "localhost")
		cmd.Stdin = strings.NewReader("")
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		got := bytes.Contains(out, []byte("Cipher is "+cipher))
		if got != ok || (ok && err != nil) {
			t.Errorf("s_client -cipher %s: %v, negotiated %v, want %v\n%s", cipher, err, got, ok, out)
		}
		if cipher == "DHE-RSA-AES256-GCM-SHA384" && !bytes.Contains(out, []byte("Server Temp Key: DH, 2048 bits")) {
			t.Errorf("DHE with a 2048-bit RSA certificate: want 2048-bit parameters\n%s", out)
		}
	}
}

// Compression is off explicitly, whatever the OpenSSL build.
func TestNoCompressionOption(t *testing.T) {
	for _, ctx := range []*Context{mustContext(t, RoleServer, serverConfig("server")), mustContext(t, RoleClient, clientConfig())} {
		if ctx.options()&sslOpNoCompression == 0 {
			t.Errorf("%v Context: SSL_OP_NO_COMPRESSION is not set (options %#x)", ctx.Role(), ctx.options())
		}
	}
}

// A length above INT_MAX is refused before any int conversion, with an error saying so.
func TestLengthsAboveIntMax(t *testing.T) {
	c2, _ := NewClientEngine(mustContext(t, RoleClient, clientConfig()))
	defer c2.Close()
	huge := make([]byte, 1<<31) // never touched: the length is refused first
	err := c2.SetSession(huge)
	if err == nil || !strings.Contains(err.Error(), "more than INT_MAX") {
		t.Errorf("SetSession of 2 GiB: %v", err)
	}
	// A PEM block is refused by Config's check before it is copied (ssl.c refuses it too).
	_, err = NewContext(RoleClient, &Config{CAPEM: huge, ServerName: "localhost"})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "CAPEM is 2147483648 bytes long, more than OpenSSL takes") {
		t.Errorf("CAPEM of 2 GiB: %v", err)
	}
}

// OpenSSL's system errors read as their text (strerror_r).
func TestSystemErrorText(t *testing.T) {
	_, err := NewContext(RoleClient, &Config{CAFile: "/nonexistent/ca.crt", ServerName: "localhost"})
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(err.Error(), "system library: No such file or directory") {
		t.Fatalf("missing CA file: %v", err)
	}
}
