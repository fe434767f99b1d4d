//go:build unix

package join

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time (user + system) used by the process so far:
// benchmarks report impressions per CPU-second beside impressions per wall
// second, since on a shared machine the first is stable where the second is
// not. (The same helper as features' benchmarks.)
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
