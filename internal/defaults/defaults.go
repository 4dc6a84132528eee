// Package defaults fills in the options a caller left out, for the server's options, the
// devices' limits and the bridge's.
package defaults

import "time"

// Or sets *v to def if it is zero or negative: an option left out takes its default.
func Or[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
