package serving

import "golang.org/x/sys/unix"

// lowerThreadPriority gives the calling OS thread the lowest scheduling
// priority (nice 19; Linux sets it per thread). A failure is ignored: the
// helper then polls at normal priority.
func lowerThreadPriority() {
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19)
}
