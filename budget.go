package tlszmq

import (
	"errors"
	"fmt"
	"time"
)

// The budgets' defaults (ServerOptions documents each one).
const (
	defaultMaxSessions         = 10000
	defaultMaxHalfOpen         = 1000
	defaultMaxParts            = 1024
	defaultMaxMessagesPerFrame = 1024
	defaultMaxEnvelopeFrames   = 16
	defaultMaxPendingOutput    = 4 << 20

	// minPartCost is what every part of a framed message costs towards MaxMessageSize at
	// least, however short it is: empty parts are not free.
	minPartCost = 16
	// maxEnvelopeFrame is the longest envelope frame accepted: libzmq's own limit on a
	// routing id.
	maxEnvelopeFrame = 255
)

// orDefault sets an option left at zero (or below) to its default.
func orDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// errBudget is wrapped by every error about a peer that went past one of the budgets.
var errBudget = errors.New("budget exceeded")

// budgetError says which budget a peer went past: what it did, and the option that bounds it.
type budgetError struct {
	what   string // "a message of more than 1024 parts"
	option string // "MaxParts"
}

func (e *budgetError) Error() string {
	return fmt.Sprintf("tlszmq: budget exceeded: %s (%s)", e.what, e.option)
}

func (e *budgetError) Unwrap() error {
	if e.option == "MaxMessageSize" {
		return errors.Join(errBudget, ErrMessageTooLarge)
	}
	return errBudget
}

// isBudget reports whether err says a peer went past a budget: the server's, or one the
// engine keeps (KeyUpdates, records per pump).
func isBudget(err error) bool {
	return errors.Is(err, errBudget) || errors.Is(err, ErrTooManyKeyUpdates) || errors.Is(err, ErrTooManyRecords)
}

func overBudget(option, format string, args ...any) error {
	return &budgetError{what: fmt.Sprintf(format, args...), option: option}
}

// frameLimit is the largest ZeroMQ frame of TLS bytes that carries a message of maxMsg bytes:
// the message with room for the record overhead.
func frameLimit(maxMsg int) int {
	return maxMsg + maxMsg/maxRecord*recordRoom + flightRoom
}
