//go:build !linux

package serving

import "runtime"

// threadNice: the priority of one thread is not tracked here.
func threadNice() int { return 0 }

// setThreadNice is a no-op where the priority of one thread cannot be set.
func setThreadNice(int) error { return nil }

// canRaiseNice is false where a thread's priority cannot be set: helpers
// do not renice.
func canRaiseNice() bool { return false }

// yieldThread lets other goroutines run.
func yieldThread() { runtime.Gosched() }
