package kernels

import (
	"runtime"
	"testing"
	"time"
)

func TestMeasureGemm(t *testing.T) {
	for _, s := range StdShapes() {
		if s.M <= 0 || s.N <= 0 || s.K <= 0 || s.Flops() != 2*float64(s.M*s.N*s.K) {
			t.Errorf("%s: bad shape %+v", s.Name, s)
		}
	}
	for name, measure := range map[string]func(m, n, k int, transA, transB bool, workers int, dur time.Duration) GemmRate{
		"MeasureGemm": MeasureGemm, "MeasureGemmBF16": MeasureGemmBF16,
	} {
		g := measure(33, 65, 17, true, true, 2, 5*time.Millisecond)
		if !(g.GFlops > 0) || g.GFlops > 1e5 {
			t.Errorf("%s = %g GFLOP/s, want a positive plausible figure", name, g.GFlops)
		}
		// Getrusage counts in clock ticks on some kernels: a 5 ms span
		// may read as no CPU time (then 0, no figure), never as a rate
		// beyond plausible.
		if runtime.GOOS == "linux" && !(g.GFlopsCPU >= 0) || g.GFlopsCPU > 1e5 {
			t.Errorf("%s = %g GFLOP/s per CPU second", name, g.GFlopsCPU)
		}
	}
}

// TestMeasureCeilings checks that every peak loop the CPU has is measured,
// gives positive plausible figures, and that the measurement keeps to its
// duration (one ceiling takes about 2*dur; the bound leaves room for a
// loaded machine).
func TestMeasureCeilings(t *testing.T) {
	const dur = 5 * time.Millisecond
	start := time.Now()
	cs := MeasureCeilings(dur)
	took := time.Since(start)
	want := map[string]bool{}
	if hasAVX512 {
		want["fma_zmm"] = true
	}
	if hasAVX2 {
		want["fma_ymm"] = true
	}
	if hasBF16 {
		want["dpbf16_zmm"] = true
	}
	if len(cs) != len(want) {
		t.Errorf("MeasureCeilings gave %d ceilings (%+v), want %v", len(cs), cs, want)
	}
	for _, c := range cs {
		if !want[c.Name] {
			t.Errorf("unexpected ceiling %q", c.Name)
		}
		if !(c.GFlops1 > 0) || c.GFlops1 > 1e5 || !(c.GFlopsAll > 0) || c.GFlopsAll > 1e6 {
			t.Errorf("%s: %g GFLOP/s on one goroutine, %g on %d: want positive plausible figures", c.Name, c.GFlops1, c.GFlopsAll, c.Workers)
		}
		if runtime.GOOS == "linux" && !(c.GFlopsCPU >= c.GFlops1*0.9) || c.GFlopsCPU > 1e5 {
			// CPU time runs no faster than wall time (10% for the clocks'
			// granularity and the calls between the reads).
			t.Errorf("%s: %g GFLOP/s per CPU second, %g per second", c.Name, c.GFlopsCPU, c.GFlops1)
		}
		if c.Workers != runtime.GOMAXPROCS(0) {
			t.Errorf("%s: Workers = %d, want GOMAXPROCS %d", c.Name, c.Workers, runtime.GOMAXPROCS(0))
		}
	}
	if limit := time.Duration(len(cs))*2*dur + time.Second; took > limit {
		t.Errorf("MeasureCeilings(%v) took %v, want under %v", dur, took, limit)
	}
}

// TestCeilingName checks that the ceiling of each precision's kernel is
// one MeasureCeilings measures on this CPU, and that the portable kernels
// (noasm, or bf16 switched off) have none.
func TestCeilingName(t *testing.T) {
	measured := map[string]bool{}
	for _, c := range MeasureCeilings(time.Millisecond) {
		measured[c.Name] = true
	}
	for _, p := range []Precision{FP32, BF16} {
		name := p.CeilingName()
		portable := Impl() == "go"
		if p == BF16 {
			portable = !NativeBF16()
		}
		if portable != (name == "") {
			t.Errorf("%v: ceiling %q for kernel %s/%s", p, name, Impl(), ImplBF16())
		}
		if name != "" && !measured[name] {
			t.Errorf("%v: ceiling %q is not measured here (%v)", p, name, measured)
		}
	}
	was := SetNativeBF16(false)
	defer SetNativeBF16(was)
	if name := BF16.CeilingName(); name != "" {
		t.Errorf("emulated bf16 has ceiling %q", name)
	}
}

func TestMeasureCopy(t *testing.T) {
	const dur = 5 * time.Millisecond
	for _, workers := range []int{1, 2, 0} {
		start := time.Now()
		bw := MeasureCopy(workers, 1<<20, dur)
		if took := time.Since(start); took > dur+time.Second {
			t.Errorf("MeasureCopy(%d, 1 MiB, %v) took %v", workers, dur, took)
		}
		if !(bw > 1e6) || bw > 1e13 {
			t.Errorf("MeasureCopy(%d) = %g bytes/s, want a positive plausible figure", workers, bw)
		}
	}
	if bw := MeasureCopy(3, 2, dur); !(bw > 0) {
		t.Errorf("MeasureCopy on a buffer smaller than the workers = %g", bw)
	}
}
