package serving

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Helpers runs the helper workers of score requests (ScorerConfig.Workers
// beyond the request's own goroutine) on long-lived goroutines that, after
// each piece of work, keep polling for the next one for a while (spin)
// before they sleep.
//
// Why: a request's candidates are shared by its workers only if the
// helpers start at once. A goroutine started per request runs on another
// core only once the kernel wakes an idle thread there; on the virtual
// machines measured here waking an idle vCPU took from 0.1 to 5 ms (see
// docs/serving.md), a large part of a 5 ms request. A helper that is still
// polling takes the work within microseconds. While polling, a helper's
// thread runs at the lowest scheduling priority (nice 19, where the OS
// allows it), so that any other thread that wants its core, such as a
// load generator on the same machine, gets it at once; it works at the
// normal priority. While it polls, its core is busy.
//
// A request never waits for a helper that has not started its work: when
// its own goroutine has finished every part and pass, it revokes the tasks
// no helper took. Helpers is safe for concurrent use by any number of
// scorers.
type Helpers struct {
	queue   chan *helperTask
	spin    time.Duration
	polling int // helpers that poll (the others sleep at once)
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// NewHelpers starts n helper goroutines that poll for spin after each task
// (0: they sleep at once). A polling helper holds one of the GOMAXPROCS Ps
// the Go scheduler runs goroutines on, so at most GOMAXPROCS-1 of them poll
// and the others sleep at once: one P always stays free for the requests'
// own goroutines. Close stops them.
func NewHelpers(n int, spin time.Duration) *Helpers {
	h := &Helpers{queue: make(chan *helperTask, 64), spin: max(spin, 0), stop: make(chan struct{})}
	if h.spin > 0 {
		h.polling = max(0, min(n, runtime.GOMAXPROCS(0)-1))
	}
	for i := range n {
		h.wg.Add(1)
		go h.loop(i < h.polling)
	}
	return h
}

// Close stops the helpers once their current tasks end, and waits for
// them. Requests posted afterwards run on their own goroutine only.
func (h *Helpers) Close() {
	h.once.Do(func() { close(h.stop) })
	h.wg.Wait()
}

func (h *Helpers) closed() bool {
	select {
	case <-h.stop:
		return true
	default:
		return false
	}
}

// helper task states.
const (
	taskIdle int32 = iota // never posted
	taskPosted
	taskTaken
	taskDone
	taskRevoked
)

// helperTask is worker k of the run in progress on st. Tasks live in the
// scoreState and are reused by its next request: a request returns only
// once each of its tasks is done or revoked, and a stale queue entry of a
// task (revoked, then posted again) runs it for the request that posted it
// last, which is what that request asked for.
type helperTask struct {
	state atomic.Int32
	st    *scoreState
	k     int
}

// post offers t to the helpers. It reports false if the queue is full or
// the helpers are closed (the caller does the work itself).
func (h *Helpers) post(t *helperTask) bool {
	if h.closed() {
		t.state.Store(taskRevoked)
		return false
	}
	t.state.Store(taskPosted)
	select {
	case h.queue <- t:
		return true
	default:
		t.state.Store(taskRevoked)
		return false
	}
}

// finish waits until t is done, or revokes it if no helper has taken it.
func (t *helperTask) finish() {
	if t.state.CompareAndSwap(taskPosted, taskRevoked) {
		return
	}
	// A helper has it and is running: its passes are short.
	for t.state.Load() == taskTaken {
		runtime.Gosched()
	}
}

func (h *Helpers) loop(poll bool) {
	defer h.wg.Done()
	if poll {
		// The helper polls at the lowest priority and works at the
		// normal one, on a thread of its own.
		runtime.LockOSThread()
		setThreadNice(19)
	}
	for {
		t := h.next(poll)
		if t == nil {
			return
		}
		if t.state.CompareAndSwap(taskPosted, taskTaken) {
			if poll {
				setThreadNice(0)
			}
			t.st.work(t.k)
			t.state.Store(taskDone)
			if poll {
				setThreadNice(19)
			}
		}
	}
}

// next returns the next task: polled for up to h.spin if poll, then
// waited for. It returns nil once the helpers are closed.
func (h *Helpers) next(poll bool) *helperTask {
	if poll {
		deadline := time.Now().Add(h.spin)
		for i := 1; ; i++ {
			// A one-case select with a default does not lock an empty
			// channel.
			select {
			case t := <-h.queue:
				return t
			default:
			}
			if i%256 == 0 && (time.Now().After(deadline) || h.closed()) {
				break
			}
		}
	}
	select {
	case t := <-h.queue:
		return t
	case <-h.stop:
		return nil
	}
}
