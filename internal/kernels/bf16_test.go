package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// forceBF16Fallback runs the exported bf16 functions on the portable
// kernel for the rest of the test.
func forceBF16Fallback(t *testing.T) {
	old := activeBF16
	activeBF16 = goBF16MicroKernel
	t.Cleanup(func() { activeBF16 = old })
}

// specialFloats are inputs every conversion test covers.
var specialFloats = []float32{
	0, float32(math.Copysign(0, -1)), 1, -1, 1 + 0x1p-8, 1 + 3*0x1p-8, 1 + 0x1p-8 + 0x1p-20, -(1 + 0x1p-8),
	math.MaxFloat32, -math.MaxFloat32, 0x1p-126, -0x1p-126, 0x1p-127, -0x1p-149, math.Float32frombits(0x007fffff),
	float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()),
	math.Float32frombits(0x7f800001), math.Float32frombits(0xffbfffff), math.Float32frombits(0x7f7f8000),
	math.Float32frombits(0x3f80ffff), math.Float32frombits(0x3f818000),
}

// randBits returns n floats: random bit patterns (denormals, NaNs and
// infinities included) and the special values.
func randBits(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		u := rng.Uint32()
		switch rng.IntN(6) {
		case 0:
			u &= 0x807fffff // zero or denormal
		case 1:
			u |= 0x7f800000 // NaN or infinity
		case 2:
			x[i] = specialFloats[rng.IntN(len(specialFloats))]
			continue
		}
		x[i] = math.Float32frombits(u)
	}
	return x
}

// TestRoundBF16 checks the conversion's rules on values whose rounding is
// known: ties go to the even neighbour, denormals become signed zeros,
// overflow becomes infinity, NaNs stay quiet NaNs.
func TestRoundBF16(t *testing.T) {
	for _, c := range []struct{ in, want float32 }{
		{1, 1},
		{1 + 0x1p-8, 1},                            // tie, down to even
		{1 + 3*0x1p-8, 1 + 0x1p-6},                 // tie, up to even
		{1 + 0x1p-8 + 0x1p-20, 1 + 0x1p-7},         // above the tie
		{-(1 + 0x1p-8 + 0x1p-20), -1 - 0x1p-7},     // sign-symmetric
		{math.Float32frombits(0x007fffff), 0},      // largest denormal
		{-0x1p-149, float32(math.Copysign(0, -1))}, // smallest, negative
		{0x1p-126, 0x1p-126},                       // smallest normal
		{math.MaxFloat32, float32(math.Inf(1))},    // rounds past the largest bf16
		{math.Float32frombits(0x7f7f7fff), math.Float32frombits(0x7f7f0000)},
		{float32(math.Inf(-1)), float32(math.Inf(-1))},
	} {
		if got := RoundBF16(c.in); math.Float32bits(got) != math.Float32bits(c.want) {
			t.Errorf("RoundBF16(%g = %#x) = %g (%#x), want %g (%#x)", c.in, math.Float32bits(c.in), got, math.Float32bits(got), c.want, math.Float32bits(c.want))
		}
	}
	for _, u := range []uint32{0x7f800001, 0xffbfffff, 0x7fc00000} {
		got := math.Float32bits(RoundBF16(math.Float32frombits(u)))
		if got&0x7fc00000 != 0x7fc00000 || got&0xffff != 0 || got>>31 != u>>31 {
			t.Errorf("RoundBF16(NaN %#x) = %#x, want a quiet NaN of the same sign", u, got)
		}
	}
}

