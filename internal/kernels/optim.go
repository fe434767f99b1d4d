package kernels

import (
	"fmt"
	"math"
)

// AdamConsts are the constants of one Adam step, as mtl.Adam derives them
// from its configuration and step number t.
type AdamConsts struct {
	Beta1, Beta2 float32
	// StepSize is lr·sqrt(1−β2^t)/(1−β1^t), the bias-corrected rate.
	StepSize float32
	// Eps is eps·sqrt(1−β2^t), the bias-corrected epsilon.
	Eps float32
	// Decay multiplies each parameter before its update: 1 − lr·weight
	// decay, or 1 for none.
	Decay float32
}

// AdamUpdate applies one Adam step to the len(p) parameters p with first
// and second moments m and v, for the gradient g0 + g1 (g0 alone when g1 is
// nil): for each i, with g = g0[i] + g1[i],
//
//	m = β1·m + (1−β1)·g
//	v = β2·v + ((1−β2)·g)·g
//	p = p·Decay − (StepSize·m) / (sqrt(v) + Eps)
//
// every operation rounded to float32 in this order (never a fused
// multiply-add), so the result is the same whatever the build: the bits of
// that Go code compiled without FMA. It reads each input once and writes
// p, m and v once, a single pass at memory bandwidth (AVX2 where the CPU
// has it); summing two data-parallel workers' gradients in the same pass
// saves the separate reduction. It does not allocate and is safe for
// concurrent use on disjoint slices. It panics if a slice is shorter than
// p.
func AdamUpdate(p, m, v, g0, g1 []float32, c AdamConsts) {
	n := len(p)
	if len(m) < n || len(v) < n || len(g0) < n || (g1 != nil && len(g1) < n) {
		panic(fmt.Sprintf("kernels: AdamUpdate: %d parameters, %d, %d moments, %d and %d gradients", n, len(m), len(v), len(g0), len(g1)))
	}
	k := adamConsts{b1: c.Beta1, b2: c.Beta2, c1: 1 - c.Beta1, c2: 1 - c.Beta2, step: c.StepSize, eps: c.Eps, decay: c.Decay}
	done := adamAsm(p[:n], m[:n], v[:n], g0[:n], g1, &k)
	var t1 []float32
	if g1 != nil {
		t1 = g1[done:n]
	}
	adamGo(p[done:n], m[done:n], v[done:n], g0[done:n], t1, &k)
}

// adamConsts is AdamConsts as the kernels read it (the field order is the
// assembly's).
type adamConsts struct {
	b1, b2, c1, c2, step, eps, decay float32
}

// adamGo is AdamUpdate's arithmetic. The conversions keep the compiler
// from fusing a product and a sum into one FMA.
func adamGo(p, m, v, g0, g1 []float32, k *adamConsts) {
	m = m[:len(p)]
	v = v[:len(p)]
	g0 = g0[:len(p)]
	if g1 != nil {
		g1 = g1[:len(p)]
	}
	for i := range p {
		g := g0[i]
		if g1 != nil {
			g += g1[i]
		}
		mi := float32(k.b1*m[i]) + float32(k.c1*g)
		vi := float32(k.b2*v[i]) + float32(float32(k.c2*g)*g)
		m[i], v[i] = mi, vi
		u := float32(k.step*mi) / (float32(math.Sqrt(float64(vi))) + k.eps)
		p[i] = float32(p[i]*k.decay) - u
	}
}

// PrefetchRows asks the CPU to bring rows[i] of table (rows of dim floats)
// into its caches, for the rows of a sparse update or a gather about to
// run: an embedding table is too large for the caches, and the rows a
// batch touches are scattered over it, so each row read cold stalls on
// memory. Issued a few dozen rows ahead of the loop that reads them, the
// loads overlap. It is a hint: it changes no value, and without assembly
// it does nothing. It reads rows and panics on a row outside the table.
func PrefetchRows(table []float32, dim int, rows []int32) {
	if len(rows) == 0 || dim <= 0 {
		return
	}
	nr := int32(len(table) / dim)
	for i, r := range rows {
		if r < 0 || r >= nr {
			panic(fmt.Sprintf("kernels: PrefetchRows: row %d (entry %d) outside the table's %d rows", r, i, nr))
		}
	}
	prefetchRows(table, dim, rows)
}
