package mmoe

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/kernels"
)

// bf16Config is a model wide enough for bf16 rounding to show in every
// product, for each architecture.
func bf16Config(arch string) Config {
	return withExperts(Config{Arch: arch, EmbeddingDim: 16, ExpertHidden: []int{24, 12}, Tower: []int{6}, Seed: 4})
}

// passResult is what one forward and backward pass produced.
type passResult struct {
	logits [][]float32
	dense  [][]float32
	sparse [][]float32
}

func runPass(t *testing.T, m *Model, b *features.Batch, p kernels.Precision) passResult {
	t.Helper()
	r := m.NewReplica(b.Rows)
	r.SetPrecision(p)
	if r.ws.Precision() != p {
		t.Fatalf("SetPrecision(%v): the workspace has %v", p, r.ws.Precision())
	}
	logits, err := r.Forward(b)
	if err != nil {
		t.Fatal(err)
	}
	var res passResult
	dl := make([][]float32, len(logits))
	for h := range logits {
		res.logits = append(res.logits, slices.Clone(logits[h]))
		dl[h] = make([]float32, b.Rows)
		for i := range dl[h] {
			dl[h][i] = float32(math.Sin(float64(3*i + h)))
		}
	}
	if err := r.Backward(b, dl); err != nil {
		t.Fatal(err)
	}
	for _, g := range r.DenseGrads() {
		res.dense = append(res.dense, slices.Clone(g))
	}
	for f := range m.Embeddings() {
		_, g := r.SparseGrad(f)
		res.sparse = append(res.sparse, slices.Clone(g))
	}
	return res
}

// compare reports the largest difference between a and b relative to the
// largest magnitude of a, and whether they have the same bits.
func compare(a, b [][]float32) (rel float64, same bool) {
	var diff, scale float64
	same = true
	for i := range a {
		for j, v := range a[i] {
			diff = max(diff, math.Abs(float64(v-b[i][j])))
			scale = max(scale, math.Abs(float64(v)))
			same = same && math.Float32bits(v) == math.Float32bits(b[i][j])
		}
	}
	if scale == 0 {
		return diff, same
	}
	return diff / scale, same
}

// TestBF16ForwardBackward checks the bf16 training pass of every
// architecture: it differs from float32 (its products do run in bf16) by
// no more than bf16 rounding explains, and the emulated kernel (the CPU's
// AVX512_BF16 switched off) gives the native one's bits. The gradients are
// compared with tanh: with ReLU, the few units whose pre-activation is
// within rounding of zero switch on or off between the precisions, and
// each such switch moves a whole gradient entry.
func TestBF16ForwardBackward(t *testing.T) {
	for _, act := range []string{ActReLU, ActTanh} {
		for _, arch := range Archs {
			t.Run(arch+"-"+act, func(t *testing.T) {
				cfg := bf16Config(arch)
				cfg.Activation = act
				m := testModel(t, cfg)
				b := randomBatch(smallLayout(), 37, rand.New(rand.NewPCG(8, 8)))
				fp := runPass(t, m, b, kernels.FP32)
				bf := runPass(t, m, b, kernels.BF16)
				was := kernels.SetNativeBF16(false)
				emu := runPass(t, m, b, kernels.BF16)
				kernels.SetNativeBF16(was)
				for _, c := range []struct {
					what     string
					fp, bf   [][]float32
					emulated [][]float32
				}{{"logits", fp.logits, bf.logits, emu.logits}, {"dense gradients", fp.dense, bf.dense, emu.dense}, {"embedding gradients", fp.sparse, bf.sparse, emu.sparse}} {
					rel, same := compare(c.fp, c.bf)
					if same {
						t.Errorf("%s: bf16 gives the float32 bits", c.what)
					}
					if rel > 0.03 && (act == ActTanh || c.what == "logits") {
						t.Errorf("%s: bf16 differs from float32 by %.3g of the largest value", c.what, rel)
					}
					if _, same := compare(c.bf, c.emulated); !same {
						t.Errorf("%s: the emulated bf16 kernel differs from the native one", c.what)
					}
				}
			})
		}
	}
}

