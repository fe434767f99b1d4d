//go:build !linux

package kernels

import "time"

// threadCPU is not measured on this system: 0.
func threadCPU() time.Duration { return 0 }

// ProcessCPU is not measured on this system: 0.
func ProcessCPU() time.Duration { return 0 }