// TestCvtMatchesGo checks the assembly conversions against the Go ones on
// random bit patterns: cvtPairs on every length up to 100 (all tails),
// cvtInterleavePanel on every width up to 32, cvtTranspose8 on every depth
// up to 40, each with padded strides; and that they write nothing but what
// they own.
func TestCvtMatchesGo(t *testing.T) {
	if !hasBF16 {
		t.Skip("no AVX512_BF16: the conversions are the Go ones")
	}
	rng := rand.New(rand.NewPCG(40, 40))
	fill := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = sentinel
		}
		return x
	}
	for n := 0; n <= 100; n++ {
		src := randBits(rng, n)
		words := (n + 1) / 2
		got, want := fill(words+3), fill(words+3)
		cvtPairs(got[:words], src)
		cvtPairsGo(want[:words], src)
		sameBits(t, "cvtPairs", got, want)
	}
	for w := 1; w <= 32; w++ {
		for _, n := range []int{0, 1, w / 2, w - 1, w} {
			n = max(0, n)
			const pairs, ldd = 5, 35
			lds := n + rng.IntN(3)
			src := randBits(rng, 2*pairs*lds+1)
			got, want := fill(pairs*ldd), fill(pairs*ldd)
			cvtInterleavePanel(got, ldd, src, lds, n, w, pairs)
			cvtInterleavePanelGo(want, ldd, src, lds, n, w, pairs)
			sameBits(t, "cvtInterleavePanel", got, want)
			for q := 0; q < pairs; q++ {
				for i := 0; i < n; i++ {
					if g, e := math.Float32bits(got[q*ldd+i]), toBF16(src[2*q*lds+i])|toBF16(src[(2*q+1)*lds+i])<<16; g != e {
						t.Fatalf("cvtInterleavePanel w=%d n=%d: (%d, %d) = %#x, want %#x", w, n, q, i, g, e)
					}
				}
			}
		}
	}
	for kb := 0; kb <= 40; kb++ {
		const ldd = 11
		lds := kb + rng.IntN(3)
		src := randBits(rng, 8*lds+1)
		kw := (kb + 1) / 2
		got := fill(kw*ldd + 1)
		if !cvtTranspose8(got, ldd, src, lds, kb) {
			t.Fatal("cvtTranspose8: no fast path with AVX512_BF16")
		}
		for q := 0; q < kw; q++ {
			for j := 0; j < ldd; j++ {
				g := math.Float32bits(got[q*ldd+j])
				if j >= 8 {
					if g != math.Float32bits(sentinel) {
						t.Fatalf("cvtTranspose8 kb=%d: (%d, %d) outside the rows written", kb, q, j)
					}
					continue
				}
				hi := float32(0)
				if 2*q+1 < kb {
					hi = src[j*lds+2*q+1]
				}
				if e := toBF16(src[j*lds+2*q]) | toBF16(hi)<<16; g != e {
					t.Fatalf("cvtTranspose8 kb=%d: (%d, %d) = %#x, want %#x", kb, q, j, g, e)
				}
			}
		}
		if got[kw*ldd] != sentinel {
			t.Fatalf("cvtTranspose8 kb=%d wrote past its last pair row", kb)
		}
	}
}

