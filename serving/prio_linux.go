package serving

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// threadNice returns the nice value of the calling OS thread (Linux keeps
// one per thread), or 0 if it cannot be read.
func threadNice() int {
	p, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	if err != nil {
		return 0
	}
	return 20 - p // the raw system call returns 20 - nice
}

// setThreadNice sets the nice value of the calling OS thread. Lowering
// the priority (a higher value) is always allowed; raising it back needs
// CAP_SYS_NICE or an RLIMIT_NICE that reaches the value (see
// canRaiseNice).
func setThreadNice(nice int) error {
	return unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), nice)
}

// canRaiseNice reports whether a thread of this process that lowers its
// priority to nice 19 may raise it back to where it was. It tries, on a
// thread of its own that is discarded afterwards, so that a thread left
// at nice 19 runs nothing else.
func canRaiseNice() bool {
	ok := make(chan bool)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		orig := threadNice()
		if orig >= 19 {
			ok <- false // already at the lowest priority: nothing to switch
			return
		}
		if setThreadNice(19) != nil {
			ok <- false
			return
		}
		ok <- setThreadNice(orig) == nil && threadNice() == orig
	}()
	return <-ok
}

// yieldThread gives the calling thread's core to any other thread that
// is ready to run on it (sched_yield).
func yieldThread() { unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }
