package tlszmq

import (
	"errors"
	"fmt"
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

// budgetKind is a budget, for Counters.BudgetByKind: the option that bounds it.
type budgetKind uint8

const (
	budgetMessageSize budgetKind = iota
	budgetParts
	budgetMessagesPerFrame
	budgetPendingOutput
	budgetEnvelopeFrames
	budgetKeyUpdates
	budgetRecordsPerPump
	numBudgetKinds
)

// budgetKindNames are the budgets' option names, as their errors and the log lines say them.
var budgetKindNames = [numBudgetKinds]string{
	"MaxMessageSize", "MaxParts", "MaxMessagesPerFrame", "MaxPendingOutput", "MaxEnvelopeFrames",
	"MaxKeyUpdates", "MaxRecordsPerPump",
}

// String returns the option's name, e.g. "MaxParts".
func (k budgetKind) String() string {
	if k < numBudgetKinds {
		return budgetKindNames[k]
	}
	return fmt.Sprintf("budgetKind(%d)", uint8(k))
}

// budgetKindOf returns the budget err says a peer went past; false if it says none, or names
// an option the counters do not know.
func budgetKindOf(err error) (budgetKind, bool) {
	var be *budgetError
	switch {
	case errors.As(err, &be):
		for k, name := range budgetKindNames {
			if name == be.option {
				return budgetKind(k), true
			}
		}
	case errors.Is(err, ErrTooManyKeyUpdates):
		return budgetKeyUpdates, true
	case errors.Is(err, ErrTooManyRecords):
		return budgetRecordsPerPump, true
	}
	return 0, false
}
