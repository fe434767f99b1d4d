//go:build !linux

package serving

// lowerThreadPriority is a no-op where the priority of one thread cannot be
// set.
func lowerThreadPriority() {}
