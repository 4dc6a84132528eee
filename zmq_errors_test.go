package tlszmq

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The texts a Client's caller reads: one "tlszmq:" prefix, the operation and the endpoint, and
// for a wrong CA the reason, the subject and the issuer of the server's certificate; the
// sentinels are found with errors.Is through them.
func TestClientErrorTexts(t *testing.T) {
	// A server that verifies its clients against ca.crt: before SSL_MODE_NO_AUTO_CHAIN it
	// sent ca.crt after its own certificate, and a client with another CA read "self-signed
	// certificate in certificate chain".
	scfg := serverConfig("server")
	scfg.CAFile = cert("ca.crt")
	scfg.ClientAuth = VerifyClientCertIfGiven
	srv := startServer(t, scfg, "tcp://127.0.0.1:*", echo, nil)

	otherCA := clientConfig()
	otherCA.CAFile = cert("other-ca.crt")
	c := newClient(t, otherCA, srv.Endpoint(), &ClientOptions{Timeout: 5 * time.Second})
	_, err := c.Request(ctxTimeout(t, 10*time.Second), []byte("x"))
	var v *CertificateVerificationError
	if !errors.As(err, &v) || v.Code != 20 {
		t.Fatalf("wrong CA: %v, want a CertificateVerificationError with code 20", err)
	}
	for _, want := range []string{"tlszmq: handshake with " + srv.Endpoint() + ": ", "unable to get local issuer certificate",
		"subject CN=localhost", "issuer CN=tlszmq test CA"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("wrong CA: %q does not say %q", err, want)
		}
	}
	if n := strings.Count(err.Error(), "tlszmq:"); n != 1 {
		t.Errorf("wrong CA: %q has %d prefixes", err, n)
	}
	if len(v.UnverifiedChain) != 1 {
		t.Errorf("the server sent %d certificates, want its own alone", len(v.UnverifiedChain))
	}

	// A closed client, a peer's close_notify, a closed server.
	good := newClient(t, clientConfig(), srv.Endpoint(), nil)
	if _, err := good.Request(ctxTimeout(t, 10*time.Second), []byte("x")); err != nil {
		t.Fatal(err)
	}
	good.Close()
	_, err = good.Request(ctxTimeout(t, time.Second), []byte("x"))
	if !errors.Is(err, ErrClosed) || err.Error() != "tlszmq: client for "+srv.Endpoint()+": use of a closed client" {
		t.Errorf("closed client: %q", err)
	}

	peer := newClient(t, clientConfig(), srv.Endpoint(), &ClientOptions{Pattern: DEALER}) // a REQ socket drops what it did not ask for
	if _, err := peer.Request(ctxTimeout(t, 10*time.Second), []byte("x")); err != nil {
		t.Fatal(err)
	}
	srv.Close() // close_notify to every session
	time.Sleep(100 * time.Millisecond)
	_, err = peer.Request(ctxTimeout(t, 5*time.Second), []byte("x"))
	if !errors.Is(err, ErrPeerClosed) || !errors.Is(err, io.EOF) || !strings.Contains(err.Error(), srv.Endpoint()) {
		t.Errorf("peer closed: %q, want ErrPeerClosed and io.EOF, naming the endpoint", err)
	}
	if err := srv.Serve(ctxTimeout(t, time.Second)); !errors.Is(err, ErrClosed) || !strings.HasSuffix(err.Error(), "use of a closed server") {
		t.Errorf("closed server: %q", err)
	}
}

// An encrypted private key without its password fails with an error that says so, and never
// asks on the terminal (the test has no terminal: a prompt would fail or hang); with the
// password it loads.
func TestEncryptedKey(t *testing.T) {
	key := filepath.Join(t.TempDir(), "encrypted.key")
	out, err := exec.Command("openssl", "pkey", "-in", cert("server.key"), "-aes256", "-passout", "pass:s3cret", "-out", key).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl pkey: %v: %s", err, out)
	}
	pem, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"file without password", Config{CertFile: cert("server.crt"), KeyFile: key}, "the key is encrypted and Config.KeyPassword is not set"},
		{"PEM without password", Config{CertFile: cert("server.crt"), KeyPEM: pem}, "the key is encrypted and Config.KeyPassword is not set"},
		{"wrong password", Config{CertFile: cert("server.crt"), KeyFile: key, KeyPassword: "wrong"}, "Config.KeyPassword does not decrypt the key"},
		{"password", Config{CertFile: cert("server.crt"), KeyFile: key, KeyPassword: "s3cret"}, ""},
		{"PEM with password", Config{CertFile: cert("server.crt"), KeyPEM: pem, KeyPassword: "s3cret"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, err := NewContext(RoleServer, &tc.cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				ctx.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want an error saying %q", err, tc.want)
			}
		})
	}
}
