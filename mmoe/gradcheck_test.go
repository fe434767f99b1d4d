package mmoe

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/onestone/onestone/features"
)

// The gradient checks run the float32 model and compare Backward with
// central differences of the scalar loss L = Σ_t Σ_r R[t][r]·logit[t][r]
// (R random in [-1, 1)), accumulated in float64, with step h = 1e-2. A
// coordinate passes when |analytic − numeric| <= 2e-4 + 5e-3·max(|analytic|,
// |numeric|). On these small models (logits of order 1) the observed error is
// at most about 15% of that tolerance (float32 rounding of the loss divided by
// 2h, plus the O(h²) truncation of smooth activations), while real bugs (a
// dropped term, a wrong sign, a missing 1/n) exceed it by orders of
// magnitude; TestGradientCheckCatchesErrors shows a 10% error in one
// coordinate is caught. For ReLU a perturbation that flips the sign of any
// pre-activation makes the loss non-differentiable in between; such
// coordinates are retried with h = 1e-3 and, if a unit still flips, skipped
// and counted; the test fails if more than 5% are skipped.

const (
	fdStep   = 1e-2
	fdAbsTol = 2e-4
	fdRelTol = 5e-3
)

type fdResult struct {
	checked, skipped int
	maxErr           float64
	bad              []string
}

type gradChecker struct {
	m    *Model
	b    *features.Batch
	ws   *Workspace
	g    *Grads
	r    [][]float32
	base []bool
}

func newGradChecker(t *testing.T, m *Model, b *features.Batch, seed uint64) *gradChecker {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 99))
	c := &gradChecker{m: m, b: b, ws: m.NewWorkspace(b.Rows), g: m.NewGrads(b.Rows)}
	for range m.heads {
		r := make([]float32, b.Rows)
		for i := range r {
			r[i] = float32(2*rng.Float64() - 1)
		}
		c.r = append(c.r, r)
	}
	if err := m.Forward(c.ws, b); err != nil {
		t.Fatal(err)
	}
	c.base = reluSigns(m, c.ws, nil)
	if err := m.Backward(c.ws, b, c.r, c.g); err != nil {
		t.Fatal(err)
	}
	return c
}

// loss runs a fresh forward and returns L and whether a ReLU changed side.
func (c *gradChecker) loss(t *testing.T) (float64, bool) {
	t.Helper()
	ws := c.m.NewWorkspace(c.b.Rows)
	if err := c.m.Forward(ws, c.b); err != nil {
		t.Fatal(err)
	}
	var l float64
	for h, lg := range ws.Logits {
		for i, v := range lg {
			l += float64(c.r[h][i]) * float64(v)
		}
	}
	kink := false
	if c.m.act == actReLU {
		s := reluSigns(c.m, ws, nil)
		for i := range s {
			if s[i] != c.base[i] {
				kink = true
				break
			}
		}
	}
	return l, kink
}

// check compares analytic gradient ana[k] with the numeric derivative w.r.t.
// data[k] for every k.
func (c *gradChecker) check(t *testing.T, res *fdResult, name string, data []float32, ana func(k int) float64) {
	t.Helper()
	for k := range data {
		orig := data[k]
		var num float64
		kink := true
		for _, h := range []float32{fdStep, fdStep / 10} {
			data[k] = orig + h
			lp, k1 := c.loss(t)
			data[k] = orig - h
			lm, k2 := c.loss(t)
			data[k] = orig
			if !k1 && !k2 {
				num, kink = (lp-lm)/float64(2*h), false
				break
			}
		}
		if kink {
			res.skipped++
			continue
		}
		a := ana(k)
		res.checked++
		err := math.Abs(a - num)
		tol := fdAbsTol + fdRelTol*max(math.Abs(a), math.Abs(num))
		res.maxErr = max(res.maxErr, err/tol)
		if err > tol {
			res.bad = append(res.bad, fmt.Sprintf("%s[%d]: analytic %.6g, numeric %.6g", name, k, a, num))
		}
	}
}

