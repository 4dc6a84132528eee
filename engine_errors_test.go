package tlszmq

import (
	"errors"
	"strings"
	"testing"
)

// Configurations OpenSSL refuses when the Context is made.
func TestContextErrors(t *testing.T) {
	cases := []struct {
		name string
		role Role
		cfg  *Config
		want []string // substrings of the error, OpenSSL's own words among them
		is   error
	}{
		{"missing certificate file", RoleServer, &Config{CertFile: "nope.crt", KeyFile: cert("server.key")},
			[]string{"loading the certificate file", "No such file or directory", "nope.crt"}, nil},
		{"missing key file", RoleServer, &Config{CertFile: cert("server.crt"), KeyFile: "nope.key"},
			[]string{"loading the private key file", "No such file or directory"}, nil},
		{"key of another certificate", RoleServer, &Config{CertFile: cert("server.crt"), KeyFile: cert("client.key")},
			[]string{"private key", "key values mismatch"}, nil},
		{"garbage certificate PEM", RoleServer, &Config{CertPEM: []byte("not a certificate"), KeyFile: cert("server.key")},
			[]string{"loading the certificate PEM", "no start line"}, nil},
		{"missing CA file", RoleClient, &Config{CAFile: "nope-ca.crt"},
			[]string{"loading the CA certificates", "No such file or directory"}, nil},
		{"1024-bit certificate at the default level", RoleServer, serverConfig("legacy"),
			[]string{"loading the certificate file", "ee key too small"}, nil},
		{"unknown TLS 1.2 cipher", RoleClient, &Config{CipherList: "NO-SUCH-CIPHER"},
			[]string{"setting the TLS 1.2 cipher list", "no cipher match"}, nil},
		{"unknown TLS 1.3 suite", RoleClient, &Config{CipherSuites: "TLS_NO_SUCH_SUITE"},
			[]string{"setting the TLS 1.3 cipher suites", "no cipher match"}, nil},
		{"unknown group", RoleClient, &Config{Groups: "P-999"},
			[]string{"setting the key exchange groups"}, nil},
		{"server without certificate", RoleServer, &Config{},
			[]string{"a server needs a certificate"}, ErrInvalidConfig},
		{"certificate without key", RoleClient, &Config{CertFile: cert("client.crt")},
			[]string{"needs its private key"}, ErrInvalidConfig},
		{"TLS 1.1", RoleClient, &Config{MinVersion: 0x0302},
			[]string{"MinVersion 0x0302 is not supported"}, ErrInvalidConfig},
		{"min above max", RoleClient, &Config{MinVersion: VersionTLS13, MaxVersion: VersionTLS12},
			[]string{"MinVersion TLS 1.3 is above MaxVersion TLS 1.2"}, ErrInvalidConfig},
		{"client auth without CA", RoleServer, &Config{CertFile: cert("server.crt"), KeyFile: cert("server.key"), ClientAuth: RequireAndVerifyClientCert},
			[]string{"needs CAFile"}, ErrInvalidConfig},
		{"security level 6", RoleClient, &Config{SecurityLevel: 6}, []string{"SecurityLevel 6"}, ErrInvalidConfig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, err := NewContext(tc.role, tc.cfg)
			if err == nil {
				ctx.Close()
				t.Fatal("NewContext succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "tlszmq: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
			var e *Error
			if tc.is == nil && (!errors.As(err, &e) || len(e.Reasons) == 0) {
				t.Errorf("error %q carries no OpenSSL reasons", err)
			}
		})
	}
}

// Handshakes that must fail, and how each side reports it.
func TestHandshakeErrors(t *testing.T) {
	withCA := func(c *Config, ca string) *Config { c.CAFile = cert(ca); return c }
	clientWith := func(f func(*Config)) *Config { c := clientConfig(); f(c); return c }
	serverWith := func(name string, f func(*Config)) *Config { c := serverConfig(name); f(c); return c }
	mutual := func(c *Config) { c.CAFile = cert("ca.crt"); c.ClientAuth = RequireAndVerifyClientCert }

	cases := []struct {
		name         string
		client       *Config
		server       *Config
		clientWant   []string
		serverWant   []string
		clientVerify int // expected CertificateVerificationError code on the client, 0 for none
		serverVerify int
		clientAlert  string // expected alert the client received, "" for not checked
	}{
		{name: "unknown CA",
			client: withCA(clientConfig(), "other-ca.crt"), server: serverConfig("server"),
			clientWant: []string{"certificate verify failed: unable to get local issuer certificate"}, clientVerify: 20,
			serverWant: []string{"unknown ca"}},
		{name: "wrong host name",
			client: clientConfig(), server: serverConfig("wronghost"),
			clientWant: []string{"certificate verify failed: hostname mismatch"}, clientVerify: 62},
		{name: "wrong IP address",
			client: clientWith(func(c *Config) { c.ServerName = "127.0.0.2" }), server: serverConfig("server"),
			clientWant: []string{"certificate verify failed: IP address mismatch"}, clientVerify: 64},
		{name: "expired certificate",
			client: clientConfig(), server: serverConfig("expired"),
			clientWant: []string{"certificate verify failed: certificate has expired"}, clientVerify: 10},
		{name: "self-signed certificate",
			client: clientConfig(), server: serverConfig("selfsigned"),
			clientWant: []string{"certificate verify failed: self-signed certificate"}, clientVerify: 18},
		{name: "client certificate required but absent TLS1.3",
			client: clientConfig(), server: serverWith("server", mutual),
			serverWant:  []string{"peer did not return a certificate"},
			clientWant:  []string{"certificate required"},
			clientAlert: "certificate required"},
		{name: "client certificate required but absent TLS1.2",
			client: clientWith(func(c *Config) { c.MaxVersion = VersionTLS12 }), server: serverWith("server", mutual),
			serverWant:  []string{"peer did not return a certificate"},
			clientAlert: "handshake failure"},
		{name: "client certificate from another CA",
			client:     clientWith(func(c *Config) { c.CertFile, c.KeyFile = cert("other-client.crt"), cert("other-client.key") }),
			server:     serverWith("server", mutual),
			serverWant: []string{"certificate verify failed: unable to get local issuer certificate"}, serverVerify: 20,
			clientAlert: "unknown CA"},
		{name: "expired client certificate",
			client:     clientWith(func(c *Config) { c.CertFile, c.KeyFile = cert("expired-client.crt"), cert("expired-client.key") }),
			server:     serverWith("server", mutual),
			serverWant: []string{"certificate verify failed: certificate has expired"}, serverVerify: 10},
		{name: "version mismatch",
			client:     clientWith(func(c *Config) { c.MaxVersion = VersionTLS12 }),
			server:     serverWith("server", func(c *Config) { c.MinVersion = VersionTLS13 }),
			serverWant: []string{"unsupported protocol"}, clientAlert: "protocol version"},
		{name: "no shared cipher",
			client:     clientWith(func(c *Config) { c.MaxVersion = VersionTLS12; c.CipherList = "ECDHE-ECDSA-AES128-GCM-SHA256" }),
			server:     serverConfig("server"),
			serverWant: []string{"no shared cipher"}, clientAlert: "handshake failure"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, s := newPair(t, tc.client, tc.server)
			cerr, serr := handshake(c, s)
			check := func(side string, err error, want []string, code int) {
				if len(want) == 0 && code == 0 {
					return
				}
				if err == nil {
					t.Fatalf("%s: no error", side)
				}
				for _, w := range want {
					if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(w)) {
						t.Errorf("%s error %q lacks %q", side, err, w)
					}
				}
				var v *CertificateVerificationError
				if code != 0 && (!errors.As(err, &v) || v.Code != code) {
					t.Errorf("%s error %q: verification code %v, want %d", side, err, v, code)
				}
			}
			check("client", cerr, tc.clientWant, tc.clientVerify)
			check("server", serr, tc.serverWant, tc.serverVerify)
			if tc.clientAlert != "" {
				var a *AlertError
				if !errors.As(c.Err(), &a) || a.Sent || a.Text != tc.clientAlert {
					t.Errorf("client error %v: want the received alert %q", c.Err(), tc.clientAlert)
				}
			}
			// The first error is sticky.
			if cerr != nil {
				if _, err := c.Write([]byte("x")); err != cerr {
					t.Errorf("Write after failure: %v, want %v", err, cerr)
				}
				if err := c.PutData([]byte{22, 3, 3, 0, 1, 0}); err != cerr {
					t.Errorf("PutData after failure: %v, want %v", err, cerr)
				}
			}
		})
	}
}

