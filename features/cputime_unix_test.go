//go:build unix

package features_test

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time (user + system) used by the process so far.
// Benchmarks report rows per CPU-second beside rows per wall second: on a
// shared machine the first is stable where the second is not.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
