package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cmdtest"
)

func certFile(name string) string { return filepath.Join(cmdtest.Root(), "testdata", "certs", name) }

var quiet = slog.New(slog.DiscardHandler)

// openssl s_client, through the bridge, completes a handshake with the tlszmq server and
// exchanges data.
func TestBridgeSClientToServer(t *testing.T) {
	for _, v := range []string{"1.2", "1.3"} {
		for _, mutual := range []bool{false, true} {
			t.Run(fmt.Sprintf("TLS%s/mutual=%v", v, mutual), func(t *testing.T) {
				scfg := &tlszmq.Config{CertFile: certFile("server.crt"), KeyFile: certFile("server.key")}
				if mutual {
					scfg.CAFile, scfg.ClientAuth = certFile("ca.crt"), tlszmq.RequireAndVerifyClientCert
				}
				srv, err := tlszmq.NewServer(cmdtest.Context(t, tlszmq.RoleServer, scfg), "tcp://127.0.0.1:*",
					tlszmq.SinglePart(func(_ context.Context, p *tlszmq.Peer, req []byte) ([]byte, error) {
						if mutual && !p.Verified {
							return []byte("unverified\n"), nil
						}
						return bytes.ToUpper(req), nil
					}), &tlszmq.ServerOptions{Logger: quiet})
				if err != nil {
					t.Fatal(err)
				}
				cmdtest.Serve(t, srv.Serve)
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				cmdtest.Serve(t, func(ctx context.Context) error { return tcpToZMQ(ctx, ln, srv.Endpoint(), quiet) })

				args := []string{"s_client", "-connect", ln.Addr().String(), "-CAfile", certFile("ca.crt"),
					"-servername", "localhost", "-verify_return_error", "-quiet", "-tls" + strings.ReplaceAll(v, ".", "_")}
				if mutual {
					args = append(args, "-cert", certFile("client.crt"), "-key", certFile("client.key"))
				}
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, "openssl", args...)
				stdin, _ := cmd.StdinPipe()
				stdout, _ := cmd.StdoutPipe()
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				defer func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() }()
				stdin.Write([]byte("hello world!\n"))
				line, err := bufio.NewReader(stdout).ReadString('\n')
				if err != nil || line != "HELLO WORLD!\n" {
					t.Fatalf("s_client read %q, %v\n%s", line, err, stderr.String())
				}
			})
		}
	}
}

// The tlszmq client, through the bridge, talks to openssl s_server.
func TestBridgeClientToSServer(t *testing.T) {
	for _, v := range []string{"1.2", "1.3"} {
		for _, mutual := range []bool{false, true} {
			t.Run(fmt.Sprintf("TLS%s/mutual=%v", v, mutual), func(t *testing.T) {
				port := freePort(t)
				args := []string{"s_server", "-accept", port, "-cert", certFile("server-ec.crt"), "-key", certFile("server-ec.key"),
					"-rev", "-quiet", "-tls" + strings.ReplaceAll(v, ".", "_")}
				if mutual {
					args = append(args, "-Verify", "1", "-CAfile", certFile("ca.crt"))
				}
				srv := exec.Command("openssl", args...)
				var out bytes.Buffer
				srv.Stdout, srv.Stderr = &out, &out
				if err := srv.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
				waitListening(t, "127.0.0.1:"+port)
				endpoint := "ipc://" + filepath.Join(t.TempDir(), "bridge.ipc")
				cmdtest.Serve(t, func(ctx context.Context) error { return zmqToTCP(ctx, endpoint, "127.0.0.1:"+port, quiet) })

				ccfg := &tlszmq.Config{CAFile: certFile("ca.crt"), ServerName: "localhost"}
				if mutual {
					ccfg.CertFile, ccfg.KeyFile = certFile("client.crt"), certFile("client.key")
				}
				c, err := tlszmq.NewClient(cmdtest.Context(t, tlszmq.RoleClient, ccfg), endpoint, &tlszmq.ClientOptions{Pattern: tlszmq.DEALER})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				if err := c.Send(ctx, []byte("hello world!\n")); err != nil {
					t.Fatalf("%v\ns_server: %s", err, out.String())
				}
				var got []byte
				for !bytes.HasSuffix(got, []byte("\n")) {
					parts, err := c.Recv(ctx)
					if err != nil {
						t.Fatalf("after %q: %v\ns_server: %s", got, err, out.String())
					}
					got = append(got, parts[0]...)
				}
				if string(got) != "!dlrow olleh\n" {
					t.Fatalf("got %q", got)
				}
				if st := c.ConnectionState(); !st.Verified || tlszmq.VersionName(st.Version) != "TLS "+v || st.NegotiatedProtocol != "" {
					t.Fatalf("state %+v", st)
				}
			})
		}
	}
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

func waitListening(t *testing.T, addr string) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("nothing listens on %s", addr)
}
