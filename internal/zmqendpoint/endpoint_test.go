package zmqendpoint

import "testing"

func TestEndpointHost(t *testing.T) {
	for in, want := range map[string]string{
		"tcp://localhost:5556":            "localhost",
		"tcp://127.0.0.1:5556":            "127.0.0.1",
		"tcp://[::1]:5556":                "::1",
		"tcp://eth0;server.example:5556":  "server.example",
		"tcp://10.0.0.1:0;10.0.0.2:5556":  "10.0.0.2",
		"tcp://*:5556":                    "",
		"ipc:///tmp/s.ipc":                "",
		"inproc://x":                      "",
		"ws://server.example:80/tlszmq":   "",
		"tcp://server.example.:5556":      "server.example.",
		"tcp://host-without-a-port":       "host-without-a-port",
		"tcp://[fe80::1%eth0]:5556":       "fe80::1%eth0",
		"tcp://server.example:5556;extra": "extra",
		"tcp://10.0.0.1;server:5556":      "server",
	} {
		if got := Host(in); got != want {
			t.Errorf("Host(%q) = %q, want %q", in, got, want)
		}
	}
}