// TestDotBF16Hardware runs chosen pair sequences through the AVX512_BF16
// one-row kernel and the emulation (dotBF16) and wants the same bits. The
// cases sit on the rules the emulation claims VDPBF16PS follows: the odd
// product first, one rounding per product, results flushed to zero when
// they round (to 24 bits, unbounded exponent) below 2^-126, denormal
// accumulators read as zero, overflow to infinity. A few results are
// pinned to document the rules on any machine.
func TestDotBF16Hardware(t *testing.T) {
	p := func(e int) float32 { return float32(math.Ldexp(1, e)) }
	negZero := float32(math.Copysign(0, -1))
	type step struct{ a0, b0, a1, b1 float32 } // even pair, then odd (applied first)
	type dotCase struct {
		name   string
		steps  []step
		want   float32 // the pinned result (NaN: any NaN)
		pinned bool
	}
	inf := float32(math.Inf(1))
	cases := []dotCase{
		{"flush tiny product", []step{{0, 0, p(-65), p(-65)}}, 0, true},
		{"flush negative, then + +0", []step{{0, 0, p(-65), -p(-65)}}, 0, true},
		{"flush keeps the sign", []step{{p(-65), -p(-65), 0, 0}}, negZero, true},
		{"rounds below 2^-126: flushed", []step{{0, 0, p(-63), p(-63)}, {0, 0, p(-75), -1.5 * p(-76)}}, 0, true},
		{"rounds to 2^-126: kept", []step{{0, 0, p(-63), p(-63)}, {0, 0, p(-75), -p(-77)}}, p(-126), true},
		{"tie to 2^-126: kept", []step{{0, 0, p(-63), p(-63)}, {0, 0, p(-75), -p(-76)}}, p(-126), true},
		{"tiny product fused, not flushed", []step{{0, 0, p(-63), p(-62)}, {0, 0, p(-65), 1.5 * p(-65)}}, p(-125) + 1.5*p(-130), true},
		{"odd product first", []step{{0, 0, p(30), p(30)}, {1, 1, -p(30), p(30)}}, 1, true},
		{"overflow", []step{{p(64), p(63), p(64), p(63)}}, inf, true},
		{"infinity plus a finite product", []step{{p(64), p(63), p(64), p(63)}, {-p(127), p(127), 0, 0}}, inf, true},
		{"infinity times zero", []step{{inf, 0, 1, 1}}, float32(math.NaN()), true},
	}
	// Random walks near 2^-126 exercise the flush on both sides.
	rng := rand.New(rand.NewPCG(41, 41))
	for range 300 {
		var st []step
		for range 1 + rng.IntN(6) {
			v := func() float32 {
				x := float32(math.Ldexp(1+float64(rng.IntN(128))/128, -rng.IntN(12)-58))
				if rng.IntN(2) == 0 {
					x = -x
				}
				return x
			}
			st = append(st, step{v(), v(), v(), v()})
		}
		cases = append(cases, dotCase{name: "random near 2^-126", steps: st})
	}
	same := func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) || (x != x && y != y) }
	// Every native kernel (and one-row variant), on panels whose rows and
	// columns all hold the case's pairs.
	var kernels []*microKernel
	for _, mk := range availableBF16Kernels() {
		if !mk.emulated {
			kernels = append(kernels, mk)
		}
		if mk.row1 != nil {
			kernels = append(kernels, mk.row1)
		}
	}
	for _, c := range cases {
		k := len(c.steps)
		emu := float32(0)
		for _, s := range c.steps {
			emu = dotBF16(emu, math.Float32bits(pairBF16(s.a0, s.a1)), math.Float32bits(pairBF16(s.b0, s.b1)))
		}
		if c.pinned && !same(emu, c.want) {
			t.Errorf("%s: emulation gives %g (%#x), want %g (%#x)", c.name, emu, math.Float32bits(emu), c.want, math.Float32bits(c.want))
		}
		for _, mk := range kernels {
			a, b := make([]float32, k*mk.mr), make([]float32, k*mk.nr)
			for q, s := range c.steps {
				for i := range mk.mr {
					a[q*mk.mr+i] = pairBF16(s.a0, s.a1)
				}
				for j := range mk.nr {
					b[q*mk.nr+j] = pairBF16(s.b0, s.b1)
				}
			}
			got := make([]float32, mk.mr*mk.nr)
			mk.fn(k, &a[0], &b[0], &got[0], mk.nr, 1, 0)
			for j, g := range got {
				if !same(g, emu) {
					t.Fatalf("%s (%s): C[%d] = %g (%#x), emulation %g (%#x); steps %v", c.name, mk.name, j, g, math.Float32bits(g), emu, math.Float32bits(emu), c.steps)
				}
			}
		}
	}
}

// rowA returns A from row r of op(A) on, for a product of that row alone.
func (g *gemmCase) rowA(r int) []float32 {
	if g.transA {
		return g.a[r:]
	}
	return g.a[r*g.lda:]
}

// bf16Inputs returns g's A and B rounded to bf16, as GemmBF16 multiplies
// them.
func (g *gemmCase) bf16Inputs() (a, b []float32) {
	a, b = make([]float32, len(g.a)), make([]float32, len(g.b))
	for i, v := range g.a {
		a[i] = RoundBF16(v)
	}
	for i, v := range g.b {
		b[i] = RoundBF16(v)
	}
	return a, b
}

