package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlszmq/tlszmq/internal/cmdtest"
	"github.com/tlszmq/tlszmq/internal/syncbuf"
)

// tsharkNetnsEnv marks the copy of the test binary that runs in a network namespace of its own
// (a user that may not capture on the machine's loopback may capture in one of its own).
const tsharkNetnsEnv = "TLSZMQ_TSHARK_TEST_NETNS"

// Debian's tshark decrypts a capture with tlsserver's key log: crypto/tls connects over TCP to
// `tlszmq bridge`, which carries the bytes to a tlsserver run with $SSLKEYLOGFILE; tshark
// captures the TCP side, and with the key log finds the request and the reply in the
// decrypted application data, for TLS 1.2 and 1.3. Without the key log it finds neither: the
// check can fail.
func TestKeyLogTshark(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Fatal("tshark is not installed: make deps installs it (Debian tshark)")
	}
	if os.Geteuid() != 0 && os.Getenv(tsharkNetnsEnv) == "" {
		inNetns(t)
		return
	}
	if os.Getenv(tsharkNetnsEnv) != "" {
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			t.Fatalf("ip link set lo up: %v %s", err, out)
		}
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			dir := t.TempDir()
			keyLog := filepath.Join(dir, "keys.log")
			endpoint := "tcp://127.0.0.1:" + freePort(t)
			reply := "reply-" + hex.EncodeToString(randomBytes(t, 8))
			srv := exec.Command(cmdtest.Build(t, "tlsserver"), "-endpoint", endpoint, "-reply", reply,
				"-cert", certFile("server.crt"), "-key", certFile("server.key"))
			srv.Env = append(os.Environ(), "SSLKEYLOGFILE="+keyLog)
			var srvErr syncbuf.Buffer
			srv.Stdout, srv.Stderr = io.Discard, &srvErr
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() })
			waitListening(t, strings.TrimPrefix(endpoint, "tcp://"))
			addr := listenBridge(t, newBridge(bridgeOptions{Log: quiet}), endpoint)
			_, port, _ := net.SplitHostPort(addr)

			pcap := filepath.Join(dir, "bridge.pcap")
			stopCapture := capture(t, tshark, port, pcap)
			request := "request-" + hex.EncodeToString(randomBytes(t, 8))
			exchange(t, addr, v, request, reply)
			stopCapture()

			keys, err := os.ReadFile(keyLog)
			if err != nil || len(keys) == 0 {
				t.Fatalf("tlsserver wrote no key log (%v); its stderr:\n%s", err, srvErr.String())
			}
			if want := "tlsserver: warning: writing TLS secrets to $SSLKEYLOGFILE=" + keyLog +
				": anyone who reads it can decrypt the traffic\n"; !strings.Contains(srvErr.String(), want) {
				t.Errorf("tlsserver's stderr has no warning %q:\n%s", want, srvErr.String())
			}
			raw, err := os.ReadFile(pcap)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(raw, []byte(request)) || bytes.Contains(raw, []byte(reply)) {
				t.Fatal("the capture holds the messages in the clear")
			}

			records, plain := decrypt(t, tshark, pcap, port, "")
			if records == 0 {
				t.Fatalf("tshark found no TLS application data records on port %s; the capture:\n%s", port, packets(tshark, pcap, port))
			}
			if plain != "" {
				t.Fatalf("tshark decrypted %q without the key log", plain)
			}
			_, plain = decrypt(t, tshark, pcap, port, keyLog)
			if !strings.Contains(plain, request) || !strings.Contains(plain, reply) {
				t.Fatalf("with the key log, tshark decrypted %q from %d application data records; want %q and %q\nkey log:\n%s\ncapture:\n%s",
					plain, records, request, reply, keys, packets(tshark, pcap, port))
			}
			t.Logf("tshark decrypted %d application data records with the key log: %q", records, plain)
		})
	}
}

// inNetns runs TestKeyLogTshark again in a network namespace of its own (unshare -rn), and
// skips when there is none: a user that is not root may then not capture at all.
func inNetns(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("not root, and no unshare(1) for a network namespace of the test's own: tshark cannot capture")
	}
	cmd := exec.Command("unshare", "-rn", exe, "-test.run=^TestKeyLogTshark$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), tsharkNetnsEnv+"=1")
	out, err := cmd.CombinedOutput()
	if bytes.Contains(out, []byte("unshare failed")) {
		t.Skipf("not root, and no network namespace of the test's own (unshare -rn failed): tshark cannot capture\n%s", out)
	}
	if bytes.Contains(out, []byte("--- SKIP: TestKeyLogTshark")) {
		t.Skipf("not root, and tshark cannot capture in a network namespace of the test's own:\n%s", out)
	}
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestKeyLogTshark")) {
		t.Fatalf("in a network namespace of its own: %v\n%s", err, out)
	}
	t.Logf("in a network namespace of its own:\n%s", out)
}

