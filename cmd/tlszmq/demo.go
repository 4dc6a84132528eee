package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/tlszmq/tlszmq"
	"github.com/tlszmq/tlszmq/internal/cli"
)

// runDemo runs the seed article's exchange between a client and a server engine in memory:
// the client sends "hello world!", the server answers "Got it!", and the trace shows the bytes
// going through the BIOs.
func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo")
	certs := fs.String("certs", "testdata/certs", "folder with ca.crt, server.crt and server.key")
	quiet := fs.Bool("q", false, "leave out the DEBUG trace")
	if err := cli.Parse(fs, args, stderr); err != nil {
		return err
	}
	if err := cli.NeedFiles(filepath.Join(*certs, "ca.crt"), filepath.Join(*certs, "server.crt"), filepath.Join(*certs, "server.key")); err != nil {
		return err
	}
	ctrace, strace := prefixed(stdout, "client "), prefixed(stdout, "server ")
	if *quiet {
		ctrace, strace = nil, nil
	}
	sctx, err := tlszmq.NewContext(tlszmq.RoleServer, &tlszmq.Config{
		CertFile: filepath.Join(*certs, "server.crt"), KeyFile: filepath.Join(*certs, "server.key"), Debug: strace})
	if err != nil {
		return err
	}
	defer sctx.Close()
	cctx, err := tlszmq.NewContext(tlszmq.RoleClient, &tlszmq.Config{
		CAFile: filepath.Join(*certs, "ca.crt"), ServerName: "localhost", Debug: ctrace})
	if err != nil {
		return err
	}
	defer cctx.Close()
	c, err := tlszmq.NewClientEngine(cctx)
	if err != nil {
		return err
	}
	defer c.Close()
	s, err := tlszmq.NewServerEngine(sctx)
	if err != nil {
		return err
	}
	defer s.Close()

	fmt.Fprintln(stdout, "Sending - [hello world!]")
	if _, err := c.Write([]byte("hello world!")); err != nil {
		return err
	}
	for round := 0; ; round++ {
		if round == 10 {
			return fmt.Errorf("no exchange after %d rounds", round)
		}
		if err := s.PutData(c.GetData()); err != nil {
			return err
		}
		if msg, _ := s.Read(); msg != nil {
			fmt.Fprintf(stdout, "Received: %s\n", msg)
			fmt.Fprintln(stdout, "sending data - [Got it!]")
			if _, err := s.Write([]byte("Got it!\x00")); err != nil {
				return err
			}
		}
		if err := c.PutData(s.GetData()); err != nil {
			return err
		}
		if reply, _ := c.Read(); reply != nil {
			fmt.Fprintf(stdout, "Received - [%s]\n", trimNUL(reply))
			break
		}
	}
	st := c.ConnectionState()
	fmt.Fprintf(stdout, "%s, %s, server certificate verified: %v\n", st.VersionName, st.CipherSuite, st.Verified)
	return nil
}

// trimNUL drops the C++ server's trailing NUL.
func trimNUL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == 0 {
		return b[:n-1]
	}
	return b
}

// prefixed writes every line to w with a prefix.
func prefixed(w io.Writer, prefix string) io.Writer { return &prefixWriter{w: w, prefix: prefix} }

type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if _, err := fmt.Fprintf(p.w, "%s%s", p.prefix, b); err != nil {
		return 0, err
	}
	return len(b), nil
}
