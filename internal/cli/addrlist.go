package cli

import (
	"fmt"
	"strings"

	"github.com/tlszmq/tlszmq/internal/zapauth"
)

// AddrList is the value of -allow and -deny (tlszmq.ServerOptions.Allow and Deny): IP
// addresses and CIDR prefixes, comma-separated, the flag repeatable. An entry that is neither
// is bad use, refused by the flag package before anything is bound.
type AddrList []string

// String returns the entries, comma-separated.
func (l *AddrList) String() string { return strings.Join(*l, ",") }

// Set adds the entries of one -allow or -deny, checked as the server will read them. A value
// without any entry is bad use: "-allow $LIST" with an empty LIST must not admit everyone.
func (l *AddrList) Set(v string) error {
	if strings.Trim(v, ", \t") == "" {
		return fmt.Errorf("%q names no address", v)
	}
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		if _, err := zapauth.NewPolicy([]string{e}, nil, nil); err != nil {
			return fmt.Errorf("%q is not an IP address or CIDR prefix", e)
		}
		*l = append(*l, e)
	}
	return nil
}
