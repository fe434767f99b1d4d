package serving

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"runtime/trace"
	"strings"
	"testing"
	"time"

	exptrace "golang.org/x/exp/trace"

	"github.com/onestone/onestone/internal/kernels"
)

// TestHelpersPollNotPreempted: a helper that polls for a task that does
// not come passes through the scheduler before the runtime would preempt
// it (pollStretch). Preempted, a helper locked to its thread parks the
// thread, which wakes up again wherever the kernel puts it: that is what
// slowed requests (docs/serving.md). In the runtime's execution trace of
// 300 ms of polling the helper may be preempted at most twice, outside
// the garbage collector's stops and stack scans (which preempt every
// goroutine); polling in one stretch, as it did, it was preempted 10-16
// times on a quiet host. On a host so busy that the polling helper got
// less than two thirds of a core, where a starved thread is preempted
// whatever it does, the test cannot judge and skips.
func TestHelpersPollNotPreempted(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("GOMAXPROCS 1: no helper polls")
	}
	for _, renice := range []bool{true, false} {
		t.Run(map[bool]string{true: "renice", false: "yield"}[renice], func(t *testing.T) {
			if renice && !canRaiseNice() {
				t.Skip("raising a thread's priority back is not allowed here")
			}
			saved := reniceAllowed
			reniceAllowed = func() bool { return renice }
			defer func() { reniceAllowed = saved }()
			var buf bytes.Buffer
			if err := trace.Start(&buf); err != nil {
				t.Skipf("tracing: %v", err) // e.g. under go test -trace
			}
			h := NewHelpers(1, time.Minute)
			// A task first: the helper is then surely polling.
			task := &helperTask{w: &niceWorker{}, k: 1}
			if !h.post(task) {
				t.Fatal("post refused")
			}
			waitUntil(t, "the helper runs the task", func() bool { return task.state.Load() == taskDone })
			const window = 300 * time.Millisecond
			cpu0 := kernels.ProcessCPU()
			time.Sleep(window)
			cpu := kernels.ProcessCPU() - cpu0
			h.Close() // before the trace stops, which preempts every goroutine
			trace.Stop()
			polled, preempted := helperTransitions(t, &buf)
			if polled == 0 {
				t.Fatal("the trace shows no helper goroutine: the test checks nothing")
			}
			if preempted > 2 {
				if cpu < window*2/3 {
					t.Skipf("the process had %v of CPU in %v: the host is too busy to judge (%d preemptions)", cpu, window, preempted)
				}
				t.Fatalf("the runtime preempted the polling helper %d times in %v (the process had %v of CPU)", preempted, window, cpu)
			}
		})
	}
}

// helperTransitions counts, in an execution trace, the state transitions
// of goroutines whose stack is in Helpers.next, waiting for a task
// (polled), and those of them that are preemptions outside the garbage
// collector's phases and the runtime's stops (preempted). A helper that
// ends after Close is not polling any more.
func helperTransitions(t *testing.T, r io.Reader) (polled, preempted int) {
	t.Helper()
	tr, err := exptrace.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	open := map[string]int{} // ranges of the GC or a stop, by name
	runtimeWide := func(name string) bool {
		return strings.HasPrefix(name, "GC ") || strings.HasPrefix(name, "stop-the-world")
	}
	for {
		ev, err := tr.ReadEvent()
		if errors.Is(err, io.EOF) {
			return polled, preempted
		}
		if err != nil {
			t.Fatal(err)
		}
		switch ev.Kind() {
		case exptrace.EventRangeBegin:
			if n := ev.Range().Name; runtimeWide(n) {
				open[n]++
			}
			continue
		case exptrace.EventRangeEnd:
			if n := ev.Range().Name; runtimeWide(n) && open[n] > 0 {
				open[n]--
			}
			continue
		case exptrace.EventStateTransition:
		default:
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != exptrace.ResourceGoroutine {
			continue
		}
		polling := false
		for f := range st.Stack.Frames() {
			if strings.HasSuffix(f.Func, "serving.(*Helpers).next") {
				polling = true
				break
			}
		}
		if !polling {
			continue
		}
		polled++
		gcOrStop := false
		for _, n := range open {
			gcOrStop = gcOrStop || n > 0
		}
		if from, to := st.Goroutine(); from == exptrace.GoRunning && to == exptrace.GoRunnable && st.Reason == "preempted" && !gcOrStop {
			t.Logf("preempted at %v in:\n%v", ev.Time(), st.Stack)
			preempted++
		}
	}
}
