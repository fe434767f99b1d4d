package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// sentinel fills the parts of C outside the m x n matrix; they must survive.
const sentinel = float32(-12345.5)

// gemmCase is one Sgemm call with its inputs as stored.
type gemmCase struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a, b, c        []float32
	lda, ldb, ldc  int
}

// newGemmCase makes random inputs; pad adds to each leading dimension, and
// beta == 0 fills C with NaN to check it is never read.
func newGemmCase(rng *rand.Rand, transA, transB bool, m, n, k, pad int, alpha, beta float32) *gemmCase {
	g := &gemmCase{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	g.lda, g.ldb, g.ldc = max(1, ac)+pad, max(1, bc)+pad, max(1, n)+pad
	g.a = randSlice(rng, ar*g.lda)
	g.b = randSlice(rng, br*g.ldb)
	g.c = make([]float32, m*g.ldc)
	for i := range g.c {
		g.c[i] = sentinel
		if i%g.ldc < n {
			if beta == 0 {
				g.c[i] = float32(math.NaN())
			} else {
				g.c[i] = rng.Float32()*2 - 1
			}
		}
	}
	return g
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = rng.Float32()*2 - 1
	}
	return s
}

func (g *gemmCase) String() string {
	return fmt.Sprintf("tA=%v tB=%v m=%d n=%d k=%d alpha=%g beta=%g lda=%d ldb=%d ldc=%d",
		g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.beta, g.lda, g.ldb, g.ldc)
}

func (g *gemmCase) opA(i, p int) float64 {
	if g.transA {
		return float64(g.a[p*g.lda+i])
	}
	return float64(g.a[i*g.lda+p])
}

func (g *gemmCase) opB(p, j int) float64 {
	if g.transB {
		return float64(g.b[j*g.ldb+p])
	}
	return float64(g.b[p*g.ldb+j])
}

// check runs the product with run on a copy of C and compares every element
// with a float64 reference, allowing (k+4) float32 roundings of the sum of
// absolute products; it also checks the padding of C is untouched.
func (g *gemmCase) check(t testing.TB, run func(c []float32)) {
	t.Helper()
	got := append([]float32(nil), g.c...)
	run(got)
	const u = 1.0 / (1 << 23)
	for i := 0; i < g.m; i++ {
		for j := 0; j < g.ldc; j++ {
			idx := i*g.ldc + j
			if j >= g.n {
				if got[idx] != sentinel {
					t.Fatalf("%v: C[%d,%d] outside the matrix changed to %g", g, i, j, got[idx])
				}
				continue
			}
			var sum, abs float64
			for p := 0; p < g.k; p++ {
				x := g.opA(i, p) * g.opB(p, j)
				sum += x
				abs += math.Abs(x)
			}
			want := float64(g.alpha) * sum
			tol := float64(g.k+4) * u * math.Abs(float64(g.alpha)) * abs
			if g.beta != 0 {
				c0 := float64(g.c[idx])
				want += float64(g.beta) * c0
				tol += 4 * u * math.Abs(float64(g.beta)*c0)
			}
			if d := math.Abs(float64(got[idx]) - want); !(d <= tol+1e-30) {
				t.Fatalf("%v: C[%d,%d] = %g, want %g (diff %g, tol %g)", g, i, j, got[idx], want, d, tol)
			}
		}
	}
}

func (g *gemmCase) runWith(mk *microKernel) func(c []float32) {
	return func(c []float32) {
		checkGemm(g.transA, g.transB, g.m, g.n, g.k, g.a, g.lda, g.b, g.ldb, c, g.ldc)
		gemmWith(mk, epilogue{}, g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, c, g.ldc)
	}
}

// testKernels are the kernels every GEMM test runs: each available one
// alone, and the selected one (which may hand narrow products to another).
func testKernels() []*microKernel {
	return append(availableKernels(), active)
}

var transposes = []struct{ a, b bool }{{false, false}, {false, true}, {true, false}, {true, true}}

