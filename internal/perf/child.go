package perf

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/tlszmq/tlszmq"
)

// ChildEnv is the environment variable that makes a process the client process of a
// handshake or bulk streams measurement (see RunChildIfAsked).
const ChildEnv = "TLSZMQ_BENCH_CLIENTS"

// RunChildIfAsked returns at once unless the environment holds ChildEnv. Then the process is
// a measurement's client process, a copy of the measuring executable (os.Executable): it
// reads its job from standard input, runs the clients until standard input ends, reports on
// standard output, and exits. A program that measures handshakes or bulk streams calls it
// before anything else (the tlszmq command in an init function; a test binary in TestMain).
func RunChildIfAsked() {
	if os.Getenv(ChildEnv) == "" {
		return
	}
	os.Exit(runChild(os.Stdin, os.Stdout))
}

// clientLoop is one client of a job: client number i works until stop is set, and calls did
// after each handshake or message.
type clientLoop func(i int, stop *atomic.Bool, did func()) error

// runChild is the client process: it reads the job from in, reports on out once every client
// has done something (Ready), runs them until in ends, and reports their count (Done). It
// returns the process's exit code.
func runChild(in io.Reader, out io.Writer) int {
	enc := json.NewEncoder(out)
	fail := func(err error) int {
		enc.Encode(clientReport{Error: err.Error()})
		return 1
	}
	dec := json.NewDecoder(in)
	var job clientJob
	if err := dec.Decode(&job); err != nil {
		return fail(fmt.Errorf("reading the job: %w", err))
	}
	if job.Clients < 1 {
		return fail(fmt.Errorf("a job of %d clients", job.Clients))
	}
	client, release, err := job.loop()
	if err != nil {
		return fail(err)
	}
	defer release()

	var stop atomic.Bool
	var done atomic.Int64
	started, ended := make(chan error, job.Clients), make(chan error, job.Clients)
	for i := range job.Clients {
		go func() {
			first := true
			err := client(i, &stop, func() {
				done.Add(1)
				if first {
					first = false
					started <- nil
				}
			})
			if first {
				started <- cmp.Or(err, errors.New("a client stopped before it started"))
			}
			ended <- err
		}()
	}
	for range job.Clients {
		if err := <-started; err != nil {
			return fail(err)
		}
	}
	enc.Encode(clientReport{Ready: true})
	io.Copy(io.Discard, io.MultiReader(dec.Buffered(), in)) // until the measurement is over
	stop.Store(true)
	timeout := time.After(clientTimeout / 2)
	for range job.Clients {
		select {
		case err := <-ended:
			if err != nil {
				return fail(err)
			}
		case <-timeout:
			return fail(errors.New("the clients did not stop"))
		}
	}
	enc.Encode(clientReport{Done: true, Count: done.Load()})
	return 0
}

// loop is the client of the job, and what frees what the clients share once they are done.
func (job clientJob) loop() (clientLoop, func(), error) {
	if job.Kind == Streams && job.Transport != TLS {
		return func(_ int, stop *atomic.Bool, did func()) error {
			return streamZMQ(job.Endpoint, job.CurveServerKey, job.Size, stop, did)
		}, func() {}, nil
	}
	if job.Transport != TLS {
		return nil, nil, fmt.Errorf("no %s clients over %q", job.Kind, job.Transport)
	}
	ctx, err := tlszmq.NewContext(tlszmq.RoleClient, clientConfig(job.CAPEM, job.Suite))
	if err != nil {
		return nil, nil, err
	}
	release := func() { ctx.Close() }
	switch job.Kind {
	case keptConnections:
		return func(i int, stop *atomic.Bool, did func()) error {
			return keptConnection(ctx, job.Endpoint, i, stop, did)
		}, release, nil
	case newConnections:
		return func(_ int, stop *atomic.Bool, did func()) error {
			return newConnection(ctx, job.Endpoint, stop, did)
		}, release, nil
	case Streams:
		return func(_ int, stop *atomic.Bool, did func()) error {
			return streamTLS(ctx, job.Endpoint, job.Size, stop, did)
		}, release, nil
	}
	release()
	return nil, nil, fmt.Errorf("an unknown kind of client job %q", job.Kind)
}
