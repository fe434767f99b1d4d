package mmoe

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/onestone/onestone/features"
)

// joinSides builds the full batch Split.Forward stands for: every row has
// ctx's context-side values and its own candidate-side values.
func joinSides(l features.Layout, ctx, cand *features.Batch) *features.Batch {
	rows := cand.Rows
	b := &features.Batch{Rows: rows, DenseWidth: len(l.Dense)}
	for f, fld := range l.Sparse {
		src, r0 := cand, -1
		if fld.Side == features.SideContext {
			src, r0 = ctx, 0
		}
		sc := src.Sparse[f]
		var col features.SparseColumn
		if sc.Offsets != nil {
			col.Offsets = []int32{0}
		}
		for r := 0; r < rows; r++ {
			rr := r
			if r0 >= 0 {
				rr = r0
			}
			if sc.Offsets == nil {
				col.IDs = append(col.IDs, sc.IDs[rr])
				continue
			}
			col.IDs = append(col.IDs, sc.IDs[sc.Offsets[rr]:sc.Offsets[rr+1]]...)
			col.Offsets = append(col.Offsets, int32(len(col.IDs)))
		}
		b.Sparse = append(b.Sparse, col)
	}
	for r := 0; r < rows; r++ {
		for i, fld := range l.Dense {
			v := cand.Dense[r*cand.DenseWidth+i]
			if fld.Side == features.SideContext {
				v = ctx.Dense[i]
			}
			b.Dense = append(b.Dense, v)
		}
	}
	return b
}

func TestSplitForward(t *testing.T) {
	for _, arch := range Archs {
		t.Run(arch, func(t *testing.T) {
			cfg := withExperts(Config{Arch: arch, EmbeddingDim: 3, ExpertHidden: []int{6, 4}, Tower: []int{3}, Activation: ActGELU, Seed: 2})
			m := testModel(t, cfg)
			l := smallLayout()
			rng := rand.New(rand.NewPCG(3, 3))
			ctx := randomBatch(l, 2, rng)
			ctx.SliceTo(ctx, 1, 2) // row 1: a non-empty context list is likely
			cand := randomBatch(l, 9, rng)
			full := joinSides(l, ctx, cand)
			ws := m.NewWorkspace(9)
			if err := m.Forward(ws, full); err != nil {
				t.Fatal(err)
			}
			want := [][]float32{append([]float32(nil), ws.Logits[0]...), append([]float32(nil), ws.Logits[1]...)}
			s := m.NewSplit()
			if s.CandidateWidth() != 3+1 {
				t.Errorf("candidate width %d, want 4 (field cats and dense c)", s.CandidateWidth())
			}
			sws := s.NewWorkspace(9)
			if err := s.Forward(sws, ctx, cand); err != nil {
				t.Fatal(err)
			}
			for h := range want {
				for r, v := range want[h] {
					if got := sws.Logits[h][r]; math.Abs(float64(got-v)) > 1e-5+1e-5*math.Abs(float64(v)) {
						t.Errorf("head %d row %d: split %g, full %g", h, r, got, v)
					}
				}
			}
			// A stale split after a weight change, then Refresh.
			m.Params()[0].Data[len(m.Params()[0].Data)-1] += 0.5
			if err := m.Forward(ws, full); err != nil {
				t.Fatal(err)
			}
			s.Refresh()
			if err := s.Forward(sws, ctx, cand); err != nil {
				t.Fatal(err)
			}
			for r, v := range ws.Logits[0] {
				if got := sws.Logits[0][r]; math.Abs(float64(got-v)) > 1e-5+1e-5*math.Abs(float64(v)) {
					t.Errorf("after Refresh row %d: split %g, full %g", r, got, v)
				}
			}
			if err := s.Forward(m.NewWorkspace(9), ctx, cand); err == nil {
				t.Error("split forward accepted a plain workspace")
			}
			if err := s.Forward(sws, cand, cand); err == nil {
				t.Error("split forward accepted a 9-row context")
			}
		})
	}
}

