//go:build ignore

// gen writes the seed corpora of the engine's fuzz targets: the frames of a real handshake and
// exchange between a client and a server engine, and hostile inputs. Run it from the module
// root:
//
//	go run ./testdata/fuzz/gen.go
//
// Each corpus entry starts with one byte that the targets use to cut the rest into frames.
package main

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/tlszmq/tlszmq"
)

func main() {
	certs := filepath.Join("testdata", "certs")
	sctx, err := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{
		CertFile: filepath.Join(certs, "server-ec.crt"), KeyFile: filepath.Join(certs, "server-ec.key")})
	if err != nil {
		log.Fatal(err)
	}
	cctx, err := tlszmq.NewContext(tlszmq.RoleClient, &tlszmq.Config{
		CAFile: filepath.Join(certs, "ca.crt"), ServerName: "localhost", MaxVersion: tlszmq.VersionTLS12})
	if err != nil {
		log.Fatal(err)
	}
	var fromClient, fromServer [][]byte
	for _, ctx := range []*tlszmq.Context{cctx, mustClient13(certs)} {
		c, _ := tlszmq.NewClientEngine(ctx)
		s, _ := tlszmq.NewServerEngine(sctx)
		c.Write([]byte("hello world!"))
		for range 10 {
			if m := c.GetData(); m != nil {
				fromClient = append(fromClient, m)
				s.PutData(m)
			}
			if s.CanRecv() {
				s.Read()
				s.Write([]byte("Got it!\x00"))
			}
			if m := s.GetData(); m != nil {
				fromServer = append(fromServer, m)
				c.PutData(m)
			}
		}
		c.Shutdown()
		fromClient = append(fromClient, c.GetData())
		c.Close()
		s.Close()
	}
	write("FuzzServerEngine", fromClient)
	write("FuzzClientEngine", fromServer)
}

func mustClient13(certs string) *tlszmq.Context {
	ctx, err := tlszmq.NewContext(tlszmq.RoleClient, &tlszmq.Config{CAFile: filepath.Join(certs, "ca.crt"), ServerName: "localhost"})
	if err != nil {
		log.Fatal(err)
	}
	return ctx
}

func write(target string, frames [][]byte) {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Fatal(err)
	}
	for i, f := range frames {
		for _, cut := range []byte{0, 5} {
			entry := append([]byte{cut}, f...)
			name := filepath.Join(dir, fmt.Sprintf("real-%02d-cut%d", i, cut))
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", entry)
			if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
				log.Fatal(err)
			}
		}
	}
	fmt.Printf("wrote %d entries in %s\n", 2*len(frames), dir)
}