// run checks every dense parameter and every row of every embedding table
// (rows the batch did not touch must have numeric gradient 0 and must not
// appear in Grads.Sparse).
func (c *gradChecker) run(t *testing.T) fdResult {
	t.Helper()
	var res fdResult
	for i, p := range c.m.Params() {
		gd := c.g.Dense[i]
		c.check(t, &res, p.Name, p.Data, func(k int) float64 { return float64(gd[k]) })
	}
	for f, e := range c.m.Embeddings() {
		sg := c.g.Sparse[f]
		full := make([]float64, e.Rows*e.Dim)
		seen := map[int32]bool{}
		for i, row := range sg.Rows {
			if seen[row] {
				res.bad = append(res.bad, fmt.Sprintf("%s: row %d appears twice in Grads.Sparse", e.Name, row))
			}
			seen[row] = true
			for d := 0; d < e.Dim; d++ {
				full[int(row)*e.Dim+d] = float64(sg.Grad[i*e.Dim+d])
			}
		}
		c.check(t, &res, e.Name, e.Data, func(k int) float64 { return full[k] })
	}
	return res
}

func (res fdResult) report(t *testing.T) {
	t.Helper()
	for i, s := range res.bad {
		if i == 10 {
			t.Errorf("... and %d more", len(res.bad)-10)
			break
		}
		t.Error(s)
	}
	if res.checked == 0 {
		t.Fatal("no coordinate checked")
	}
	if res.skipped*20 > res.checked+res.skipped {
		t.Errorf("%d of %d coordinates skipped at ReLU kinks", res.skipped, res.checked+res.skipped)
	}
	t.Logf("checked %d coordinates, skipped %d at kinks, worst error %.3g of the tolerance", res.checked, res.skipped, res.maxErr)
}

// reluSigns lists, for every activation unit of the last Forward, whether
// its output is positive.
func reluSigns(m *Model, ws *Workspace, dst []bool) []bool {
	rows := ws.rows
	add := func(y []float32, ld, cols int) {
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				dst = append(dst, y[r*ld+c] > 0)
			}
		}
	}
	for li := range m.levels {
		lv := &m.levels[li]
		for e := range lv.experts {
			ex := &lv.experts[e]
			add(ws.lv[li].y[ex.grp][ex.col:], lv.groups[ex.grp].out, ex.layers[0].out)
			for l := 1; l < len(ex.layers); l++ {
				add(ws.lv[li].hid[e][l], ex.layers[l].out, ex.layers[l].out)
			}
		}
	}
	for t := range m.heads {
		for l, L := range m.towers[t] {
			add(ws.tw[t][l], L.out, L.out)
		}
	}
	if m.ait != nil {
		for h := range m.heads {
			if m.ait.heads[h].parent >= 0 {
				add(ws.ait.info[h], m.ait.d, m.ait.d)
			}
		}
	}
	return dst
}

func smallConfig(arch, act string) Config {
	return Config{Arch: arch, EmbeddingDim: 3, Experts: 0, ExpertHidden: []int{5, 4}, Tower: []int{3}, Activation: act, Seed: 7}
}

func TestGradientsArchs(t *testing.T) {
	for _, arch := range Archs {
		for _, act := range []string{ActTanh, ActReLU} {
			t.Run(arch+"/"+act, func(t *testing.T) {
				cfg := smallConfig(arch, act)
				switch arch {
				case ArchMMoE, ArchOMoE:
					cfg.Experts = 3
				case ArchCGC:
					cfg.Experts, cfg.TaskExperts = 2, 2
				case ArchPLE:
					cfg.Experts, cfg.TaskExperts, cfg.Levels = 2, 1, 3
				}
				m, err := New(chained(cfg, []string{"ctr", "cvr"}), smallLayout(), []string{"ctr", "cvr"})
				if err != nil {
					t.Fatal(err)
				}
				rng := rand.New(rand.NewPCG(1, 2))
				b := randomBatch(smallLayout(), 6, rng)
				c := newGradChecker(t, m, b, 3)
				c.run(t).report(t)
			})
		}
	}
}