// TestSgemmSmallShapes crosses all small shapes, transposes and kernels.
func TestSgemmSmallShapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	dims := []int{0, 1, 2, 7, 17, 31}
	scal := []struct{ alpha, beta float32 }{{1, 0}, {1, 1}, {-0.5, 2}, {0.75, -1}}
	for _, mk := range testKernels() {
		t.Run(mk.name, func(t *testing.T) {
			for _, tr := range transposes {
				for _, m := range dims {
					for _, n := range dims {
						for _, k := range dims {
							s := scal[rng.IntN(len(scal))]
							g := newGemmCase(rng, tr.a, tr.b, m, n, k, rng.IntN(3), s.alpha, s.beta)
							g.check(t, g.runWith(mk))
						}
					}
				}
			}
		})
	}
}

// TestSgemmBlockEdges uses shapes that cross the mc, kc and nc blocks and the
// micro-tile edges of every kernel.
func TestSgemmBlockEdges(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	shapes := [][3]int{{129, 257, 129}, {257, 129, 300}, {113, 530, 257}, {15, 1030, 33}, {225, 33, 513}, {1, 600, 520}, {300, 1, 17}, {20, 2100, 40}, {30, 9, 1100}}
	for _, mk := range testKernels() {
		t.Run(mk.name, func(t *testing.T) {
			for i, s := range shapes {
				tr := transposes[i%4]
				beta := float32(0)
				if i%2 == 1 {
					beta = 0.5
				}
				g := newGemmCase(rng, tr.a, tr.b, s[0], s[1], s[2], 3, 1.5, beta)
				g.check(t, g.runWith(mk))
				tr = transposes[(i+1)%4]
				g = newGemmCase(rng, tr.a, tr.b, s[0], s[1], s[2], 0, 1, 1)
				g.check(t, g.runWith(mk))
			}
		})
	}
}

// TestSgemmSpecialScalars checks alpha == 0 and beta == 0 with NaN in C.
func TestSgemmSpecialScalars(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for _, mk := range testKernels() {
		for _, s := range []struct{ alpha, beta float32 }{{0, 0}, {0, 2}, {2, 0}, {float32(math.Copysign(0, -1)), float32(math.Copysign(0, -1))}} {
			g := newGemmCase(rng, false, true, 37, 45, 19, 1, s.alpha, s.beta)
			g.check(t, g.runWith(mk))
		}
	}
}

// TestSgemmMatchesBlas32 compares the exported Sgemm with gonum's blas32.
func TestSgemmMatchesBlas32(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for _, s := range [][3]int{{1, 1, 1}, {7, 17, 129}, {129, 7, 17}, {64, 257, 100}} {
		for _, tr := range transposes {
			g := newGemmCase(rng, tr.a, tr.b, s[0], s[1], s[2], 2, 0.5, 0.25)
			got := append([]float32(nil), g.c...)
			Sgemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, got, g.ldc)
			want := append([]float32(nil), g.c...)
			ta, tb := blas.NoTrans, blas.NoTrans
			ar, ac, br, bc := g.m, g.k, g.k, g.n
			if g.transA {
				ta, ar, ac = blas.Trans, g.k, g.m
			}
			if g.transB {
				tb, br, bc = blas.Trans, g.n, g.k
			}
			blas32.Gemm(ta, tb, g.alpha,
				blas32.General{Rows: ar, Cols: ac, Data: g.a, Stride: g.lda},
				blas32.General{Rows: br, Cols: bc, Data: g.b, Stride: g.ldb},
				g.beta, blas32.General{Rows: g.m, Cols: g.n, Data: want, Stride: g.ldc})
			for i := range got {
				if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*float64(g.k) {
					t.Fatalf("%v: C[%d] = %g, blas32 %g", g, i, got[i], want[i])
				}
			}
		}
	}
}

