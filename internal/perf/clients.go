package perf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// The kinds of client job besides Streams: handshakes over kept or new connections.
const (
	keptConnections = "kept"
	newConnections  = "new"
)

// clientJob is what a client process runs, sent to it as one line of JSON on its standard
// input: Clients clients of one Kind against Endpoint, until its standard input ends.
type clientJob struct {
	// Kind is keptConnections or newConnections (handshakes, see Handshakes) or Streams.
	Kind     string `json:"kind"`
	Endpoint string `json:"endpoint"`
	Clients  int    `json:"clients"`
	// Transport is Plain, Curve or TLS; a TLS client offers Suite and checks the server's
	// certificate against CAPEM, a CURVE client the server's public key CurveServerKey (Z85).
	Transport      string `json:"transport"`
	Suite          string `json:"suite,omitempty"`
	CAPEM          []byte `json:"ca_pem,omitempty"`
	CurveServerKey string `json:"curve_server_key,omitempty"`
	// Size is the message size of Streams.
	Size int `json:"size,omitempty"`
}

// clientReport is a line of JSON that a client process writes on its standard output: Ready
// once every client is under way, then Done, once its standard input has ended and the
// clients have stopped, with Count. Error ends its reports early.
type clientReport struct {
	Ready bool   `json:"ready,omitempty"`
	Done  bool   `json:"done,omitempty"`
	Count int64  `json:"count,omitempty"` // handshakes completed, or messages sent
	Error string `json:"error,omitempty"`
}

// clientTimeout bounds each wait for a client process: for its clients to be under way, and
// for them to stop.
const clientTimeout = 30 * time.Second

// clientProcess is a running client process: a copy of this executable, started with
// ChildEnv set.
type clientProcess struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	reports chan clientReport // closed when the process's standard output ends
	stderr  bytes.Buffer      // read only once the process has been waited for
}

// startClients starts a client process for job and returns once its clients are under way.
func startClients(job clientJob) (*clientProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("perf: finding this executable for the client process: %w", err)
	}
	p := &clientProcess{cmd: exec.Command(exe), reports: make(chan clientReport, 4)}
	// A binary built with the race detector sleeps a second as it exits, for late reports
	// (atexit_sleep_ms): the clients have all stopped by then.
	p.cmd.Env = append(os.Environ(), ChildEnv+"=1", "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	p.cmd.Stderr = &p.stderr
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf: starting the client process: %w", err)
	}
	go func() {
		defer close(p.reports)
		dec := json.NewDecoder(stdout)
		for {
			var r clientReport
			if dec.Decode(&r) != nil {
				return
			}
			p.reports <- r
		}
	}()
	if err := json.NewEncoder(p.stdin).Encode(job); err != nil {
		return nil, p.abort(fmt.Errorf("perf: sending the client process its job: %w", err))
	}
	r, err := p.next()
	if err == nil && !r.Ready {
		err = fmt.Errorf("perf: the client process reported %+v before its clients were under way", r)
	}
	if err != nil {
		return nil, p.abort(err)
	}
	return p, nil
}

// next is the process's next report; an error if it reports one, ends without a report or
// says nothing for clientTimeout.
func (p *clientProcess) next() (clientReport, error) {
	select {
	case r, ok := <-p.reports:
		switch {
		case !ok:
			return r, errors.New("perf: the client process ended without a report")
		case r.Error != "":
			return r, fmt.Errorf("perf: the client process: %s", r.Error)
		}
		return r, nil
	case <-time.After(clientTimeout):
		return clientReport{}, fmt.Errorf("perf: the client process reported nothing for %v", clientTimeout)
	}
}

// stop ends the clients, by closing the process's standard input, and returns their count
// once the process has exited.
func (p *clientProcess) stop() (int64, error) {
	p.stdin.Close()
	r, err := p.next()
	if err == nil && !r.Done {
		err = fmt.Errorf("perf: the client process reported %+v where its count was due", r)
	}
	if err != nil {
		return 0, p.abort(err)
	}
	for range p.reports { // to the end of its output, before Wait closes the pipe
	}
	if err := p.cmd.Wait(); err != nil {
		return 0, p.withStderr(fmt.Errorf("perf: the client process: %w", err))
	}
	return r.Count, nil
}

// abort kills the process and returns err with the end of what the process wrote on its
// standard error.
func (p *clientProcess) abort(err error) error {
	p.cmd.Process.Kill()
	p.stdin.Close()
	for range p.reports {
	}
	p.cmd.Wait()
	return p.withStderr(err)
}

// withStderr adds the last 2,000 bytes of the exited process's standard error to err.
func (p *clientProcess) withStderr(err error) error {
	s := strings.TrimSpace(p.stderr.String())
	if s == "" {
		return err
	}
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return fmt.Errorf("%w; its standard error: %s", err, s)
}

// countWithClients runs job's clients in another process and counts what a server in this
// process does while they work: it waits until they are under way, lets them warm up for
// d/10, then reads count (the server's counter) and this process's CPU time before and after
// d. It returns the counter's growth, the time it took and the CPU time used, once the
// clients have stopped without an error; it fails if they did nothing.
func countWithClients(job clientJob, count func() int64, d time.Duration) (n int, elapsed, cpu time.Duration, err error) {
	p, err := startClients(job)
	if err != nil {
		return 0, 0, 0, err
	}
	time.Sleep(d / 10)
	n0, cpu0, t0 := count(), processCPU(), time.Now()
	time.Sleep(d)
	n1, cpu1, elapsed := count(), processCPU(), time.Since(t0)
	did, err := p.stop()
	if err != nil {
		return 0, 0, 0, err
	}
	if did == 0 || n1 == n0 {
		return 0, 0, 0, fmt.Errorf("perf: %d %s clients did nothing: %d done by their own count, %d by the server's in %v",
			job.Clients, job.Kind, did, n1-n0, elapsed)
	}
	return int(n1 - n0), elapsed, cpu1 - cpu0, nil
}