// The server that rejects a client queues the alert that says why, and GetData hands it out.
func TestAlertLeavesAfterFailure(t *testing.T) {
	scfg := serverConfig("server")
	scfg.CAFile, scfg.ClientAuth = cert("ca.crt"), RequireAndVerifyClientCert
	c, s := newPair(t, clientConfig(), scfg)
	c.Update()
	var serr error
	for range 5 {
		if serr = s.PutData(c.GetData()); serr != nil {
			break
		}
		c.PutData(s.GetData())
	}
	if serr == nil {
		t.Fatal("the server accepted a client without a certificate")
	}
	alert := s.GetData() // a TLS 1.3 alert here, so an encrypted record
	if len(alert) == 0 {
		t.Fatal("after the failure GetData has nothing: the alert was lost")
	}
	c.PutData(alert)
	var a *AlertError
	if !errors.As(c.Err(), &a) || a.Code != 116 {
		t.Fatalf("client: %v, want alert 116 (certificate required)", c.Err())
	}
}

func TestInsecureSkipVerify(t *testing.T) {
	ccfg := &Config{InsecureSkipVerify: true, ServerName: "localhost"}
	c, s := newPair(t, ccfg, serverConfig("selfsigned"))
	if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
		t.Fatalf("handshake: %v %v", cerr, serr)
	}
	st := c.ConnectionState()
	if st.Verified || len(st.PeerCertificates) == 0 {
		t.Fatalf("an unverified peer reads as verified: %+v", st)
	}
}

