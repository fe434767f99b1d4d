//go:build !unix

package join

import "time"

// cpuTime is unavailable here; benchmarks then skip the CPU-time metric.
func cpuTime() time.Duration { return 0 }
