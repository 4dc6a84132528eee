package tlszmq

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// The ZeroMQ layer settles its message format by ALPN whatever the Contexts' NextProtos: a
// Client offers the framed protocol first and a Server accepts it first; a session that agrees
// on anything else, or on nothing, is raw. Only the Server's own NextProtos refuse a client.
func TestCodecByNextProtos(t *testing.T) {
	cases := []struct {
		name           string
		server, client []string // the Contexts' NextProtos
		raw            bool     // ClientOptions.Raw
		want           string   // the protocol agreed on
		refused        bool
	}{
		{name: "framed, server with NextProtos", server: []string{"x"}, want: ProtocolFramed},
		{name: "framed, both with NextProtos", server: []string{"x"}, client: []string{"x"}, want: ProtocolFramed},
		{name: "framed, client with NextProtos", client: []string{"y"}, want: ProtocolFramed},
		{name: "raw, no ALPN", server: []string{"x"}, raw: true},
		{name: "raw, another protocol", server: []string{"x"}, client: []string{"x"}, raw: true, want: "x"},
		{name: "raw, a protocol the server lacks, server without NextProtos", client: []string{"y"}, raw: true},
		{name: "refused: a protocol the server lacks", server: []string{"x"}, client: []string{"y"}, raw: true, refused: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, withProtos(serverConfig("server-ec"), tc.server...), "tcp://127.0.0.1:*", echo, nil)
			c := newClient(t, withProtos(clientConfig(), tc.client...), srv.Endpoint(), &ClientOptions{Raw: tc.raw, Timeout: 5 * time.Second})
			ctx := ctxTimeout(t, 10*time.Second)
			err := c.Handshake(ctx)
			if tc.refused {
				var a *AlertError
				if !errors.As(err, &a) || a.Sent || a.Code != 120 {
					t.Fatalf("handshake: %v, want the no_application_protocol alert received", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.ConnectionState().NegotiatedProtocol; got != tc.want {
				t.Fatalf("NegotiatedProtocol %q, want %q", got, tc.want)
			}
			if got, err := c.Request(ctx, []byte("one part")); err != nil || len(got) != 1 || string(got[0]) != "one part" {
				t.Fatalf("%q %v", got, err)
			}
			multi := [][]byte{[]byte("a"), nil, []byte("c")}
			got, err := c.Request(ctx, multi...)
			if tc.want != ProtocolFramed {
				if err == nil {
					t.Fatalf("a multi-part message went in the raw format: %q", got)
				}
				return
			}
			if err != nil || !equalParts(got, multi) {
				t.Fatalf("%q %v", got, err)
			}
		})
	}
}

// The two codecs over a pair of engines: the raw one sends a message's parts joined and an
// empty message not at all, the framed one keeps parts and empty messages, and take appends
// to the messages it is given.
func TestCodecs(t *testing.T) {
	c, s := newPair(t, &Config{InsecureSkipVerify: true}, serverConfig("server-ec"))
	if cerr, serr := handshake(c, s); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	if _, ok := codecFor(c.ConnectionState().NegotiatedProtocol, nil).(rawCodec); !ok {
		t.Fatal("a session without ALPN is not raw")
	}
	raw := codecFor("x", nil)
	scratch, sent, err := raw.write(c, nil, [][]byte{[]byte("ab"), []byte("cd")})
	if err != nil || !sent {
		t.Fatal(sent, err)
	}
	if _, sent, err := raw.write(c, scratch, [][]byte{nil, {}}); sent || err != nil {
		t.Fatalf("an empty message: sent %v, %v", sent, err)
	}
	if err := raw.put(s, c.GetData()); err != nil {
		t.Fatal(err)
	}
	before := [][][]byte{{[]byte("earlier")}}
	msgs, err := raw.take(s, before)
	if err != nil || len(msgs) != 2 || string(msgs[1][0]) != "abcd" || len(msgs[1]) != 1 {
		t.Fatalf("raw: %q %v", msgs, err)
	}
	if msgs, err := raw.take(s, nil); err != nil || msgs != nil {
		t.Fatalf("raw, nothing more: %q %v", msgs, err)
	}

	d := &deframer{max: 1 << 20}
	framed := codecFor(ProtocolFramed, d)
	want := [][][]byte{{[]byte("ab"), []byte("cd")}, {nil}, {pattern(3 * queueLimit)}}
	for _, m := range want {
		if scratch, sent, err = framed.write(c, scratch, m); err != nil || !sent {
			t.Fatal(sent, err)
		}
	}
	if err := framed.put(s, c.GetData()); err != nil {
		t.Fatal(err)
	}
	msgs, err = framed.take(s, before)
	if err != nil || len(msgs) != 1+len(want) {
		t.Fatalf("framed: %d messages, %v", len(msgs), err)
	}
	for i, m := range want {
		if !equalParts(msgs[1+i], m) {
			t.Fatalf("framed: message %d differs", i)
		}
	}
	if !bytes.Equal(msgs[0][0], []byte("earlier")) {
		t.Fatal("take lost the messages it was given")
	}
	if raw.batches() || raw.answers() || !framed.batches() || !framed.answers() {
		t.Error("the codecs' properties")
	}
}
