package serving

import (
	"runtime"
	"sync"
)

// inBackground runs f on an OS thread of its own at a lower CPU priority
// (backgroundNice above the caller's nice value), with one more P for the
// Go scheduler while it runs, and returns what f returns once it has.
//
// Why: loading a bundle (reading and checksumming its weights, the
// sample check, warming the new scorer's pool) takes about 0.18 s of CPU
// on the std workload into a spare model's memory (0.8-1.0 s into new
// memory on the VMs measured, docs/serving.md), and the server keeps
// answering meanwhile. Run as it was, on the poller's goroutine, it held
// one of the GOMAXPROCS Ps (and its core) at the requests' priority for
// all that time: on 2 cores with a helper polling on the other P, a
// request arriving then waited for the Go scheduler to preempt the
// loader (up to 10 ms) before it was even read, and then ran on one P
// instead of two. With the extra P the loader never takes a P the
// requests need, and the kernel gives its thread about a tenth of a core
// that a request's thread wants too. A helper polling at nice 19 is the
// exception: beside the loader it gets about an eighth of the core, and
// a third to a half of the requests during a load run on one core
// (onestone_score_helper_tasks_total, docs/serving.md). Lowering a
// thread's priority needs no permission; the thread is never raised
// back: it ends with f's goroutine (LockOSThread without
// UnlockOSThread), so no other goroutine ever runs on it.
//
// Calls are serialized; f must not call inBackground itself. GOMAXPROCS
// is set back to its value from before the call (which fixes it there: a
// value the runtime chose is no longer updated when the CPU limit
// changes).
func inBackground[T any](f func() T) T {
	backgroundMu.Lock()
	defer backgroundMu.Unlock()
	prev := runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(prev + 1)
	defer runtime.GOMAXPROCS(prev)
	out := make(chan T, 1)
	go func() {
		runtime.LockOSThread()                 // never unlocked: the thread ends with the goroutine
		setThreadNice(lowerNice(threadNice())) // best effort: f still runs if it fails
		out <- f()
	}()
	return <-out
}

// backgroundNice is how much higher than the process's threads
// inBackground's thread's nice value is. The kernel weighs a nice-0
// thread 1024 and a nice-10 one 110: sharing a core with a request's
// thread, the loader gets about a tenth of it. Not nice 19 (weight 15),
// as the polling helpers: a loader that low also yields to every other
// process of a busy host, and a reload that took 0.1 s on a quiet one
// took 20 s at load 24 (2 cores); new models are for serving soon.
const backgroundNice = 10

// lowerNice is the nice value of inBackground's thread for a process
// whose threads run at nice.
func lowerNice(nice int) int { return min(19, nice+backgroundNice) }

// backgroundMu serializes inBackground: each call adds one P and takes
// it away again.
var backgroundMu sync.Mutex