func TestSgemmParallel(t *testing.T) {
	forceParallel(t)
	rng := rand.New(rand.NewPCG(5, 5))
	for _, mk := range testKernels() {
		for _, w := range []int{0, 1, 2, 3, 7} {
			for i, s := range [][3]int{{200, 90, 150}, {30, 700, 120}, {5, 5, 5}, {129, 129, 129}} {
				tr := transposes[(i+w)%4]
				g := newGemmCase(rng, tr.a, tr.b, s[0], s[1], s[2], 1, 1, float32(i%2))
				g.check(t, func(c []float32) {
					gemmParallel(mk, epilogue{}, w, g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, c, g.ldc)
				})
			}
		}
	}
	// The exported entry point, on the active kernel.
	g := newGemmCase(rng, false, true, 300, 200, 100, 2, 1, 0)
	g.check(t, func(c []float32) {
		SgemmParallel(2, g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, c, g.ldc)
	})
}

func TestSgemmPanicsOnBadShapes(t *testing.T) {
	a := make([]float32, 12)
	for name, f := range map[string]func(){
		"short A":   func() { Sgemm(false, false, 4, 3, 4, 1, a, 4, a, 3, 0, a, 3) },
		"small lda": func() { Sgemm(false, false, 2, 2, 3, 1, a, 2, a, 2, 0, a, 2) },
		"short C":   func() { Sgemm(false, false, 5, 3, 1, 1, a, 1, a, 3, 0, a[:14], 3) },
		"negative":  func() { Sgemm(false, false, -1, 3, 1, 1, a, 1, a, 3, 0, a, 3) },
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

// TestSgemmNoAllocs: once a product has run, the next ones allocate
// nothing, even after garbage collections (which empty a sync.Pool, and
// a workspace is megabytes).
func TestSgemmNoAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	g := newGemmCase(rng, false, true, 64, 80, 300, 0, 1, 0)
	Sgemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc)
	allocs := testing.AllocsPerRun(20, func() {
		runtime.GC()
		runtime.GC() // the second empties a sync.Pool's victim cache
		Sgemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc)
	})
	if allocs != 0 {
		t.Errorf("Sgemm allocates %v times per call after a collection, want 0", allocs)
	}
}

func TestImpl(t *testing.T) {
	want := availableKernels()[0].name // active is a copy of the best kernel
	if Impl() != want {
		t.Errorf("Impl() = %q, want %q", Impl(), want)
	}
	switch Impl() {
	case "avx512", "avx2", "go", "avx2x8":
	default:
		t.Errorf("Impl() = %q, not a known kernel", Impl())
	}
}

func FuzzSgemm(f *testing.F) {
	f.Add(uint8(1), uint8(1), uint8(1), false, false, uint8(0), uint64(1))
	f.Add(uint8(17), uint8(33), uint8(7), true, false, uint8(1), uint64(2))
	f.Add(uint8(15), uint8(31), uint8(129), false, true, uint8(2), uint64(3))
	f.Add(uint8(0), uint8(5), uint8(3), true, true, uint8(0), uint64(4))
	f.Add(uint8(29), uint8(65), uint8(0), true, true, uint8(3), uint64(5))
	f.Fuzz(func(t *testing.T, m, n, k uint8, transA, transB bool, mode uint8, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed))
		alpha, beta := float32(1), float32(0)
		switch mode % 4 {
		case 1:
			beta = 1
		case 2:
			alpha, beta = -0.5, 0.5
		case 3:
			alpha = 0
		}
		g := newGemmCase(rng, transA, transB, int(m), int(n), int(k), int(mode/4%4), alpha, beta)
		for _, mk := range testKernels() {
			g.check(t, g.runWith(mk))
		}
	})
}