// TestSplitBF16 checks the split forward in bf16: batch inference and the
// request path give every row the same bits, passes give the bits of one
// Forward, the native and emulated kernels agree bit for bit, and bf16
// scores are within rounding of float32's.
func TestSplitBF16(t *testing.T) {
	for _, arch := range Archs {
		t.Run(arch, func(t *testing.T) {
			m := testModel(t, bf16Config(arch))
			l := smallLayout()
			rng := rand.New(rand.NewPCG(5, 5))
			ctx, cand := randomBatch(l, 1, rng), randomBatch(l, 30, rng)
			forward := func(s *Split) [][]float32 {
				ws := s.NewWorkspace(30)
				if err := s.Forward(ws, ctx, cand); err != nil {
					t.Fatal(err)
				}
				return [][]float32{slices.Clone(ws.Logits[0]), slices.Clone(ws.Logits[1])}
			}
			s := m.NewSplitIn(kernels.BF16)
			if s.Precision() != kernels.BF16 {
				t.Fatalf("Precision() = %v", s.Precision())
			}
			bf := forward(s)
			// In passes of 7 rows, and each row alone as ForwardRows scores it.
			ws := s.NewWorkspace(7)
			if err := s.SetContext(ws, ctx); err != nil {
				t.Fatal(err)
			}
			var part features.Batch
			for lo := 0; lo < cand.Rows; lo += 7 {
				hi := min(lo+7, cand.Rows)
				cand.SliceTo(&part, lo, hi)
				if err := s.ForwardCandidates(ws, &part); err != nil {
					t.Fatal(err)
				}
				for h := range bf {
					for r := lo; r < hi; r++ {
						if math.Float32bits(ws.Logits[h][r-lo]) != math.Float32bits(bf[h][r]) {
							t.Fatalf("row %d head %d: in passes %v, in one Forward %v", r, h, ws.Logits[h][r-lo], bf[h][r])
						}
					}
				}
			}
			rows := joinSides(l, ctx, cand)
			rws := s.NewWorkspace(30)
			if err := s.ForwardRows(rws, rows); err != nil {
				t.Fatal(err)
			}
			if _, same := compare(bf, rws.Logits); !same {
				t.Error("ForwardRows and Forward differ in bf16")
			}
			fp := forward(m.NewSplit())
			if rel, same := compare(fp, bf); same || rel > 0.03 {
				t.Errorf("bf16 against float32: same bits %v, relative difference %.3g", same, rel)
			}
			was := kernels.SetNativeBF16(false)
			emu := forward(m.NewSplitIn(kernels.BF16))
			kernels.SetNativeBF16(was)
			if _, same := compare(bf, emu); !same {
				t.Error("the emulated bf16 kernel differs from the native one")
			}
		})
	}
}

// TestSplitBF16Pairs checks the bf16 split forward whose first layer
// hands the experts' second layers their input as bf16 pairs: it is
// planned for a ReLU MMoE, and gives every row the bits of the same
// split without pairs (the float32 output converted and packed again) and
// of ForwardRows, in passes with full and partial row tiles, on the
// native kernels and the emulation.
func TestSplitBF16Pairs(t *testing.T) {
	cfg := Config{Arch: ArchMMoE, EmbeddingDim: 16, Experts: 3, ExpertHidden: []int{64, 40}, Tower: []int{6}, Seed: 4}
	m := testModel(t, cfg)
	l := smallLayout()
	rng := rand.New(rand.NewPCG(6, 6))
	ctx, cand := randomBatch(l, 1, rng), randomBatch(l, 45, rng)
	for _, native := range []bool{true, false} {
		was := kernels.SetNativeBF16(native && kernels.NativeBF16())
		s, plain := m.NewSplitIn(kernels.BF16), m.NewSplitIn(kernels.BF16)
		if !s.pairs {
			t.Fatal("a bf16 split of a ReLU MMoE does not plan pairs")
		}
		plain.pairs = false
		run := func(s *Split, pass int) [][]float32 {
			ws := s.NewWorkspace(pass)
			if err := s.SetContext(ws, ctx); err != nil {
				t.Fatal(err)
			}
			out := [][]float32{nil, nil}
			var part features.Batch
			for lo := 0; lo < cand.Rows; lo += pass {
				cand.SliceTo(&part, lo, min(lo+pass, cand.Rows))
				if err := s.ForwardCandidates(ws, &part); err != nil {
					t.Fatal(err)
				}
				for h := range out {
					out[h] = append(out[h], ws.Logits[h]...)
				}
			}
			return out
		}
		want := run(plain, 45)
		rws := s.NewWorkspace(45)
		if err := s.ForwardRows(rws, joinSides(l, ctx, cand)); err != nil {
			t.Fatal(err)
		}
		if _, same := compare(want, rws.Logits); !same {
			t.Errorf("native %v: ForwardRows and the split without pairs differ", native)
		}
		for _, pass := range []int{45, 28, 17} {
			if _, same := compare(want, run(s, pass)); !same {
				t.Errorf("native %v: passes of %d with pairs differ from the split without", native, pass)
			}
		}
		kernels.SetNativeBF16(was)
	}
}
