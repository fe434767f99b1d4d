//go:build !linux

package bundle

// totalMemory is the machine's RAM in bytes, or 0 when unknown: unknown
// outside Linux (DefaultMaxBytes then falls back to 4 GiB).
func totalMemory() int64 { return 0 }