// The C++ original's 1024-bit SHA-1 certificate loads only when the level is lowered, and then
// works with a client that lowers its own level too.
func TestLegacyCertificateSecurityLevel(t *testing.T) {
	for _, level := range []int{1, SecurityLevelZero} {
		scfg := serverConfig("legacy")
		scfg.SecurityLevel = level
		ccfg := &Config{InsecureSkipVerify: true, SecurityLevel: level, MaxVersion: VersionTLS12}
		c, s := newPair(t, ccfg, scfg)
		if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
			t.Fatalf("level %d: handshake: %v %v", level, cerr, serr)
		}
		if got := roundTrip(t, c, s, []byte("hello world!")); string(got) != "hello world!" {
			t.Fatalf("level %d: got %q", level, got)
		}
	}
	// A client that verifies the certificate (trusting it directly) refuses its small key at
	// the default level, and accepts it at level 1.
	scfg := serverConfig("legacy")
	scfg.SecurityLevel = 1
	ccfg := &Config{CAFile: cert("legacy.crt"), ServerName: "localhost", MaxVersion: VersionTLS12}
	c, s := newPair(t, ccfg, scfg)
	cerr, _ := handshake(c, s)
	var v *CertificateVerificationError
	if !errors.As(cerr, &v) || !strings.Contains(v.Reason, "key too weak") {
		t.Fatalf("verifying client at the default level: %v, want a key-too-weak verification error", cerr)
	}
	ccfg.SecurityLevel = 1
	c, s = newPair(t, ccfg, scfg)
	if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
		t.Fatalf("verifying client at level 1: %v %v", cerr, serr)
	}
}

// A chain in one PEM (leaf, then intermediate) is sent whole and verifies.
func TestCertificateChain(t *testing.T) {
	c, s := newPair(t, clientConfig(), serverConfig("server-chain"))
	if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
		t.Fatalf("handshake: %v %v", cerr, serr)
	}
	st := c.ConnectionState()
	if !st.Verified || len(st.PeerCertificates) != 2 || st.PeerCertificates[1].Subject.CommonName != "tlszmq intermediate CA" {
		t.Fatalf("state %+v", st)
	}
}

// Mutual TLS with certificates and keys given as PEM bytes.
func TestMutualTLSFromPEM(t *testing.T) {
	read := func(name string) []byte {
		b, err := readFile(cert(name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, kind := range []string{"", "-ec"} {
		ccfg := &Config{CertPEM: read("client" + kind + ".crt"), KeyPEM: read("client" + kind + ".key"), CAPEM: read("ca.crt"), ServerName: "localhost"}
		scfg := &Config{CertPEM: read("server-chain.crt"), KeyPEM: read("server-chain.key"), CAPEM: read("ca.crt"), ClientAuth: RequireAndVerifyClientCert}
		c, s := newPair(t, ccfg, scfg)
		if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
			t.Fatalf("handshake: %v %v", cerr, serr)
		}
		st := s.ConnectionState()
		if !st.Verified || len(st.PeerCertificates) == 0 || st.PeerCertificates[0].Subject.CommonName != "tlszmq client"+kind {
			t.Fatalf("server's view of the client: %+v", st)
		}
	}
}

func TestOptionalClientCertificate(t *testing.T) {
	scfg := serverConfig("server")
	scfg.CAFile, scfg.ClientAuth = cert("ca.crt"), VerifyClientCertIfGiven
	c, s := newPair(t, clientConfig(), scfg)
	if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
		t.Fatalf("no certificate: %v %v", cerr, serr)
	}
	if st := s.ConnectionState(); st.Verified || len(st.PeerCertificates) != 0 {
		t.Fatalf("state %+v", st)
	}
	ccfg := clientConfig()
	ccfg.CertFile, ccfg.KeyFile = cert("client.crt"), cert("client.key")
	c, s = newPair(t, ccfg, scfg)
	if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
		t.Fatalf("with a certificate: %v %v", cerr, serr)
	}
	if st := s.ConnectionState(); !st.Verified {
		t.Fatalf("state %+v", st)
	}
}
