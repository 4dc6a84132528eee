package perf

import (
	"syscall"
	"time"
)

// processCPU is the user and system time this process has used, all its threads together
// (getrusage RUSAGE_SELF: a child process's time is not in it), or 0 if it cannot be read.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
