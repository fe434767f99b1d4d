package stdwork

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/onestone/onestone/internal/kernels"
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
	rep, err := Bench(context.Background(), BenchConfig{Train: true, Score: true, Gemm: true, TrainSteps: 2, ScoreRequests: 3, GemmTime: time.Millisecond, CeilingTime: time.Millisecond})
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
	// Model and scorer paths on 1 and 2 workers, in fp32 and, where the
	// CPU runs it, bf16.
	wantScore := map[string]int{"fp32": 4}
	if kernels.NativeBF16() {
		wantScore["bf16"] = 4
	}
	gotScore := map[string]int{}
	for _, s := range rep.Score {
		gotScore[s.Precision]++
		if !(s.P50Ms > 0) || s.P99Ms < s.P50Ms || !(s.CPUMsPerRequest > 0) {
			t.Fatalf("score figure %+v", s)
		}
	}
	if !maps.Equal(gotScore, wantScore) {
		t.Fatalf("score figures by precision %v, want %v: %+v", gotScore, wantScore, rep.Score)
	}
	if len(rep.Gemm) == 0 || !(rep.Gemm[0].GFlops1 > 0) {
		t.Fatalf("gemm figures %+v", rep.Gemm)
	}

	// Every figure of a kernel with a ceiling is judged against it.
	if len(rep.Ceilings) == 0 {
		t.Fatal("no ceilings measured")
	}
	if tr.Precision != "fp32" || tr.Ceiling != kernels.FP32.CeilingName() || !(tr.CeilingFrac > 0) || !(tr.CPUMsPerStep > 0) || !(tr.CeilingFracCPU > 0) {
		t.Fatalf("train figure %+v: want fp32 with ceiling fractions and CPU time", tr)
	}
	if want := tr.FlopPerExample * tr.ExamplesPerSec / 1e9; tr.GFlopsEffective != want {
		t.Fatalf("effective GFLOP/s %g, want %g", tr.GFlopsEffective, want)
	}
	precs := map[string]int{}
	for _, g := range rep.Gemm {
		precs[g.Precision]++
		p, _ := kernels.ParsePrecision(g.Precision)
		if g.Ceiling != p.CeilingName() || !(g.Frac1 > 0) || !(g.Frac2 > 0) {
			t.Fatalf("gemm figure %+v: want a fraction of ceiling %q", g, p.CeilingName())
		}
		if (p == kernels.BF16) != (g.VsFP32 > 0) {
			t.Fatalf("gemm figure %+v: a ratio to fp32 for bf16 only", g)
		}
	}
	shapes := len(kernels.StdShapes())
	if precs["fp32"] != shapes || kernels.NativeBF16() && precs["bf16"] != shapes {
		t.Fatalf("gemm figures by precision %v for %d shapes", precs, shapes)
	}
}

// TestStepFlopPerExample compares the step's arithmetic with the std
// model's layers counted by hand (docs/benchmarks.md: the input is
// 26 x 16 + 13 = 429 wide; 8 experts [256, 128]; a gate of 8 per task on
// the input; a tower [64] and a head of 1 per task), three products of
// 2·in·out each.
func TestStepFlopPerExample(t *testing.T) {
	_, m, _, err := build(1)
	if err != nil {
		t.Fatal(err)
	}
	in := Fields*16 + Dense
	macs := 8*(in*256+256*128) + 2*(in*8) + 2*(128*64+64*1)
	if got, want := StepFlopPerExample(m), 3*2*float64(macs); got != want {
		t.Fatalf("StepFlopPerExample = %g, want %g", got, want)
	}
}
