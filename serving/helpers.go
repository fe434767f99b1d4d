package serving

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
// polling takes the work within microseconds. While it polls, its core is
// busy, but any other thread that wants the core, such as a load
// generator on the same machine, gets it at once: see Renice for how.
//
// A helper always works at the priority its thread started with: request
// work never runs at a lowered priority.
//
// A request never waits for a helper that has not started its work: when
// its own goroutine has finished every part and pass, it revokes the tasks
// no helper took. Helpers is safe for concurrent use by any number of
// scorers.
type Helpers struct {
	queue   chan *helperTask
	spin    time.Duration
	polling int // helpers that poll (the others sleep at once)
	renice  bool
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
	stats   helperStats
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
	if h.polling > 0 {
		h.renice = reniceAllowed()
	}
	for i := range n {
		h.wg.Add(1)
		go h.loop(i < h.polling)
	}
	return h
}

// reniceAllowed is canRaiseNice; tests replace it.
var reniceAllowed = canRaiseNice

// Renice reports how the polling helpers leave their core to other
// threads. True: they poll at nice 19, in stretches of a few
// milliseconds (pollStretch), and switch back to their normal priority
// after each stretch and to work, which needs a permission checked once
// by NewHelpers (root, CAP_SYS_NICE, or an RLIMIT_NICE reaching the
// normal priority: `ulimit -e 20`, systemd LimitNICE=20). False
// (without it, or with no polling helper): they never change their
// priority; they poll at the normal one and yield their core
// (sched_yield) between polls, so a thread that is ready to run on it
// takes it. Either way request work runs at the normal priority.
func (h *Helpers) Renice() bool { return h.renice }

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

// helperTask is worker k of the run in progress on w (a *scoreState).
// Tasks live in the scoreState and are reused by its next request: a
// request returns only once each of its tasks is done or revoked, and a
// stale queue entry of a task (revoked, then posted again) runs it for the
// request that posted it last, which is what that request asked for.
type helperTask struct {
	posted time.Time // when post offered it (read by the helper that takes it)
	state  atomic.Int32
	w      worker
	k      int
}

// worker is what a helper runs: worker k of a request's run.
type worker interface{ work(k int) }

// post offers t to the helpers. It reports false if the queue is full or
// the helpers are closed (the caller does the work itself).
func (h *Helpers) post(t *helperTask) bool {
	if h.closed() {
		t.state.Store(taskRevoked)
		h.stats.revoked.Add(1)
		return false
	}
	t.posted = time.Now()
	t.state.Store(taskPosted)
	select {
	case h.queue <- t:
		return true
	default:
		t.state.Store(taskRevoked)
		h.stats.revoked.Add(1)
		return false
	}
}

// finish waits until t is done, or revokes it if no helper has taken it.
func (h *Helpers) finish(t *helperTask) {
	if t.state.CompareAndSwap(taskPosted, taskRevoked) {
		h.stats.revoked.Add(1)
		return
	}
	// A helper has it and is running: its passes are short.
	for t.state.Load() == taskTaken {
		runtime.Gosched()
	}
}

func (h *Helpers) loop(poll bool) {
	defer h.wg.Done()
	for {
		t, ok := h.next(poll)
		if !ok {
			return
		}
		if t.state.CompareAndSwap(taskPosted, taskTaken) {
			h.stats.took(time.Since(t.posted))
			t.w.work(t.k)
			t.state.Store(taskDone)
		}
	}
}

// next returns the next task: polled for up to h.spin if poll
// (pollStretch), then waited for. It reports false once the helpers are
// closed, or if this helper must end (see pollStretch). It returns
// unlocked from any thread, at the normal priority: tasks run there.
func (h *Helpers) next(poll bool) (*helperTask, bool) {
	if poll {
		deadline := time.Now().Add(h.spin)
		for {
			t, more, ok := h.pollStretch(deadline)
			if !ok {
				return nil, false
			}
			if t != nil {
				return t, true
			}
			if !more {
				break
			}
			// Between stretches, unlocked and at the normal priority:
			// the runtime now counts the helper as rescheduled.
			runtime.Gosched()
		}
	}
	select {
	case t := <-h.queue:
		return t, true
	case <-h.stop:
		return nil, false
	}
}

// pollStretchLen bounds one stretch of a helper's polling: well under
// the 10 ms after which the Go runtime preempts a goroutine that has not
// passed through its scheduler, even when another thread takes the
// helper's core for a few milliseconds of it. Between two stretches the
// helper makes three system calls (reading and twice setting its
// thread's priority) and a Gosched.
const pollStretchLen = 2 * time.Millisecond

