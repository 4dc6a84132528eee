package tlszmq

import (
	"testing"

	"github.com/tlszmq/tlszmq/internal/cbench"
)

// The engine's loops beside the same loops in plain C (internal/cbench), so that the cost of
// Go and cgo shows as a ratio: BenchmarkHandshake/*/go against */c, BenchmarkBulk likewise.
// Both use TLS 1.3 with TLS_AES_128_GCM_SHA256 and OpenSSL's default groups (X25519).

const benchSuite = "TLS_AES_128_GCM_SHA256"

func BenchmarkHandshake(b *testing.B) {
	for _, key := range []struct{ name, file string }{{"RSA-2048", "server"}, {"ECDSA-P256", "server-ec"}} {
		b.Run(key.name+"/go", func(b *testing.B) {
			cctx := mustContext(b, RoleClient, &Config{InsecureSkipVerify: true, CipherSuites: benchSuite})
			sctx := mustContext(b, RoleServer, serverConfig(key.file))
			b.ReportAllocs()
			for b.Loop() {
				c, _ := NewClientEngine(cctx)
				s, _ := NewServerEngine(sctx)
				if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
					b.Fatal(cerr, serr)
				}
				c.Close()
				s.Close()
			}
		})
		b.Run(key.name+"/c", func(b *testing.B) {
			p, err := cbench.NewPair(cert(key.file+".crt"), cert(key.file+".key"), benchSuite, false)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			b.ResetTimer()
			if err := p.Handshakes(b.N); err != nil {
				b.Fatal(err)
			}
		})
	}
}

func BenchmarkBulk(b *testing.B) {
	for _, size := range []int{64, 1 << 10, 16 << 10, 1 << 20} {
		b.Run(sizeName(size)+"/go", func(b *testing.B) {
			c, s := newPair(b, &Config{InsecureSkipVerify: true, CipherSuites: benchSuite}, serverConfig("server-ec"))
			if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
				b.Fatal(cerr, serr)
			}
			msg := make([]byte, size)
			frame := make([]byte, 0, size+1024)
			plain := make([]byte, 0, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				c.Write(msg)
				frame = c.AppendData(frame[:0])
				if err := s.PutData(frame); err != nil {
					b.Fatal(err)
				}
				plain, _ = s.AppendRead(plain[:0])
				if len(plain) != size {
					b.Fatalf("read %d bytes, want %d", len(plain), size)
				}
			}
		})
		b.Run(sizeName(size)+"/c", func(b *testing.B) {
			p, err := cbench.NewPair(cert("server-ec.crt"), cert("server-ec.key"), benchSuite, false)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			if err := p.Bulk(size, 1); err != nil { // the handshake, outside the timing
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			b.ResetTimer()
			if err := p.Bulk(size, b.N); err != nil {
				b.Fatal(err)
			}
		})
	}
}
