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
	for name, measure := range map[string]func(m, n, k int, transA, transB bool, workers int, dur time.Duration) float64{
		"MeasureGemm": MeasureGemm, "MeasureGemmBF16": MeasureGemmBF16,
	} {
		g := measure(33, 65, 17, true, true, 2, 5*time.Millisecond)
		if !(g > 0) || g > 1e5 {
			t.Errorf("%s = %g GFLOP/s, want a positive plausible figure", name, g)
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
		if c.Workers != runtime.GOMAXPROCS(0) {
			t.Errorf("%s: Workers = %d, want GOMAXPROCS %d", c.Name, c.Workers, runtime.GOMAXPROCS(0))
		}
	}
	if limit := time.Duration(len(cs))*2*dur + time.Second; took > limit {
		t.Errorf("MeasureCeilings(%v) took %v, want under %v", dur, took, limit)
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