// checkBF16 runs the bf16 product with run on a copy of C and compares it
// with gonum's blas32.Gemm twice: on A and B rounded to bf16, allowing the
// float32 roundings of both sums, (2k+8) u32 times the sum of absolute
// products (u32 = 2^-24); and on the unrounded A and B, adding bf16's
// rounding of both operands, 2 u16 + u16² of the same sum (u16 = 2^-8,
// bf16 having 8 significant bits). The sums of
// absolute products come from blas32.Gemm on |A| and |B|. It also checks
// the padding of C is untouched.
func (g *gemmCase) checkBF16(t testing.TB, run func(c []float32)) {
	t.Helper()
	got := append([]float32(nil), g.c...)
	run(got)
	ar, br := g.bf16Inputs()
	ta, tb := blas.NoTrans, blas.NoTrans
	arows, acols, brows, bcols := g.m, g.k, g.k, g.n
	if g.transA {
		ta, arows, acols = blas.Trans, g.k, g.m
	}
	if g.transB {
		tb, brows, bcols = blas.Trans, g.n, g.k
	}
	gemm := func(alpha float32, a, b []float32, beta float32, c []float32) []float32 {
		if g.m == 0 || g.n == 0 {
			return c
		}
		blas32.Gemm(ta, tb, alpha,
			blas32.General{Rows: arows, Cols: acols, Data: a, Stride: g.lda},
			blas32.General{Rows: brows, Cols: bcols, Data: b, Stride: g.ldb},
			beta, blas32.General{Rows: g.m, Cols: g.n, Data: c, Stride: g.ldc})
		return c
	}
	abs := func(x []float32) []float32 {
		y := make([]float32, len(x))
		for i, v := range x {
			y[i] = float32(math.Abs(float64(v)))
		}
		return y
	}
	cIn := append([]float32(nil), g.c...)
	if g.beta == 0 {
		clear(cIn) // blas32 reads C's NaNs otherwise
	}
	wantR := gemm(g.alpha, ar, br, g.beta, append([]float32(nil), cIn...))
	want := gemm(g.alpha, g.a, g.b, g.beta, append([]float32(nil), cIn...))
	sumAbs := gemm(1, abs(g.a), abs(g.b), 0, make([]float32, len(g.c)))
	const u = 0x1p-24
	for i := 0; i < g.m; i++ {
		for j := 0; j < g.ldc; j++ {
			idx := i*g.ldc + j
			if j >= g.n {
				if got[idx] != sentinel {
					t.Fatalf("%v: C[%d,%d] outside the matrix changed to %g", g, i, j, got[idx])
				}
				continue
			}
			// 1.02: bf16 rounding may raise |a||b| by 2^-8 each; the
			// float32 sum of absolute products is itself rounded.
			s := 1.02 * math.Abs(float64(g.alpha)) * float64(sumAbs[idx])
			cb := 4 * u * math.Abs(float64(g.beta)*float64(cIn[idx]))
			tolR := float64(2*g.k+8)*u*s + cb
			tol := tolR + (0x1p-7+0x1p-16)*s
			if d := math.Abs(float64(got[idx]) - float64(wantR[idx])); !(d <= tolR+1e-30) {
				t.Fatalf("%v: C[%d,%d] = %g, blas32 on bf16 inputs %g (diff %g, tol %g)", g, i, j, got[idx], wantR[idx], d, tolR)
			}
			if d := math.Abs(float64(got[idx]) - float64(want[idx])); !(d <= tol+1e-30) {
				t.Fatalf("%v: C[%d,%d] = %g, blas32 on float32 inputs %g (diff %g, tol %g)", g, i, j, got[idx], want[idx], d, tol)
			}
		}
	}
}

// TestGemmBF16Shapes crosses the odd sizes 1, 7, 17 and 129 (and 0) in m,
// n and k with all transposes, for every bf16 kernel, against blas32.
func TestGemmBF16Shapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 42))
	dims := []int{0, 1, 7, 17, 129}
	scal := []struct{ alpha, beta float32 }{{1, 0}, {1, 1}, {-0.5, 2}, {0.75, -1}}
	for _, mk := range availableBF16Kernels() {
		t.Run(mk.name, func(t *testing.T) {
			for _, tr := range transposes {
				for _, m := range dims {
					for _, n := range dims {
						for _, k := range dims {
							s := scal[rng.IntN(len(scal))]
							g := newGemmCase(rng, tr.a, tr.b, m, n, k, rng.IntN(3), s.alpha, s.beta)
							g.checkBF16(t, g.runWith(mk))
						}
					}
				}
			}
		})
	}
}

