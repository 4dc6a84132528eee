package tlszmq

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// floodPair is an established TLS 1.3 (or 1.2) pair whose client is the flooding peer: its
// OpenSSL writes the KeyUpdates and records (Engine.testFlood).
func floodPair(t *testing.T, version uint16, scfg *Config) (c, s *Engine) {
	t.Helper()
	ccfg := clientConfig()
	ccfg.MinVersion, ccfg.MaxVersion = version, version
	if scfg == nil {
		scfg = serverConfig("server-ec")
	}
	c, s = newPair(t, ccfg, scfg)
	if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
		t.Fatalf("handshake: %v %v", cerr, serr)
	}
	roundTrip(t, c, s, []byte("before"))
	return c, s
}

// flood returns what the client sends for n KeyUpdates (keyUpdate 0: none), each followed by
// a record of appLen bytes (none for 0).
func flood(t *testing.T, c *Engine, n, keyUpdate, appLen int) []byte {
	t.Helper()
	frame, err := c.testFlood(n, keyUpdate, appLen, n*(64+appLen)+4096)
	if err != nil {
		t.Fatalf("flood: %v", err)
	}
	return frame
}

// A frame of 100,000 KeyUpdates (alone, with a byte of data after each, or asking for an
// update back) fails the session at the 33rd, in far less time than OpenSSL alone takes to
// read them all (about 1 s: it has no bound of its own), and the peer gets unexpected_message.
func TestKeyUpdateFlood(t *testing.T) {
	for _, tc := range []struct {
		name              string
		keyUpdate, appLen int
	}{{"bare", 1, 0}, {"interleaved-with-data", 1, 1}, {"update-requested", 2, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := floodPair(t, VersionTLS13, nil)
			frame := flood(t, c, 100000, tc.keyUpdate, tc.appLen)
			start := time.Now()
			err := s.PutData(frame)
			took := time.Since(start)
			t.Logf("a %d-byte frame of 100,000 KeyUpdates: %v after %v", len(frame), err, took)
			if !errors.Is(err, ErrTooManyKeyUpdates) {
				t.Fatalf("PutData: %v, want ErrTooManyKeyUpdates", err)
			}
			if want := "peer sent too many KeyUpdate messages [33 KeyUpdate messages in one frame, more than the 32 allowed"; !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
			if took > time.Second {
				t.Errorf("the pump took %v, want well under a second", took)
			}
			var alert *AlertError
			if !errors.As(err, &alert) || !alert.Sent || alert.Code != 10 {
				t.Errorf("server error %v: want unexpected_message sent", err)
			}
			// The peer's OpenSSL reads the alert: unexpected_message.
			c.PutData(s.GetData())
			if !errors.As(c.Err(), &alert) || alert.Sent || alert.Code != 10 {
				t.Errorf("client error %v: want unexpected_message received", c.Err())
			}
		})
	}
}

// The bound is exact: 32 KeyUpdates in a frame are read, and the session goes on (with data
// both ways, and an update asked for and given back); 33 fail it. Over the session, a peer
// earns one more KeyUpdate per 64 KiB of data it sends. A lower bound is kept too.
func TestKeyUpdatesUnderTheBound(t *testing.T) {
	c, s := floodPair(t, VersionTLS13, nil)
	earn := make([]byte, 2<<20+64<<10) // 32 KeyUpdates' worth, and one more
	for i := range 5 {                 // 160 in the session, 32 a frame, each frame earned by the data after it
		if err := s.PutData(flood(t, c, DefaultMaxKeyUpdates, 1, 1)); err != nil {
			t.Fatalf("frame %d of 32 KeyUpdates: %v", i, err)
		}
		if got, _ := s.Read(); len(got) != DefaultMaxKeyUpdates {
			t.Fatalf("frame %d: read %d bytes, want %d", i, len(got), DefaultMaxKeyUpdates)
		}
		if got := roundTrip(t, c, s, earn); len(got) != len(earn) {
			t.Fatalf("frame %d: %d bytes of data went through, want %d", i, len(got), len(earn))
		}
	}
	if err := s.PutData(flood(t, c, 3, 2, 0)); err != nil { // updates asked for
		t.Fatal(err)
	}
	if _, err := transfer(s, c, whole); err != nil { // the server's own KeyUpdate
		t.Fatal(err)
	}
	for _, msg := range []string{"after", "the updates"} {
		if got := roundTrip(t, c, s, []byte(msg)); string(got) != msg {
			t.Fatalf("client→server %q", got)
		}
		if got := roundTrip(t, s, c, []byte(msg)); string(got) != msg {
			t.Fatalf("server→client %q", got)
		}
	}
	if err := s.PutData(flood(t, c, DefaultMaxKeyUpdates+1, 1, 0)); !errors.Is(err, ErrTooManyKeyUpdates) {
		t.Fatalf("33 KeyUpdates: %v, want ErrTooManyKeyUpdates", err)
	}

	scfg := serverConfig("server-ec")
	scfg.MaxKeyUpdates = 4
	c, s = floodPair(t, VersionTLS13, scfg)
	if err := s.PutData(flood(t, c, 4, 1, 0)); err != nil {
		t.Fatalf("4 KeyUpdates with MaxKeyUpdates 4: %v", err)
	}
	if err := s.PutData(flood(t, c, 5, 1, 0)); !errors.Is(err, ErrTooManyKeyUpdates) {
		t.Fatalf("5 KeyUpdates with MaxKeyUpdates 4: %v", err)
	}
	if _, err := NewContext(RoleServer, &Config{CertFile: cert("server.crt"), KeyFile: cert("server.key"), MaxKeyUpdates: -1}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("MaxKeyUpdates -1: %v, want ErrInvalidConfig", err)
	}
}

