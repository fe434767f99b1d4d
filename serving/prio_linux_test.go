package serving

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// niceWorker records the nice value and id of the thread its work runs on.
type niceWorker struct{ nice, tid atomic.Int64 }

func (w *niceWorker) work(int) {
	w.nice.Store(int64(threadNice()))
	w.tid.Store(int64(unix.Gettid()))
}

// procNice reads the nice value of thread tid of this process from /proc.
func procNice(t *testing.T, tid int64) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", tid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces): state is
	// field 3, nice field 19.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	n, err := strconv.Atoi(f[19-3])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestHelpersWorkAtNormalPriority: a polling helper always works at its
// thread's normal priority. Where raising the priority back is allowed
// (here, as root: the real check) it polls at nice 19; where it is not
// (forced) it never changes its priority.
func TestHelpersWorkAtNormalPriority(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("GOMAXPROCS 1: no helper polls")
	}
	base := threadNice()
	if base >= 19 {
		t.Skip("the test runs at nice 19 already")
	}
	for _, mode := range []struct {
		name    string
		allowed func() bool
	}{{"checked", canRaiseNice}, {"not allowed", func() bool { return false }}} {
		t.Run(mode.name, func(t *testing.T) {
			saved := reniceAllowed
			reniceAllowed = mode.allowed
			defer func() { reniceAllowed = saved }()
			h := NewHelpers(1, time.Minute)
			defer h.Close()
			renice := mode.allowed()
			if h.Renice() != renice {
				t.Fatalf("Renice %v, want %v", h.Renice(), renice)
			}
			pollNice := base
			if renice {
				pollNice = 19
			}
			w := &niceWorker{}
			for i := range 10 {
				task := &helperTask{w: w, k: 1}
				if !h.post(task) {
					t.Fatal("post refused")
				}
				waitUntil(t, "the helper runs the task", func() bool { return task.state.Load() == taskDone })
				if got := w.nice.Load(); got != int64(base) {
					t.Fatalf("task %d ran at nice %d, want %d", i, got, base)
				}
				tid := w.tid.Load()
				waitUntil(t, fmt.Sprintf("the helper polls at nice %d", pollNice), func() bool { return procNice(t, tid) == pollNice })
				if !renice {
					for range 20 { // and stays there
						if n := procNice(t, tid); n != base {
							t.Fatalf("helper thread at nice %d while polling, want %d", n, base)
						}
						time.Sleep(time.Millisecond)
					}
				}
			}
		})
	}
}

// TestCanRaiseNice: the check agrees with the permission the process has:
// as root, yes; as a user, what RLIMIT_NICE allows. As root the test also
// runs the check as user nobody (uid 65534) in a child process.
func TestCanRaiseNice(t *testing.T) {
	if os.Getenv("ONESTONE_NICE_CHILD") == "1" {
		fmt.Printf("canRaiseNice=%v uid=%d\n", canRaiseNice(), os.Getuid())
		return
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NICE, &rl); err != nil {
		t.Fatal(err)
	}
	// RLIMIT_NICE r lets a thread go down to nice 20 - r.
	userMay := rl.Cur == unix.RLIM_INFINITY || 20-int64(rl.Cur) <= int64(threadNice())
	if os.Getuid() != 0 {
		if got := canRaiseNice(); got != userMay {
			t.Fatalf("canRaiseNice %v, RLIMIT_NICE %d allows %v", got, rl.Cur, userMay)
		}
		return
	}
	if !canRaiseNice() {
		t.Fatal("canRaiseNice false as root")
	}
	// The test binary, where user nobody may run it.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "onestone-nice")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "serving.test")
	copyFile(t, exe, bin)
	cmd := exec.Command(bin, "-test.run=^TestCanRaiseNice$")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ONESTONE_NICE_CHILD=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child as nobody: %v\n%s", err, out)
	}
	t.Logf("child: %s", out)
	want := fmt.Sprintf("canRaiseNice=%v uid=65534", userMay)
	if !strings.Contains(string(out), want) {
		t.Fatalf("child as nobody printed\n%s\nwant %q (RLIMIT_NICE %d)", out, want, rl.Cur)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestInBackground: f runs on a thread of its own, backgroundNice above
// the caller's nice value (at most 19), with one more P than before; and
// afterwards GOMAXPROCS is what it was, the caller's thread keeps its
// priority, and f's thread is gone (no other goroutine can run at its
// priority on it).
func TestInBackground(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	base := threadNice()
	if base >= 19 {
		t.Skip("the test runs at nice 19 already")
	}
	want := lowerNice(base)
	procs := runtime.GOMAXPROCS(0)
	type seen struct {
		nice, procs int
		tid         int
	}
	for i := range 3 {
		got := inBackground(func() seen {
			return seen{threadNice(), runtime.GOMAXPROCS(0), unix.Gettid()}
		})
		if got.nice != want || got.procs != procs+1 || got.tid == unix.Gettid() {
			t.Fatalf("call %d: f ran at nice %d with GOMAXPROCS %d on thread %d (the caller's: %d), want nice %d with %d",
				i, got.nice, got.procs, got.tid, unix.Gettid(), want, procs+1)
		}
		if p := runtime.GOMAXPROCS(0); p != procs {
			t.Fatalf("call %d: GOMAXPROCS %d afterwards, want %d", i, p, procs)
		}
		if n := threadNice(); n != base {
			t.Fatalf("call %d: the caller's thread at nice %d afterwards, want %d", i, n, base)
		}
		waitUntil(t, "f's thread ends", func() bool {
			_, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", got.tid))
			return os.IsNotExist(err)
		})
	}
}
