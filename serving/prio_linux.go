package serving

import "golang.org/x/sys/unix"

// setThreadNice sets the nice value of the calling OS thread (Linux keeps
// one per thread; raising it back to 0 is allowed since Linux 2.6.12 within
// RLIMIT_NICE, and always as root). A failure is ignored: the helper then
// runs at whatever priority it has.
func setThreadNice(nice int) {
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), nice)
}