// TestGemmBF16StdShapes runs the std workload's shapes, with their own
// transposes (TestGemmBF16Shapes covers all four), against blas32; the
// portable kernel runs their first rows only (each row's bits do not
// depend on the others).
func TestGemmBF16StdShapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(43, 43))
	for _, mk := range availableBF16Kernels() {
		t.Run(mk.name, func(t *testing.T) {
			for _, s := range StdShapes() {
				m := s.M
				if mk.emulated {
					m = min(m, 30)
				}
				g := newGemmCase(rng, s.TransA, s.TransB, m, s.N, s.K, 0, 1, 0)
				g.checkBF16(t, g.runWith(mk))
			}
		})
	}
}

// TestGemmBF16FallbackBits checks that the portable kernel gives the
// AVX512_BF16 kernels' bits (each alone, and the wide one handing narrow
// products to the narrow one), on shapes with edge tiles, k blocks (k over
// 1024, odd k) and all transposes, on normal inputs and on inputs that
// overflow, underflow into the flush and cancel.
func TestGemmBF16FallbackBits(t *testing.T) {
	if !hasBF16 {
		t.Skip("no AVX512_BF16 to compare with")
	}
	rng := rand.New(rand.NewPCG(44, 44))
	shapes := [][3]int{{1, 1, 1}, {15, 33, 7}, {29, 65, 130}, {3, 40, 1100}, {17, 9, 2051}, {30, 429, 256}}
	for _, s := range shapes {
		for i, tr := range transposes {
			g := newGemmCase(rng, tr.a, tr.b, s[0], s[1], s[2], i%3, 0.7, float32(i%2)*0.3)
			if i >= 2 {
				// Magnitudes from 2^-70 to 2^70: products that flush and
				// products that overflow.
				for _, x := range [][]float32{g.a, g.b} {
					for j := range x {
						x[j] *= float32(math.Ldexp(1, rng.IntN(141)-70))
					}
				}
			}
			want := append([]float32(nil), g.c...)
			g.runWith(goBF16MicroKernel)(want)
			for _, mk := range availableBF16Kernels() {
				got := append([]float32(nil), g.c...)
				g.runWith(mk)(got)
				for j := range got {
					if math.Float32bits(got[j]) != math.Float32bits(want[j]) && !(got[j] != got[j] && want[j] != want[j]) {
						t.Fatalf("%v: C[%d]: %s %g (%#x), fallback %g (%#x)", g, j, mk.name, got[j], math.Float32bits(got[j]), want[j], math.Float32bits(want[j]))
					}
				}
			}
		}
	}
}

