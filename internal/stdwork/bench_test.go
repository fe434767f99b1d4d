package stdwork

import (
	"context"
	"testing"
	"time"
)

// TestBenchRuns checks that every part of `onestone bench` measures
// something on the std workload (tiny counts: the figures come from
// `make bench`, not from here).
func TestBenchRuns(t *testing.T) {
	if noasm {
		// make test's noasm run is for the kernels; Bench's plumbing is
		// the same with either kernel, and the portable one makes this
		// test take a minute.
		t.Skip("noasm build")
	}
	rep, err := Bench(context.Background(), BenchConfig{Train: true, Score: true, Gemm: true, TrainSteps: 2, ScoreRequests: 3, GemmTime: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	tr := rep.Train
	if tr == nil || !(tr.ExamplesPerSec > 0) || !(tr.ForwardMs > 0) || !(tr.BackwardMs > 0) || !(tr.PeakRSSMB > 100) {
		t.Fatalf("train figure %+v", tr)
	}
	// 26 tables of 100,001 x 16 plus the dense part.
	if tr.Parameters < 26*100_001*16 {
		t.Fatalf("std model has %d parameters", tr.Parameters)
	}
	if len(rep.Score) != 4 {
		t.Fatalf("score figures %+v", rep.Score)
	}
	for _, s := range rep.Score {
		if !(s.P50Ms > 0) || s.P99Ms < s.P50Ms {
			t.Fatalf("score figure %+v", s)
		}
	}
	if len(rep.Gemm) == 0 || !(rep.Gemm[0].GFlops1 > 0) {
		t.Fatalf("gemm figures %+v", rep.Gemm)
	}
}