// A frame of 100,000 one-byte records fails a server's session once it has more than
// DefaultMaxRecordsPerPump records beyond one per 16 KiB; over TLS 1.3 the peer gets
// unexpected_message, over TLS 1.2 no alert (none would be true).
func TestRecordFlood(t *testing.T) {
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			c, s := floodPair(t, ver.v, nil)
			frame := flood(t, c, 100000, 0, 1)
			start := time.Now()
			err := s.PutData(frame)
			took := time.Since(start)
			t.Logf("a %d-byte frame of 100,000 one-byte records: %v after %v", len(frame), err, took)
			if !errors.Is(err, ErrTooManyRecords) {
				t.Fatalf("PutData: %v, want ErrTooManyRecords", err)
			}
			if took > 500*time.Millisecond {
				t.Errorf("the pump took %v", took)
			}
			// The plaintext of the records read before the bound was passed, and of the one
			// that passed it, is authentic and stays readable; nothing after it was read.
			if got, _ := s.Read(); len(got) > DefaultMaxRecordsPerPump+len(frame)/16384+1 {
				t.Errorf("read %d bytes of the flood, more records than the bound", len(got))
			}
			var alert *AlertError
			sent := errors.As(err, &alert)
			if ver.v == VersionTLS13 && (!sent || !alert.Sent || alert.Code != 10) {
				t.Errorf("TLS 1.3: error %v, want unexpected_message sent", err)
			}
			if ver.v == VersionTLS12 && (sent || s.NeedsWrite()) {
				t.Errorf("TLS 1.2: error %v, %d bytes for the peer: want no alert", err, len(s.GetData()))
			}
		})
	}
}

// Frames of full records never reach the bound, whatever its value and their size; tiny
// records do. A client Context has no bound by default: a tlszmq server answers each message
// of a batch with a record of its own.
func TestRecordBoundCountsOnlyWhatFullRecordsDoNotExplain(t *testing.T) {
	scfg := serverConfig("server-ec")
	scfg.MaxRecordsPerPump = 10
	c, s := floodPair(t, VersionTLS13, scfg)
	big := pattern(4 << 20) // 256 full records in one frame
	if got := roundTrip(t, c, s, big); !bytes.Equal(got, big) {
		t.Fatal("4 MiB message")
	}
	if err := s.PutData(flood(t, c, 10, 0, 1)); err != nil {
		t.Fatalf("10 tiny records with MaxRecordsPerPump 10: %v", err)
	}
	s.Read()
	if err := s.PutData(flood(t, c, 11, 0, 1)); !errors.Is(err, ErrTooManyRecords) {
		t.Fatalf("11 tiny records with MaxRecordsPerPump 10: %v", err)
	}

	// The other way: the client takes 100,000 records in one frame.
	c, s = floodPair(t, VersionTLS13, nil)
	frame := flood(t, s, 100000, 0, 1)
	if err := c.PutData(frame); err != nil {
		t.Fatalf("client, 100,000 records in a frame: %v", err)
	}
	if got, _ := c.Read(); len(got) != 100000 {
		t.Fatalf("client read %d bytes, want 100000", len(got))
	}
	if got := roundTrip(t, c, s, []byte("still")); string(got) != "still" {
		t.Fatal("after the records")
	}
}

// Over the session, KeyUpdates are bounded too: a peer that sends a few in every frame, with
// little data between, fails once it has sent more than MaxKeyUpdates and what its data earned.
func TestKeyUpdatesBoundedOverTheSession(t *testing.T) {
	c, s := floodPair(t, VersionTLS13, nil)
	var err error
	frames := 0
	for ; frames < 100 && err == nil; frames++ {
		err = s.PutData(flood(t, c, 8, 1, 64)) // 8 KeyUpdates and 512 bytes of data a frame
		s.Read()
	}
	t.Logf("failed after %d frames: %v", frames, err)
	if !errors.Is(err, ErrTooManyKeyUpdates) || frames != 5 {
		t.Fatalf("after %d frames of 8 KeyUpdates: %v; want ErrTooManyKeyUpdates at the 5th (33 > 32)", frames, err)
	}
	if want := "33 KeyUpdate messages in the session, more than the 32 allowed"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}