// TestGradientsParts isolates the parts: each activation in experts and
// towers; one-layer experts (whose outputs live in the fused first layer);
// no tower (heads on the gate output); three tasks; dense-only and
// sparse-only inputs.
func TestGradientsParts(t *testing.T) {
	layout := smallLayout()
	cases := []struct {
		name   string
		cfg    Config
		layout features.Layout
		heads  []string
	}{
		{"gelu", Config{Experts: 2, EmbeddingDim: 2, ExpertHidden: []int{4, 3}, Tower: []int{3}, Activation: ActGELU, Seed: 1}, layout, []string{"a", "b"}},
		{"one-layer-experts", Config{Experts: 3, EmbeddingDim: 2, ExpertHidden: []int{4}, Tower: []int{3, 2}, Activation: ActTanh, Seed: 2}, layout, []string{"a", "b"}},
		{"no-tower", Config{Arch: ArchCGC, Experts: 2, TaskExperts: 1, EmbeddingDim: 2, ExpertHidden: []int{3}, Tower: []int{}, Activation: ActTanh, Seed: 3}, layout, []string{"a", "b", "c"}},
		{"one-head", Config{Experts: 2, EmbeddingDim: 2, ExpertHidden: []int{3, 3}, Activation: ActTanh, Tower: []int{2}, Seed: 4}, layout, []string{"only"}},
		{"dense-only", Config{Experts: 2, ExpertHidden: []int{3}, Tower: []int{2}, Activation: ActTanh, Seed: 5}, features.Layout{Dense: layout.Dense}, []string{"a", "b"}},
		{"sparse-only", Config{Arch: ArchPLE, Levels: 2, Experts: 1, TaskExperts: 2, EmbeddingDim: 2, ExpertHidden: []int{3}, Tower: []int{2}, Activation: ActGELU, Seed: 6}, features.Layout{Sparse: layout.Sparse}, []string{"a", "b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.cfg, tc.layout, tc.heads)
			if err != nil {
				t.Fatal(err)
			}
			b := randomBatch(tc.layout, 5, rand.New(rand.NewPCG(8, 9)))
			newGradChecker(t, m, b, 4).run(t).report(t)
		})
	}
}

// TestGradientCheckCatchesErrors proves the checker can fail: a gradient
// off by a few percent in one coordinate of a gate, an expert, a tower and
// an embedding row is reported.
func TestGradientCheckCatchesErrors(t *testing.T) {
	cfg := smallConfig(ArchMMoE, ActTanh)
	cfg.Experts = 2
	m, err := New(cfg, smallLayout(), []string{"ctr", "cvr"})
	if err != nil {
		t.Fatal(err)
	}
	b := randomBatch(smallLayout(), 6, rand.New(rand.NewPCG(1, 2)))
	for _, target := range []string{"gates.cvr.weight", "experts.1.layers.0.weight", "towers.ctr.layers.0.bias", "embeddings.tags.weight"} {
		c := newGradChecker(t, m, b, 3)
		var grad []float32
		for i, p := range m.Params() {
			if p.Name == target {
				grad = c.g.Dense[i]
			}
		}
		if grad == nil {
			grad = c.g.Sparse[1].Grad
		}
		// Corrupt the largest coordinate by 10% plus 0.005.
		k := 0
		for i, v := range grad {
			if math.Abs(float64(v)) > math.Abs(float64(grad[k])) {
				k = i
			}
		}
		grad[k] += 0.1*grad[k] + float32(math.Copysign(0.005, float64(grad[k])))
		res := c.run(t)
		if len(res.bad) != 1 {
			t.Errorf("%s: corrupted gradient: checker reported %d mismatches, want 1: %v", target, len(res.bad), res.bad)
		}
	}
}