// pollStretch polls for a task until one comes (more false), deadline
// passes or the helpers close (t nil, more false), or pollStretchLen has
// passed (more true). With renice the helper polls at nice 19, locked to
// its thread for the stretch, and switches the thread back to its normal
// priority before it returns; otherwise it yields its core between polls.
//
// Why stretches: the runtime preempts a goroutine that has run for 10 ms
// without passing through its scheduler, and a preempted goroutine locked
// to its thread parks that thread and hands its P to another thread,
// which must then wake the parked one to run it again. After those
// wake-ups the kernel often placed the helper's thread on the very core
// of the request it helps, the other core idle: the request ran on one
// core, slowed further by its own goroutine waiting for the helper, for
// 2-10 ms (docs/serving.md). A helper that polls in stretches, with a
// Gosched between them while unlocked, keeps its thread and is not
// preempted, unless its thread waits for a core for most of the
// runtime's 10 ms (then it is hardly polling anyway).
//
// ok is false only if the thread could not be switched back to its
// normal priority, which cannot happen after the check of NewHelpers;
// should it, the thread must run nothing else: it stays locked and ends
// with this helper, and a task polled meanwhile is left to its request,
// which revokes it and does the work itself.
func (h *Helpers) pollStretch(deadline time.Time) (t *helperTask, more, ok bool) {
	reniced := false
	if h.renice {
		runtime.LockOSThread()
		nice := threadNice()
		if reniced = setThreadNice(19) == nil; !reniced {
			runtime.UnlockOSThread()
		} else {
			defer func() {
				if setThreadNice(nice) != nil {
					t, more, ok = nil, false, false // still locked
					return
				}
				runtime.UnlockOSThread()
			}()
		}
	}
	end := time.Now().Add(pollStretchLen)
	// The clock is read often: a thread at nice 19 or yielding its core
	// on a busy host may wait milliseconds between two polls.
	every := 16
	if !reniced {
		every = 1
	}
	for i := 1; ; i++ {
		// A one-case select with a default does not lock an empty
		// channel.
		select {
		case t := <-h.queue:
			return t, false, true
		default:
		}
		if !reniced {
			yieldThread()
		}
		if i%every == 0 {
			now := time.Now()
			if now.After(deadline) || h.closed() {
				return nil, false, true
			}
			if now.After(end) {
				return nil, true, true
			}
		}
	}
}

// helperStats counts what became of the tasks posted to Helpers: taken
// by a helper (with how long after their posting), or revoked (the
// request's own goroutine did that worker's share, no helper having
// started on it in time, or the queue being full). A request that runs
// on one worker only while helpers poll has lost its second core: see
// docs/serving.md.
type helperStats struct {
	taken, revoked atomic.Int64
	waitNanos      atomic.Int64
	waits          [len(helperWaitBuckets)]atomic.Int64 // taken tasks by their wait's bucket (not cumulative)
}

// helperWaitBuckets are the upper bounds of the wait histogram, in
// seconds: a polling helper takes a task within microseconds, a sleeping
// one once its thread is awake.
var helperWaitBuckets = [...]float64{50e-6, 200e-6, 1e-3, 5e-3}

func (st *helperStats) took(wait time.Duration) {
	st.taken.Add(1)
	st.waitNanos.Add(int64(wait))
	for i, b := range helperWaitBuckets {
		if wait.Seconds() <= b {
			st.waits[i].Add(1)
			break
		}
	}
}

var (
	helperTasksDesc = prometheus.NewDesc("onestone_score_helper_tasks_total",
		"Helper tasks of score requests (a request's workers beyond its own goroutine) by outcome: taken by a helper, or revoked (no helper started it before the request's own goroutine had done all the work).",
		[]string{"outcome"}, nil)
	helperWaitDesc = prometheus.NewDesc("onestone_score_helper_wait_seconds",
		"How long helper tasks waited between their posting and a helper taking them.", nil, nil)
)

// Describe and Collect make h a prometheus.Collector of its tasks.
func (h *Helpers) Describe(ch chan<- *prometheus.Desc) {
	ch <- helperTasksDesc
	ch <- helperWaitDesc
}

func (h *Helpers) Collect(ch chan<- prometheus.Metric) {
	st := &h.stats
	buckets := make(map[float64]uint64, len(helperWaitBuckets))
	var cum uint64
	for i, b := range helperWaitBuckets {
		cum += uint64(st.waits[i].Load())
		buckets[b] = cum
	}
	taken := st.taken.Load()
	ch <- prometheus.MustNewConstMetric(helperTasksDesc, prometheus.CounterValue, float64(taken), "taken")
	ch <- prometheus.MustNewConstMetric(helperTasksDesc, prometheus.CounterValue, float64(st.revoked.Load()), "revoked")
	ch <- prometheus.MustNewConstHistogram(helperWaitDesc, uint64(max(taken, int64(cum))), time.Duration(st.waitNanos.Load()).Seconds(), buckets)
}