// TestGemmBF16Exported runs the exported entry points on the selected
// kernel and on the forced fallback: GemmBF16 against blas32, and
// GemmBF16Parallel, row-by-row products and packed products (PackBBF16
// with SgemmPacked, LinearPackedTo and the one-row path) bit for bit
// against GemmBF16.
func TestGemmBF16Exported(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		name := ImplBF16()
		if fallback {
			name = "forced gobf16"
		}
		t.Run(name, func(t *testing.T) {
			forceParallel(t)
			if fallback {
				forceBF16Fallback(t)
				if NativeBF16() || ImplBF16() != "gobf16" {
					t.Fatalf("forced fallback: NativeBF16() = %v, ImplBF16() = %q", NativeBF16(), ImplBF16())
				}
			}
			rng := rand.New(rand.NewPCG(45, 45))
			for _, s := range [][3]int{{1, 1, 1}, {7, 17, 129}, {129, 7, 17}, {100, 70, 600}, {45, 64, 128}, {1, 2064, 429}, {30, 40, 1100}} {
				for _, tr := range transposes {
					g := newGemmCase(rng, tr.a, tr.b, s[0], s[1], s[2], 1, 0.7, 0.3)
					want := append([]float32(nil), g.c...)
					GemmBF16(g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, want, g.ldc)
					g.checkBF16(t, func(c []float32) { copy(c, want) })
					for _, w := range []int{2, 3} {
						got := append([]float32(nil), g.c...)
						GemmBF16Parallel(w, g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, got, g.ldc)
						sameBits(t, g.String()+" parallel", got, want)
					}
					got := append([]float32(nil), g.c...)
					for r := 0; r < g.m; r++ {
						ar := g.rowA(r)
						GemmBF16(g.transA, g.transB, 1, g.n, g.k, g.alpha, ar, g.lda, g.b, g.ldb, g.beta, got[r*g.ldc:], g.ldc)
					}
					sameBits(t, g.String()+" row by row", got, want)

					pb := PackBBF16(g.transB, g.n, g.k, g.b, g.ldb)
					if !pb.BF16() {
						t.Fatal("PackBBF16: BF16() = false")
					}
					got = append(got[:0], g.c...)
					SgemmPacked(g.transA, g.m, g.alpha, g.a, g.lda, pb, g.beta, got, g.ldc)
					sameBits(t, g.String()+" packed", got, want)
					got = append(got[:0], g.c...)
					for r := 0; r < g.m; r++ {
						ar := g.rowA(r)
						SgemmPacked(g.transA, 1, g.alpha, ar, g.lda, pb, g.beta, got[r*g.ldc:], g.ldc)
					}
					sameBits(t, g.String()+" packed row by row", got, want)
				}
			}
			// A fused layer on bf16 weights: GemmBF16, AddBias, ReLU.
			const rows, in, out = 50, 429, 300
			x, w, bias := randSlice(rng, rows*in), randSlice(rng, out*in), randSlice(rng, out)
			want := make([]float32, rows*out)
			GemmBF16(false, true, rows, out, in, 1, x, in, w, in, 0, want, out)
			AddBiasReLU(want, out, rows, bias)
			pw := PackBBF16(true, out, in, w, in)
			got := make([]float32, rows*out)
			LinearPackedTo(ActReLU, got, out, x, in, rows, pw, bias)
			sameBits(t, "LinearPackedTo bf16", got, want)
			// Repack picks up new weights.
			for i := range w {
				w[i] = rng.Float32() - 0.5
			}
			pw.Repack(true, w, in)
			GemmBF16(false, true, rows, out, in, 1, x, in, w, in, 0, want, out)
			SgemmPacked(false, rows, 1, x, in, pw, 0, got, out)
			sameBits(t, "after Repack", got, want)
		})
	}
}

// TestPackedBF16Layout checks that packBBF16 and packABF16 lay out the
// pairs as the kernels read them, against a direct construction, for both
// transposes and odd depths.
func TestPackedBF16Layout(t *testing.T) {
	rng := rand.New(rand.NewPCG(46, 46))
	for _, kb := range []int{1, 2, 7, 16, 33} {
		for _, trans := range []bool{false, true} {
			const mr, nr, rows, cols = 14, 32, 19, 37
			kw := (kb + 1) / 2
			scratch := make([]float32, max(mr, nr)*kw)
			// op(B) is kb x cols; op(A) is rows x kb.
			b := randSlice(rng, kb*cols)
			opB := func(p, j int) float32 {
				if trans {
					return b[j*kb+p]
				}
				return b[p*cols+j]
			}
			ldb := cols
			if trans {
				ldb = kb
			}
			bp := make([]float32, roundUp(cols, nr)*kw)
			packBBF16(bp, trans, b, ldb, 0, 0, kb, cols, nr, scratch)
			a := randSlice(rng, rows*kb)
			opA := func(i, p int) float32 {
				if trans {
					return a[p*rows+i]
				}
				return a[i*kb+p]
			}
			lda := kb
			if trans {
				lda = rows
			}
			ap := make([]float32, roundUp(rows, mr)*kw)
			packABF16(ap, trans, a, lda, 0, 0, rows, kb, mr, scratch)
			pair := func(get func(p int) float32, q int) uint32 {
				lo, hi := get(2*q), float32(0)
				if 2*q+1 < kb {
					hi = get(2*q + 1)
				}
				return toBF16(lo) | toBF16(hi)<<16
			}
			for j := 0; j < roundUp(cols, nr); j++ {
				for q := 0; q < kw; q++ {
					want := uint32(0)
					if j < cols {
						want = pair(func(p int) float32 { return opB(p, j) }, q)
					}
					if got := math.Float32bits(bp[j/nr*nr*kw+q*nr+j%nr]); got != want {
						t.Fatalf("B trans=%v kb=%d: pair (%d, %d) = %#x, want %#x", trans, kb, q, j, got, want)
					}
				}
			}
			for i := 0; i < roundUp(rows, mr); i++ {
				for q := 0; q < kw; q++ {
					want := uint32(0)
					if i < rows {
						want = pair(func(p int) float32 { return opA(i, p) }, q)
					}
					if got := math.Float32bits(ap[i/mr*mr*kw+q*mr+i%mr]); got != want {
						t.Fatalf("A trans=%v kb=%d: pair (%d, %d) = %#x, want %#x", trans, kb, i, q, got, want)
					}
				}
			}
		}
	}
}