// TestGradientsAIT checks AIT's transfer: a chain of three heads on its
// own networks (arch aitm) with each activation, a head option on mmoe
// without towers (the heads read the gate outputs) and on ple, and a tree
// (two heads receiving from one).
func TestGradientsAIT(t *testing.T) {
	chain := []string{"click", "cart", "buy"}
	cases := []struct {
		name  string
		cfg   Config
		heads []string
	}{
		{"aitm/tanh", Config{Arch: ArchAITM, EmbeddingDim: 2, ExpertHidden: []int{4}, Tower: []int{3}, Activation: ActTanh, Seed: 1}, chain},
		{"aitm/relu", Config{Arch: ArchAITM, EmbeddingDim: 2, ExpertHidden: []int{4, 3}, Tower: []int{4}, Activation: ActReLU, Seed: 2}, chain},
		{"aitm/gelu", Config{Arch: ArchAITM, EmbeddingDim: 2, ExpertHidden: []int{4}, Tower: []int{3, 3}, Activation: ActGELU, Seed: 3}, chain},
		{"mmoe-no-tower", Config{Arch: ArchMMoE, AIT: true, Experts: 2, EmbeddingDim: 2, ExpertHidden: []int{3}, Tower: []int{}, Activation: ActTanh, Seed: 4}, chain},
		{"ple", Config{Arch: ArchPLE, AIT: true, Experts: 1, TaskExperts: 1, Levels: 2, EmbeddingDim: 2, ExpertHidden: []int{3}, Tower: []int{3}, Activation: ActTanh, Seed: 5}, chain},
		{"tree", Config{Arch: ArchAITM, EmbeddingDim: 2, ExpertHidden: []int{3}, Tower: []int{3}, Activation: ActTanh, Seed: 6,
			Transfer: map[string]string{"cart": "click", "buy": "click"}}, chain},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(chained(tc.cfg, tc.heads), smallLayout(), tc.heads)
			if err != nil {
				t.Fatal(err)
			}
			b := randomBatch(smallLayout(), 5, rand.New(rand.NewPCG(8, 9)))
			newGradChecker(t, m, b, 4).run(t).report(t)
		})
	}
}

// TestGradientCheckCatchesAITErrors: a 10% error in one coordinate of each
// AIT parameter, and of the tower and embedding gradients that flow back
// through it, is reported.
func TestGradientCheckCatchesAITErrors(t *testing.T) {
	heads := []string{"click", "cart", "buy"}
	cfg := chained(Config{Arch: ArchAITM, EmbeddingDim: 2, ExpertHidden: []int{4}, Tower: []int{3}, Activation: ActTanh, Seed: 1}, heads)
	m, err := New(cfg, smallLayout(), heads)
	if err != nil {
		t.Fatal(err)
	}
	b := randomBatch(smallLayout(), 5, rand.New(rand.NewPCG(8, 9)))
	for _, target := range []string{"ait.cart.info.weight", "ait.buy.info.bias", "ait.cart.query.weight", "ait.buy.key.weight", "ait.buy.value.weight", "towers.click.layers.0.weight", "embeddings.tags.weight"} {
		c := newGradChecker(t, m, b, 3)
		var grad []float32
		for i, p := range m.Params() {
			if p.Name == target {
				grad = c.g.Dense[i]
			}
		}
		if grad == nil {
			grad = c.g.Sparse[1].Grad
		}
		k := 0
		for i, v := range grad {
			if math.Abs(float64(v)) > math.Abs(float64(grad[k])) {
				k = i
			}
		}
		grad[k] += 0.1*grad[k] + float32(math.Copysign(0.005, float64(grad[k])))
		if res := c.run(t); len(res.bad) != 1 {
			t.Errorf("%s: corrupted gradient: checker reported %d mismatches, want 1: %v", target, len(res.bad), res.bad)
		}
	}
}
