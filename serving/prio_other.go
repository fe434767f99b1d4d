//go:build !linux

package serving

// setThreadNice is a no-op where the priority of one thread cannot be set.
func setThreadNice(int) {}