func TestGemmBF16NoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	rng := rand.New(rand.NewPCG(47, 47))
	g := newGemmCase(rng, false, true, 64, 80, 300, 0, 1, 0)
	pb := PackBBF16(true, g.n, g.k, g.b, g.ldb)
	for name, f := range map[string]func(){
		"GemmBF16": func() {
			GemmBF16(g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc)
		},
		"GemmBF16Parallel(1)": func() {
			GemmBF16Parallel(1, g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc)
		},
		"Repack":      func() { pb.Repack(true, g.b, g.ldb) },
		"SgemmPacked": func() { SgemmPacked(false, g.m, 1, g.a, g.lda, pb, 0, g.c, g.ldc) },
	} {
		f()
		if n := testing.AllocsPerRun(10, f); n != 0 {
			t.Errorf("%s allocates %v times per call, want 0", name, n)
		}
	}
}

func TestGemmBF16Panics(t *testing.T) {
	a := make([]float32, 12)
	for name, f := range map[string]func(){
		"GemmBF16 short A":   func() { GemmBF16(false, false, 4, 3, 4, 1, a, 4, a, 3, 0, a, 3) },
		"parallel small lda": func() { GemmBF16Parallel(2, false, false, 2, 2, 3, 1, a, 2, a, 2, 0, a, 2) },
		"PackBBF16 negative": func() { PackBBF16(false, -1, 3, a, 3) },
		"PackBBF16 short":    func() { PackBBF16(true, 4, 4, a, 4) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestImplBF16(t *testing.T) {
	switch ImplBF16() {
	case "avx512bf16":
		if !NativeBF16() || !hasBF16 {
			t.Errorf("ImplBF16() = avx512bf16, NativeBF16() = %v", NativeBF16())
		}
	case "gobf16":
		if NativeBF16() {
			t.Error("ImplBF16() = gobf16 but NativeBF16() = true")
		}
	default:
		t.Errorf("ImplBF16() = %q, not a known kernel", ImplBF16())
	}
}

// TestEpiloguePairs checks the bf16 pairs an Epilogue stores against
// cvtPairsGo of the layer's output rows, for ranges on and off the
// kernel's tiles and column blocks, full and edge row tiles, and y's bits
// against the same layer without pairs; on the selected kernel and the
// forced fallback.
func TestEpiloguePairs(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprintf("fallback=%v", fallback), func(t *testing.T) {
			if fallback {
				forceBF16Fallback(t)
			}
			rng := rand.New(rand.NewPCG(47, 47))
			for _, s := range [][3]int{{56, 2064, 208}, {52, 300, 40}, {1, 70, 9}, {15, 33, 7}} {
				rows, out, in := s[0], s[1], s[2]
				x, w := randSlice(rng, rows*in), randSlice(rng, out*in)
				b1, b2 := randSlice(rng, out), randSlice(rng, out)
				pw := PackBBF16(true, out, in, w, in)
				for _, r := range [][2]int{{0, out}, {0, out - 16}, {2, 33}, {34, out - 1}, {out, out}} {
					r[0] = min(r[0], out) &^ 1
					r[1] = min(max(r[1], r[0]), out)
					ep := Epilogue{Bias: b1, Bias2: b2, ReLUFrom: r[0], ReLUTo: r[1]}
					want := make([]float32, rows*out)
					LinearPackedEpilogueTo(want, out, x, in, rows, pw, ep)
					np := (r[1] - r[0] + 1) / 2
					ld := np + 3
					ep.Pairs, ep.LdPairs, ep.PairsFrom, ep.PairsTo = make([]float32, rows*ld), ld, r[0], r[1]
					for i := range ep.Pairs {
						ep.Pairs[i] = sentinel
					}
					got := make([]float32, rows*out)
					LinearPackedEpilogueTo(got, out, x, in, rows, pw, ep)
					what := fmt.Sprintf("%v pairs %v", s, r)
					sameBits(t, what+" y", got, want)
					wp := make([]float32, np)
					for i := 0; i < rows; i++ {
						cvtPairsGo(wp, want[i*out+r[0]:i*out+r[1]])
						sameBits(t, fmt.Sprintf("%s row %d", what, i), ep.Pairs[i*ld:i*ld+np], wp)
						for _, v := range ep.Pairs[i*ld+np : i*ld+ld] {
							if v != sentinel {
								t.Fatalf("%s row %d: padding overwritten", what, i)
							}
						}
					}
				}
			}
		})
	}
}

// TestLinearPackedPairsTo checks the layer on bf16 pairs bit for bit
// against LinearPackedTo on the float32 input they were rounded from:
// full and edge row tiles, odd depths, several k blocks, the narrow
// kernel, with and without bias and ReLU; on the selected kernel and the
// forced fallback.
func TestLinearPackedPairsTo(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprintf("fallback=%v", fallback), func(t *testing.T) {
			if fallback {
				forceBF16Fallback(t)
			}
			rng := rand.New(rand.NewPCG(48, 48))
			for _, s := range [][3]int{{56, 128, 256}, {52, 128, 256}, {14, 100, 255}, {1, 64, 128}, {29, 40, 2100}, {30, 8, 64}} {
				rows, out, in := s[0], s[1], s[2]
				x, w := randSlice(rng, rows*in), randSlice(rng, out*in)
				clear(x[:in]) // a zero row: ReLU of sums that are bias alone
				pw := PackBBF16(true, out, in, w, in)
				np := (in + 1) / 2
				ldp := np + 1
				xp := make([]float32, rows*ldp)
				for i := 0; i < rows; i++ {
					cvtPairsGo(xp[i*ldp:i*ldp+np], x[i*in:(i+1)*in])
				}
				for _, bias := range [][]float32{nil, randSlice(rng, out)} {
					for _, act := range []Activation{ActNone, ActReLU} {
						want := make([]float32, rows*out)
						LinearPackedTo(act, want, out, x, in, rows, pw, bias)
						ldy := out + 2
						got := make([]float32, rows*ldy)
						for i := range got {
							got[i] = sentinel
						}
						LinearPackedPairsTo(act, got, ldy, xp, ldp, rows, pw, bias)
						checkPadding(t, "LinearPackedPairsTo", got, ldy, out)
						for i := 0; i < rows; i++ {
							sameBits(t, fmt.Sprintf("%v bias %v act %d row %d", s, bias != nil, act, i), got[i*ldy:i*ldy+out], want[i*out:(i+1)*out])
						}
					}
				}
			}
		})
	}
	if func() (panicked bool) {
		defer func() { panicked = recover() != nil }()
		LinearPackedPairsTo(ActNone, make([]float32, 4), 4, make([]float32, 2), 2, 1, PackB(true, 4, 3, make([]float32, 12), 3), nil)
		return false
	}() {
		return
	}
	t.Error("LinearPackedPairsTo on a float32 PackedB did not panic")
}