// TestLinearTo checks the fused layer against Sgemm followed by AddBias and
// ReLU, for several worker counts, with and without bias and activation.
func TestLinearTo(t *testing.T) {
	forceParallel(t)
	rng := rand.New(rand.NewPCG(7, 7))
	for _, s := range [][3]int{{1, 1, 1}, {7, 8, 17}, {33, 5, 40}, {129, 70, 31}, {300, 257, 129}, {64, 600, 20}, {40, 700, 80}} {
		rows, out, in := s[0], s[1], s[2]
		x, ldx := view(rng, rows, in, 3)
		w := randSlice(rng, out*in)
		for _, bias := range [][]float32{nil, randSlice(rng, out)} {
			for _, act := range []Activation{ActNone, ActReLU} {
				want := make([]float32, rows*out)
				Sgemm(false, true, rows, out, in, 1, x, ldx, w, in, 0, want, out)
				if bias != nil {
					AddBias(want, out, rows, bias)
				}
				if act == ActReLU {
					ReLU(want, out, rows, out)
				}
				for _, workers := range []int{1, 2, 3} {
					ldy := out + 2
					y := make([]float32, rows*ldy)
					for i := range y {
						y[i] = float32(math.NaN())
						if i%ldy >= out {
							y[i] = sentinel
						}
					}
					LinearTo(workers, act, y, ldy, x, ldx, rows, in, out, w, bias)
					checkPadding(t, "LinearTo", y, ldy, out)
					for r := 0; r < rows; r++ {
						for c := 0; c < out; c++ {
							g, e := y[r*ldy+c], want[r*out+c]
							if d := math.Abs(float64(g - e)); !(d <= 1e-5*(1+math.Abs(float64(e)))) {
								t.Fatalf("rows=%d in=%d out=%d bias=%v act=%d workers=%d: y[%d,%d] = %g, want %g",
									rows, in, out, bias != nil, act, workers, r, c, g, e)
							}
						}
					}
				}
			}
		}
	}
}

func TestLinearToNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	rng := rand.New(rand.NewPCG(8, 8))
	const rows, in, out = 64, 100, 70
	x, w, bias, y := randSlice(rng, rows*in), randSlice(rng, out*in), randSlice(rng, out), make([]float32, rows*out)
	LinearTo(1, ActReLU, y, out, x, in, rows, in, out, w, bias)
	if n := testing.AllocsPerRun(20, func() {
		LinearTo(1, ActReLU, y, out, x, in, rows, in, out, w, bias)
	}); n != 0 {
		t.Errorf("LinearTo allocates %v times per call, want 0", n)
	}
}

// TestSgemmBitwiseInvariance checks that an element of C does not depend on
// how the product is cut: computing it in one call, row by row, or split
// over any number of workers (by rows or by columns, which may hand a
// narrow block to another kernel) gives the same bits. Training relies on
// this for results independent of the worker count, and serving for scores
// independent of the batch a candidate is in.
func TestSgemmBitwiseInvariance(t *testing.T) {
	forceParallel(t)
	rng := rand.New(rand.NewPCG(9, 9))
	for _, s := range [][3]int{{100, 70, 600}, {30, 40, 1000}, {50, 8, 429}, {17, 300, 129}} {
		for _, tr := range transposes {
			g := newGemmCase(rng, tr.a, tr.b, s[0], s[1], s[2], 1, 0.7, 0.3) // beta*C inexact
			want := append([]float32(nil), g.c...)
			Sgemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, want, g.ldc)
			for _, w := range []int{2, 3, 5} {
				got := append([]float32(nil), g.c...)
				SgemmParallel(w, g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, got, g.ldc)
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%v: %d workers: C[%d] = %g, one call %g", g, w, i, got[i], want[i])
					}
				}
			}
			got := append([]float32(nil), g.c...)
			for r := 0; r < g.m; r++ {
				ar := g.a[r*g.lda:]
				if g.transA {
					ar = g.a[r:]
				}
				Sgemm(g.transA, g.transB, 1, g.n, g.k, g.alpha, ar, g.lda, g.b, g.ldb, g.beta, got[r*g.ldc:], g.ldc)
			}
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%v: row by row: C[%d] = %g, one call %g", g, i, got[i], want[i])
				}
			}
		}
	}
}

// forceParallel makes SgemmParallel split even small products for the rest
// of the test.
func forceParallel(t *testing.T) {
	old := minParallelFlops
	minParallelFlops = 0
	t.Cleanup(func() { minParallelFlops = old })
}