// capture starts tshark capturing the TCP traffic of port on the loopback interface into pcap,
// and returns once it captures; the function it returns stops it once every packet so far is
// in pcap. tshark says "Capturing on" before its packets flow, and stops (SIGINT) without the
// packets not yet written: both ends are marked by a connection to a port of the test's own,
// which tshark captures too and prints (-P) once it has written it.
func capture(t *testing.T, tshark, port, pcap string) (stop func()) {
	t.Helper()
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { probe.Close() })
	go func() {
		for {
			c, err := probe.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, probePort, _ := net.SplitHostPort(probe.Addr().String())
	cmd := exec.Command(tshark, "-i", "lo", "-f", "tcp port "+port+" or tcp port "+probePort, "-w", pcap,
		"-P", "-l", "-T", "fields", "-e", "tcp.srcport")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var said syncbuf.Buffer // read while tshark may still write
	cmd.Stderr = &said
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 1024) // the source port of each packet written
	exited := make(chan struct{})   // closed once tshark has exited, with waitErr
	var waitErr error
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case seen <- strings.TrimSpace(sc.Text()):
			default: // the test reads only while it marks
			}
		}
		waitErr = cmd.Wait()
		close(exited)
	}()
	// mark connects to the probe port until tshark has written a packet of a connection.
	mark := func(what string) {
		deadline := time.After(30 * time.Second)
		for {
			c, err := net.Dial("tcp", probe.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			_, src, _ := net.SplitHostPort(c.LocalAddr().String())
			c.Close()
			wait := time.After(500 * time.Millisecond)
		wait:
			for {
				select {
				case p := <-seen:
					if p == src {
						return
					}
				case <-exited:
					if what == "start" && os.Getenv(tsharkNetnsEnv) != "" {
						t.Skipf("tshark cannot capture in a network namespace of the test's own (%v): %s", waitErr, said.String())
					}
					t.Fatalf("tshark -i lo exited (%v) before the %s of the capture:\n%s", waitErr, what, said.String())
				case <-wait:
					break wait
				case <-deadline:
					cmd.Process.Kill()
					t.Fatalf("tshark wrote no packet of the %s of the capture in 30 s:\n%s", what, said.String())
				}
			}
		}
	}
	mark("start")
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		mark("end")
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Fatal("tshark did not stop in 10 s after SIGINT")
		}
	}
	t.Cleanup(func() {
		if !stopped {
			stopped = true
			cmd.Process.Kill()
			<-exited
		}
	})
	return stop
}

// exchange connects crypto/tls at version v to the bridge at addr, sends request and reads
// the reply (tlsserver's fixed answer, NUL-terminated as the C++ server's), then closes.
func exchange(t *testing.T, addr string, v uint16, request, reply string) {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(raw, &tls.Config{RootCAs: caPool(t), ServerName: "localhost", MinVersion: v, MaxVersion: v})
	if _, err := tc.Write([]byte(request)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(reply)+1)
	if _, err := io.ReadFull(tc, got); err != nil || string(got) != reply+"\x00" {
		t.Fatalf("read %q, %v; want %q", got, err, reply+"\x00")
	}
	tc.Close()
}

// decrypt has tshark read pcap, taking port's TCP traffic as TLS, with the key log keyLog
// (none when ""): it returns the number of TLS application data records and the decrypted
// application data, in order.
func decrypt(t *testing.T, tshark, pcap, port, keyLog string) (records int, plain string) {
	t.Helper()
	args := []string{"-r", pcap, "-d", "tcp.port==" + port + ",tls", "-T", "fields", "-e", "tls.app_data", "-e", "data.data"}
	if keyLog != "" {
		args = append(args, "-o", "tls.keylog_file:"+keyLog)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tshark, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	// One line a packet: the records' ciphertext, a tab, the decrypted data (tshark's "data"
	// protocol: no dissector claims it), each field's values separated by commas, in hex.
	for _, line := range strings.Split(string(out), "\n") {
		appData, data, _ := strings.Cut(line, "\t")
		if appData != "" {
			records += strings.Count(appData, ",") + 1
		}
		for _, h := range strings.Split(data, ",") {
			b, err := hex.DecodeString(strings.ReplaceAll(h, ":", ""))
			if err != nil {
				t.Fatalf("tshark's data.data %q: %v", h, err)
			}
			plain += string(b)
		}
	}
	return records, plain
}

// packets is tshark's one line a packet of pcap, for a failure's message.
func packets(tshark, pcap, port string) string {
	out, err := exec.Command(tshark, "-r", pcap, "-d", "tcp.port=="+port+",tls").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("tshark -r: %v\n%s", err, out)
	}
	return string(out)
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
