package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tlszmq/tlszmq/internal/cli"
	"github.com/tlszmq/tlszmq/internal/perf"
)

// transportFlags are the names -transports takes.
var transportFlags = map[string]perf.Transport{
	"plain": {Name: perf.Plain}, "curve": {Name: perf.Curve},
	"aes128": {Name: perf.TLS, Suite: perf.AES128GCM}, "aes256": {Name: perf.TLS, Suite: perf.AES256GCM},
	"chacha20": {Name: perf.TLS, Suite: perf.ChaCha20}, "tls12": {Name: perf.TLS, Suite: perf.TLS12AES},
}

// The handshake and bulk streams measurements run their clients in a copy of this
// executable, which perf.RunChildIfAsked turns into the client process before anything else.
func init() { perf.RunChildIfAsked() }

// runBench measures tlszmq beside plain ZeroMQ and CURVE (see package perf) and prints a table,
// or with -json one JSON object per measurement and round. SIGINT or SIGTERM stops it: the
// table shows what was measured until then, and the exit status is 130.
func runBench(args []string, stdout, stderr io.Writer) error {
	ctx, stop := cli.SignalContext(context.Background())
	defer stop()
	return bench(ctx, args, stdout, stderr)
}

// bench is runBench until ctx ends: then it prints the table of the cases measured so far and
// returns an error wrapping cli.ErrInterrupted, without waiting for the case being measured.
func bench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench")
	o := perf.DefaultOptions()
	asJSON := fs.Bool("json", false, "print one JSON object per measurement and round instead of the table")
	quiet := fs.Bool("q", false, "do not report progress on stderr")
	fs.IntVar(&o.Rounds, "rounds", o.Rounds, "rounds: every case is measured once per round, interleaved")
	fs.DurationVar(&o.Duration, "time", o.Duration, "how long each case is measured in each round")
	patterns := fs.String("patterns", strings.Join(o.Patterns, ","), "what to measure: roundtrip, stream, streams (many clients at once), handshake, session-memory")
	transports := fs.String("transports", "plain,curve,aes128,aes256,chacha20,tls12", "transports of roundtrip, stream and streams: plain, curve, aes128, aes256, chacha20 (TLS 1.3), tls12 (ECDHE-RSA-AES128-GCM-SHA256)")
	sizes := fs.String("sizes", "64,1K,16K,256K,1M", "message sizes of roundtrip, stream and streams (suffixes K and M)")
	workers := fs.String("workers", joinInts(o.Workers), "server worker counts (ServerOptions.Workers): every tlszmq case is measured with each")
	fs.IntVar(&o.Clients, "clients", o.Clients, "clients of handshake and streams, run in another process, at the one server")
	fs.IntVar(&o.Sessions, "sessions", o.Sessions, "idle sessions opened for the memory measurement")
	if err := cli.Parse(fs, args, stderr); err != nil {
		return err
	}
	if o.Rounds < 1 || o.Duration <= 0 || o.Clients < 1 || o.Sessions < 1 {
		return cli.Usagef("-rounds, -time, -clients and -sessions must be positive")
	}
	o.Patterns = split(*patterns)
	for _, p := range o.Patterns {
		if p != perf.Roundtrip && p != perf.Stream && p != perf.Streams && p != perf.Handshake && p != perf.SessionMemory {
			return cli.Usagef("-patterns: unknown pattern %q (roundtrip, stream, streams, handshake, session-memory)", p)
		}
	}
	o.Workers = nil
	for _, f := range split(*workers) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return cli.Usagef("-workers: %q is not a worker count (1 or more)", f)
		}
		o.Workers = append(o.Workers, n)
	}
	if len(o.Workers) == 0 {
		return cli.Usagef("-workers: no worker count")
	}
	o.Transports = nil
	for _, name := range split(*transports) {
		t, ok := transportFlags[name]
		if !ok {
			return cli.Usagef("-transports: unknown transport %q (plain, curve, aes128, aes256, chacha20, tls12)", name)
		}
		o.Transports = append(o.Transports, t)
	}
	o.Sizes = nil
	for _, s := range split(*sizes) {
		n, err := parseSize(s)
		if err != nil {
			return cli.Usagef("-sizes: %v", err)
		}
		o.Sizes = append(o.Sizes, n)
	}
	// perf.Run goes on in a goroutine of its own; once the bench is interrupted, it writes
	// nothing more and ends (runtime.Goexit, which runs Run's deferred clean-up) when it next
	// reports, before its next case: perf.Run takes no context.
	var (
		mu       sync.Mutex
		sum      perf.Summary
		stopped  bool
		current  int // the case being measured, from the progress reports
		measured int // cases done
		planned  int // cases in all
	)
	start := time.Now()
	o.Progress = func(what string) {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			runtime.Goexit()
		}
		var k, n int
		if _, err := fmt.Sscanf(what, "case %d of %d", &k, &n); err == nil {
			current, planned = k, n
			what += timeLeft(time.Since(start), o.Duration, k-1, n)
		}
		if !*quiet {
			fmt.Fprintln(stderr, "tlszmq bench:", what)
		}
	}
	done := make(chan error, 1)
	go func() {
		done <- perf.Run(o, func(r perf.Result) {
			mu.Lock()
			defer mu.Unlock()
			if stopped {
				runtime.Goexit()
			}
			sum.Add(r)
			measured = current
			if *asJSON {
				perf.WriteJSON(stdout, r)
			}
		})
	}()
	header := func(note string) {
		fmt.Fprintf(stdout, "tlszmq bench: %d round(s) of %v per case, %s/%s, %d CPUs, GOMAXPROCS %d, tcp://127.0.0.1%s; medians (min–max)\n\n",
			o.Rounds, o.Duration, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), note)
	}
	select {
	case err := <-done:
		if err != nil {
			return err
		}
		if !*asJSON {
			header("")
			sum.WriteTable(stdout)
		}
		return nil
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	stopped = true
	if !*asJSON && measured > 0 {
		header(fmt.Sprintf(", interrupted after %d of %d cases", measured, planned))
		sum.WriteTable(stdout)
	}
	return cli.Interrupted(ctx, fmt.Sprintf("the end: %d of %d cases measured", measured, planned))
}

// timeLeft returns the progress line's estimate of the time left, " (about 1m20s left)", when
// done of n cases took elapsed and each is measured for at least d: before the first case is
// done, n × d (the rounds are among the n cases); then the time the cases done took each, on
// average, times the cases left.
func timeLeft(elapsed, d time.Duration, done, n int) string {
	each := d
	if done > 0 {
		each = max(d, elapsed/time.Duration(done))
	}
	left := each * time.Duration(n-done)
	if left < time.Second {
		return " (under a second left)"
	}
	return fmt.Sprintf(" (about %v left)", left.Round(time.Second))
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// joinInts is "1,2".
func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// parseSize reads "64", "16K" or "1M".
func parseSize(s string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 64<<20/mult {
		return 0, fmt.Errorf("%q is not a size from 1 byte to 64M", s)
	}
	return n * mult, nil
}
