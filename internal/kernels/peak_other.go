//go:build noasm || !amd64

package kernels

// peakLoops lists the peak loops this build can run: none, without
// assembly.
func peakLoops() []peakLoop { return nil }