// TestSplitForwardRowsMatchesForwardBitForBit checks that batch inference
// (every row its own context) gives each row exactly the logits the online
// path gives it as a candidate of its own context.
func TestSplitForwardRowsMatchesForwardBitForBit(t *testing.T) {
	for _, arch := range Archs {
		t.Run(arch, func(t *testing.T) {
			cfg := withExperts(Config{Arch: arch, EmbeddingDim: 3, ExpertHidden: []int{6, 4}, Tower: []int{3}, Seed: 5})
			m := testModel(t, cfg)
			l := smallLayout()
			rng := rand.New(rand.NewPCG(4, 4))
			b := randomBatch(l, 23, rng)
			s := m.NewSplit()
			ws := s.NewWorkspace(23)
			if err := s.ForwardRows(ws, b); err != nil {
				t.Fatal(err)
			}
			one := s.NewWorkspace(1)
			var row features.Batch
			for r := 0; r < b.Rows; r++ {
				b.SliceTo(&row, r, r+1)
				if err := s.Forward(one, &row, &row); err != nil {
					t.Fatal(err)
				}
				for h := range ws.Logits {
					if got, want := ws.Logits[h][r], one.Logits[h][0]; math.Float32bits(got) != math.Float32bits(want) {
						t.Fatalf("row %d head %d: ForwardRows %v, Forward %v", r, h, got, want)
					}
				}
			}
			// And both agree with the unsplit forward up to rounding.
			full := m.NewWorkspace(23)
			if err := m.Forward(full, b); err != nil {
				t.Fatal(err)
			}
			for h := range full.Logits {
				for r := 0; r < b.Rows; r++ {
					if d := math.Abs(float64(full.Logits[h][r] - ws.Logits[h][r])); d > 1e-5 {
						t.Fatalf("row %d head %d: split rows %v, full %v", r, h, ws.Logits[h][r], full.Logits[h][r])
					}
				}
			}
		})
	}
}

// TestSplitPackedRefresh runs the split with 16-wide embeddings (the
// fixed-size gather), checks it against the unsplit forward, then changes
// every dense weight and bias (so every packed copy is stale) and checks
// that Refresh brings each back: the split must follow the model again,
// and must have differed before Refresh.
func TestSplitPackedRefresh(t *testing.T) {
	for _, arch := range Archs {
		t.Run(arch, func(t *testing.T) {
			cfg := withExperts(Config{Arch: arch, EmbeddingDim: 16, ExpertHidden: []int{12, 8}, Tower: []int{5, 3}, Seed: 7})
			m := testModel(t, cfg)
			l := smallLayout()
			rng := rand.New(rand.NewPCG(9, 9))
			ctx := randomBatch(l, 2, rng)
			ctx.SliceTo(ctx, 1, 2)
			cand := randomBatch(l, 11, rng)
			full := joinSides(l, ctx, cand)
			ws := m.NewWorkspace(11)
			s := m.NewSplit()
			sws := s.NewWorkspace(11)
			compare := func(what string, wantEqual bool) {
				t.Helper()
				if err := m.Forward(ws, full); err != nil {
					t.Fatal(err)
				}
				if err := s.Forward(sws, ctx, cand); err != nil {
					t.Fatal(err)
				}
				differs := false
				for h := range ws.Logits {
					for r, v := range ws.Logits[h] {
						if got := sws.Logits[h][r]; math.Abs(float64(got-v)) > 1e-5+1e-5*math.Abs(float64(v)) {
							differs = true
							if wantEqual {
								t.Errorf("%s: head %d row %d: split %g, full %g", what, h, r, got, v)
							}
						}
					}
				}
				if !wantEqual && !differs {
					t.Errorf("%s: the stale split still agrees with the model", what)
				}
			}
			compare("fresh", true)
			for _, p := range m.Params() {
				if p.Name == "" || len(p.Shape) == 0 {
					continue
				}
				for i := range p.Data {
					p.Data[i] = 1.1*p.Data[i] + 0.01*float32(i%7-3)
				}
			}
			compare("stale", false)
			s.Refresh()
			compare("after Refresh", true)
		})
	}
}

func TestSplitForwardNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counting under the race detector")
	}
	m := testModel(t, Config{Arch: ArchMMoE, Experts: 3, EmbeddingDim: 16, ExpertHidden: []int{12, 8}, Seed: 1})
	rng := rand.New(rand.NewPCG(2, 2))
	ctx, cand := randomBatch(smallLayout(), 1, rng), randomBatch(smallLayout(), 40, rng)
	s := m.NewSplit()
	ws := s.NewWorkspace(40)
	if err := s.ForwardRows(ws, cand); err != nil { // sizes ForwardRows' buffer
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(10, func() {
		if err := s.Forward(ws, ctx, cand); err != nil {
			t.Fatal(err)
		}
		if err := s.ForwardRows(ws, cand); err != nil {
			t.Fatal(err)
		}
		s.Refresh()
	}); n != 0 {
		t.Errorf("split forward and Refresh allocate %v times, want 0", n)
	}
}

// TestSplitFusedPlan checks which models get level 0's biases and ReLU in
// the GEMM epilogue (the bitwise test above then compares the fused
// Forward with the unfused ForwardRows): every ReLU architecture, with the
// experts' columns as the ReLU range, and no GELU one.
func TestSplitFusedPlan(t *testing.T) {
	for _, arch := range Archs {
		for _, act := range []string{ActReLU, ActGELU} {
			cfg := withExperts(Config{Arch: arch, EmbeddingDim: 3, ExpertHidden: []int{6, 4}, Activation: act, Seed: 5})
			s := testModel(t, cfg).NewSplit()
			if want := act == ActReLU; s.fused != want {
				t.Errorf("%s %s: fused %v, want %v", arch, act, s.fused, want)
			}
			if s.fused {
				for _, ex := range s.m.levels[0].experts {
					if ex.col < s.reluFrom || ex.col+ex.layers[0].out > s.reluTo {
						t.Errorf("%s: expert columns [%d, %d) outside the ReLU range [%d, %d)", arch, ex.col, ex.col+ex.layers[0].out, s.reluFrom, s.reluTo)
					}
				}
			}
		}
	}
}

// TestSplitForwardCandidatesInPasses: one SetContext and several
// ForwardCandidates passes over slices of the candidates give every row the
// bits one Forward over all of them gives; without a context, or after a
// failed SetContext, ForwardCandidates refuses.
func TestSplitForwardCandidatesInPasses(t *testing.T) {
	for _, arch := range Archs {
		t.Run(arch, func(t *testing.T) {
			cfg := withExperts(Config{Arch: arch, EmbeddingDim: 16, ExpertHidden: []int{40, 20}, Tower: []int{8}, Seed: 6})
			m := testModel(t, cfg)
			l := smallLayout()
			rng := rand.New(rand.NewPCG(6, 6))
			ctx := randomBatch(l, 1, rng)
			cand := randomBatch(l, 61, rng)
			s := m.NewSplit()
			all := s.NewWorkspace(61)
			if err := s.Forward(all, ctx, cand); err != nil {
				t.Fatal(err)
			}
			ws := s.NewWorkspace(28)
			if err := s.ForwardCandidates(ws, cand); err == nil {
				t.Fatal("ForwardCandidates without a context succeeded")
			}
			if err := s.SetContext(ws, ctx); err != nil {
				t.Fatal(err)
			}
			var part features.Batch
			for lo := 0; lo < cand.Rows; lo += 28 {
				hi := min(lo+28, cand.Rows)
				cand.SliceTo(&part, lo, hi)
				if err := s.ForwardCandidates(ws, &part); err != nil {
					t.Fatal(err)
				}
				for h := range all.Logits {
					for r := lo; r < hi; r++ {
						if got, want := ws.Logits[h][r-lo], all.Logits[h][r]; math.Float32bits(got) != math.Float32bits(want) {
							t.Fatalf("row %d head %d: in passes %v, in one Forward %v", r, h, got, want)
						}
					}
				}
			}
			if err := s.SetContext(ws, cand); err == nil {
				t.Fatal("SetContext took a 61-row context")
			}
			if err := s.ForwardCandidates(ws, &part); err == nil {
				t.Fatal("ForwardCandidates after a failed SetContext succeeded")
			}
		})
	}
}
