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
)

// TestHelpersPollNotPreempted: a helper that polls for a task that does
// not come passes through the scheduler before the runtime would preempt
// it (pollStretch). Preempted, a helper locked to its thread parks the
// thread, which wakes up again wherever the kernel puts it: that is what
// slowed requests (docs/serving.md). In the runtime's execution trace of
// 300 ms of polling the helper must never be preempted, outside the
// garbage collector's stops and stack scans (which preempt every
// goroutine). Polling in one stretch, as it did, it was preempted 10-16
// times.
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
			time.Sleep(300 * time.Millisecond)
			h.Close() // before the trace stops, which preempts every goroutine
			trace.Stop()
			polled, preempted := helperTransitions(t, &buf)
			if polled == 0 {
				t.Fatal("the trace shows no helper goroutine: the test checks nothing")
			}
			if preempted > 0 {
				t.Fatalf("the runtime preempted the polling helper %d times in 300 ms", preempted)
			}
		})
	}
}

// helperTransitions counts, in an execution trace, the state transitions
// of goroutines whose stack is in Helpers' methods (polled), and those
// of them that are preemptions outside the garbage collector's phases
// and the runtime's stops (preempted).
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
		inHelpers := false
		for f := range st.Stack.Frames() {
			if strings.Contains(f.Func, "serving.(*Helpers).") {
				inHelpers = true
				break
			}
		}
		if !inHelpers {
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
