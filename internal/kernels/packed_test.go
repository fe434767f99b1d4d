package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// sameBits fails unless got and want hold the same bits everywhere.
func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: [%d] = %g (%#x), want %g (%#x)", what, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

// TestSgemmPackedBitwise checks that a product with a packed B has Sgemm's
// bits, on odd shapes (edge tiles, several k and column blocks, the narrow
// kernel's widths), both transposes, inexact alpha and beta, and padded
// strides; and that it is within the float64 reference's tolerance.
func TestSgemmPackedBitwise(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	shapes := [][3]int{ // m, n, k
		{1, 1, 1}, {7, 8, 17}, {17, 9, 129}, {15, 33, 7}, {129, 31, 600},
		{1, 2064, 429}, {1, 70, 1100}, {1, 33, 5}, {50, 2064, 208}, {30, 128, 256}, {45, 64, 128}, {33, 1, 64}, {5, 0, 3}, {0, 5, 3}, {6, 5, 0},
	}
	for _, s := range shapes {
		for _, tr := range transposes {
			for _, sc := range [][2]float32{{1, 0}, {0.7, 0.3}, {0, 0.5}} {
				g := newGemmCase(rng, tr.a, tr.b, s[0], s[1], s[2], 1+s[0]%2, sc[0], sc[1])
				want := append([]float32(nil), g.c...)
				Sgemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, want, g.ldc)
				pb := PackB(g.transB, g.n, g.k, g.b, g.ldb)
				if k, n := pb.Dims(); k != g.k || n != g.n {
					t.Fatalf("%v: Dims() = %d, %d", g, k, n)
				}
				run := func(c []float32) {
					SgemmPacked(g.transA, g.m, g.alpha, g.a, g.lda, pb, g.beta, c, g.ldc)
				}
				got := append([]float32(nil), g.c...)
				run(got)
				sameBits(t, g.String(), got, want)
				if g.alpha != 0 || g.beta != 0 { // NaN C with alpha = beta = 0 is 0 either way
					g.check(t, run)
				}
				// Smaller column blocks than the kernel's: same bits.
				if nr := pb.mk.nr; g.n > nr {
					pb.nc = nr
					pb.Repack(g.transB, g.b, g.ldb)
					got = append(got[:0], g.c...)
					run(got)
					sameBits(t, g.String()+" nc=nr", got, want)
				}
			}
		}
	}
}

// TestPackedRowByRow checks that a row computed alone with a packed B has
// the bits it has in a whole product (scoring relies on this).
func TestPackedRowByRow(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 12))
	g := newGemmCase(rng, false, true, 37, 70, 300, 0, 1, 0)
	pb := PackB(true, g.n, g.k, g.b, g.ldb)
	want := make([]float32, g.m*g.n)
	SgemmPacked(false, g.m, 1, g.a, g.lda, pb, 0, want, g.n)
	got := make([]float32, g.m*g.n)
	for r := 0; r < g.m; r++ {
		SgemmPacked(false, 1, 1, g.a[r*g.lda:], g.lda, pb, 0, got[r*g.n:], g.n)
	}
	sameBits(t, "row by row", got, want)
}

// TestRepack checks that Repack picks up new values of B.
func TestRepack(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 13))
	const m, n, k = 9, 40, 50
	a, b := randSlice(rng, m*k), randSlice(rng, n*k)
	pb := PackB(true, n, k, b, k)
	for i := range b {
		b[i] = rng.Float32() - 0.5
	}
	pb.Repack(true, b, k)
	want, got := make([]float32, m*n), make([]float32, m*n)
	Sgemm(false, true, m, n, k, 1, a, k, b, k, 0, want, n)
	SgemmPacked(false, m, 1, a, k, pb, 0, got, n)
	sameBits(t, "after Repack", got, want)
}

// TestLinearPackedTo checks the fused packed layer against Sgemm, AddBias
// and ReLU bit for bit, and that it leaves y's padding alone.
func TestLinearPackedTo(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 14))
	for _, s := range [][3]int{{1, 1, 1}, {7, 8, 17}, {33, 5, 40}, {129, 70, 31}, {300, 257, 129}, {64, 600, 20}, {50, 2064, 208}, {40, 16, 8}} {
		rows, out, in := s[0], s[1], s[2]
		x, ldx := view(rng, rows, in, 3)
		w := randSlice(rng, out*in)
		pw := PackB(true, out, in, w, in)
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
				ldy := out + 2
				y := make([]float32, rows*ldy)
				for i := range y {
					y[i] = float32(math.NaN())
					if i%ldy >= out {
						y[i] = sentinel
					}
				}
				LinearPackedTo(act, y, ldy, x, ldx, rows, pw, bias)
				checkPadding(t, "LinearPackedTo", y, ldy, out)
				for r := 0; r < rows; r++ {
					sameBits(t, "LinearPackedTo", y[r*ldy:r*ldy+out], want[r*out:r*out+out])
				}
			}
		}
	}
}

func TestPackedPanics(t *testing.T) {
	b := make([]float32, 12)
	pb := PackB(false, 4, 3, b, 4)
	for name, f := range map[string]func(){
		"negative n":   func() { PackB(false, -1, 3, b, 4) },
		"short b":      func() { PackB(false, 5, 3, b, 5) },
		"short repack": func() { pb.Repack(false, b[:11], 4) },
		"nil packed":   func() { SgemmPacked(false, 1, 1, make([]float32, 3), 3, nil, 0, make([]float32, 4), 4) },
		"short a":      func() { SgemmPacked(false, 2, 1, make([]float32, 5), 3, pb, 0, make([]float32, 8), 4) },
		"short c":      func() { SgemmPacked(false, 2, 1, make([]float32, 6), 3, pb, 0, make([]float32, 7), 4) },
		"negative m":   func() { SgemmPacked(false, -1, 1, nil, 3, pb, 0, nil, 4) },
		"short bias": func() {
			LinearPackedTo(ActNone, make([]float32, 4), 4, make([]float32, 3), 3, 1, pb, make([]float32, 3))
		},
		"bad activation":  func() { LinearPackedTo(Activation(9), make([]float32, 4), 4, make([]float32, 3), 3, 1, pb, nil) },
		"small ldc":       func() { SgemmPacked(false, 1, 1, make([]float32, 3), 3, pb, 0, make([]float32, 8), 3) },
		"small lda trans": func() { SgemmPacked(true, 2, 1, make([]float32, 6), 1, pb, 0, make([]float32, 8), 4) },
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

func TestPackedNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	rng := rand.New(rand.NewPCG(15, 15))
	const rows, in, out = 64, 100, 70
	x, w, bias, y := randSlice(rng, rows*in), randSlice(rng, out*in), randSlice(rng, out), make([]float32, rows*out)
	pw := PackB(true, out, in, w, in)
	LinearPackedTo(ActReLU, y, out, x, in, rows, pw, bias)
	if n := testing.AllocsPerRun(20, func() {
		LinearPackedTo(ActReLU, y, out, x, in, rows, pw, bias)
		SgemmPacked(false, rows, 1, x, in, pw, 0.5, y, out)
		pw.Repack(true, w, in)
	}); n != 0 {
		t.Errorf("packed products allocate %v times per call, want 0", n)
	}
}

// BenchmarkLinearPacked compares the std scoring shapes (500 candidates)
// through LinearTo (packing the weights on every call) and LinearPackedTo.
func BenchmarkLinearPacked(b *testing.B) {
	rng := rand.New(rand.NewPCG(16, 16))
	for _, s := range [][3]int{{500, 2064, 208}, {500, 128, 256}, {500, 64, 128}, {1, 2064, 429}} {
		rows, out, in := s[0], s[1], s[2]
		x, w, bias, y := randSlice(rng, rows*in), randSlice(rng, out*in), randSlice(rng, out), make([]float32, rows*out)
		flops := 2 * float64(rows*out*in)
		name := fmt.Sprintf("%dx%dx%d", rows, out, in)
		b.Run(name+"/unpacked", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				LinearTo(1, ActReLU, y, out, x, in, rows, in, out, w, bias)
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		pw := PackB(true, out, in, w, in)
		for _, nc := range []int{0, 1024, 512, 256} {
			if nc > 0 {
				if nc%pw.mk.nr != 0 || nc >= out {
					continue
				}
				pw.nc = nc
				pw.Repack(true, w, in)
			}
			b.Run(fmt.Sprintf("%s/packed-nc%d", name, pw.nc), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					LinearPackedTo(ActReLU, y, out, x, in, rows, pw, bias)
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// TestAddScaled checks every length around the vector widths against the
// unfused scalar expression, bit for bit, and that dst past its length is
// untouched.
func TestAddScaled(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 17))
	for n := 0; n <= 75; n++ {
		a := rng.Float32()*4 - 2
		x, y := randSlice(rng, n), randSlice(rng, n+1)
		want := append([]float32(nil), y...)
		for i := 0; i < n; i++ {
			want[i] += float32(a * x[i])
		}
		AddScaled(y[:n], a, x)
		sameBits(t, fmt.Sprintf("AddScaled n=%d", n), y, want)
	}
	defer func() {
		if recover() == nil {
			t.Error("AddScaled with a short x did not panic")
		}
	}()
	AddScaled(make([]float32, 3), 1, make([]float32, 2))
}

// TestLinearPackedEpilogueTo checks the two-bias, ReLU-range epilogue bit
// for bit against the product followed by the separate passes, for ranges
// inside, across and outside the column blocks.
func TestLinearPackedEpilogueTo(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 18))
	for _, s := range [][3]int{{1, 2064, 221}, {50, 2064, 208}, {17, 70, 9}, {3, 5, 4}} {
		rows, out, in := s[0], s[1], s[2]
		x, ldx := view(rng, rows, in, 1)
		w := randSlice(rng, out*in)
		pw := PackB(true, out, in, w, in)
		b1, b2 := randSlice(rng, out), randSlice(rng, out)
		prod := make([]float32, rows*out)
		Sgemm(false, true, rows, out, in, 1, x, ldx, w, in, 0, prod, out)
		for _, r := range [][2]int{{0, out}, {0, out - out/100 - 1}, {out / 3, out/2 + 1}, {0, 0}, {out, out + 5}, {-3, 2}} {
			for _, bs := range [][2][]float32{{b1, b2}, {nil, b2}, {b1, nil}, {nil, nil}} {
				lo, hi := min(max(r[0], 0), out), min(max(r[1], 0), out)
				want := append([]float32(nil), prod...)
				if bs[0] != nil {
					AddBias(want, out, rows, bs[0])
				}
				for i := 0; i < rows; i++ {
					row := want[i*out : (i+1)*out]
					if last := bs[1]; last != nil {
						AddBias(row[:lo], out, 1, last[:lo])
						AddBiasReLU(row[lo:hi], out, 1, last[lo:hi])
						AddBias(row[hi:], out, 1, last[hi:])
					} else if lo < hi {
						ReLU(row[lo:hi], out, 1, hi-lo)
					}
				}
				ldy := out + 1
				y := make([]float32, rows*ldy)
				for i := range y {
					y[i] = float32(math.NaN())
					if i%ldy >= out {
						y[i] = sentinel
					}
				}
				LinearPackedEpilogueTo(y, ldy, x, ldx, rows, pw, Epilogue{Bias: bs[0], Bias2: bs[1], ReLUFrom: r[0], ReLUTo: r[1]})
				checkPadding(t, "LinearPackedEpilogueTo", y, ldy, out)
				for i := 0; i < rows; i++ {
					sameBits(t, fmt.Sprintf("%v relu %v bias %v %v", s, r, bs[0] != nil, bs[1] != nil), y[i*ldy:i*ldy+out], want[i*out:(i+1)*out])
				}
			}
		}
	}
}

// TestPackedEveryKernel packs for every micro-kernel this machine has, not
// only the selected one, and checks single-row and many-row products
// (the one-row kernels included) against that kernel's unpacked product
// bit for bit.
func TestPackedEveryKernel(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 19))
	for _, mk := range availableKernels() {
		for _, s := range [][3]int{{1, 70, 1100}, {1, 2064, 221}, {1, 17, 9}, {23, 70, 300}} {
			g := newGemmCase(rng, false, true, s[0], s[1], s[2], 1, 0.7, 0.3)
			want := append([]float32(nil), g.c...)
			g.runWith(mk)(want)
			pb := packBFor(mk, true, g.n, g.k, g.b, g.ldb)
			got := append([]float32(nil), g.c...)
			SgemmPacked(false, g.m, g.alpha, g.a, g.lda, pb, g.beta, got, g.ldc)
			sameBits(t, mk.name+" "+g.String(), got, want)
		}
	}
}

// TestMixTo checks the gate mixture bit for bit against clearing dst and
// one AddScaled per input, over widths around the vector sizes, input
// counts and padded strides, and that dst's padding is untouched.
func TestMixTo(t *testing.T) {
	rng := rand.New(rand.NewPCG(20, 20))
	for _, cols := range []int{0, 1, 7, 8, 9, 31, 32, 33, 64, 128, 129} {
		for _, n := range []int{0, 1, 2, 8} {
			const rows = 5
			xs, ldx := make([][]float32, n), make([]int, n)
			for j := range xs {
				ldx[j] = cols + j
				xs[j] = randSlice(rng, rows*ldx[j]+1)
			}
			ldw := n + 1
			w := randSlice(rng, rows*ldw)
			ldd := cols + 2
			want := make([]float32, rows*ldd)
			for i := range want {
				want[i] = sentinel
			}
			got := append([]float32(nil), want...)
			for r := 0; r < rows; r++ {
				d := want[r*ldd : r*ldd+cols]
				clear(d)
				for j := range xs {
					AddScaled(d, w[r*ldw+j], xs[j][r*ldx[j]:])
				}
			}
			MixTo(got, ldd, rows, cols, w, ldw, xs, ldx)
			sameBits(t, fmt.Sprintf("MixTo cols=%d n=%d", cols, n), got, want)
		}
	}
	for name, f := range map[string]func(){
		"strides": func() {
			MixTo(make([]float32, 4), 4, 1, 4, make([]float32, 1), 1, [][]float32{make([]float32, 4)}, nil)
		},
		"short x": func() {
			MixTo(make([]float32, 4), 4, 1, 4, make([]float32, 1), 1, [][]float32{make([]float32, 3)}, []int{4})
		},
		"too many": func() { MixTo(nil, 1, 0, 0, nil, 65, make([][]float32, 65), make([]int, 65)) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("MixTo %s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestMixToNoAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 21))
	const rows, cols, n = 6, 40, 8
	xs, ldx := make([][]float32, n), make([]int, n)
	for j := range xs {
		xs[j], ldx[j] = randSlice(rng, rows*cols), cols
	}
	w, dst := randSlice(rng, rows*n), make([]float32, rows*cols)
	if a := testing.AllocsPerRun(20, func() { MixTo(dst, cols, rows, cols, w, n, xs, ldx) }); a != 0 {
		t.Errorf("MixTo allocates %v times per call, want 0", a)
	}
}

// TestFusedEpilogueBits checks the kernels that apply a layer's epilogue
// as they store a tile (fnEp) bit for bit against the product followed by
// the epilogue's separate pass, for every epilogue form they take, with
// full and edge tiles, on sums and biases that are NaN, infinite, +0 and
// -0 (ReLU keeps NaN and -0).
func TestFusedEpilogueBits(t *testing.T) {
	rng := rand.New(rand.NewPCG(20, 20))
	var mks []*microKernel
	for _, mk := range append(availableKernels(), availableBF16Kernels()...) {
		if mk.fnEp != nil {
			mks = append(mks, mk)
		}
	}
	if len(mks) == 0 {
		t.Skip("no kernel with a fused epilogue on this machine")
	}
	for _, mk := range mks {
		for _, s := range [][3]int{{14, 32, 5}, {15, 33, 7}, {56, 100, 208}, {30, 2064, 40}, {29, 70, 1100}} {
			m, n, k := s[0], s[1], s[2]
			x, w := randSlice(rng, m*k), randSlice(rng, n*k)
			// Row 3 of x is zero: its sums are +0, and -0 times alpha -1
			// (plus the -0 biases of column 5).
			clear(x[3*k : 4*k])
			b1, b2 := randSlice(rng, n), randSlice(rng, n)
			b1[5], b2[5] = float32(math.Copysign(0, -1)), float32(math.Copysign(0, -1))
			b1[7], b2[9], b2[10] = float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))
			pb := packBFor(mk, true, n, k, w, k)
			eps := []epilogue{
				{bias: b2}, {bias: b2, act: ActReLU}, {bias: b1, bias2: b2},
				{bias: b1, bias2: b2, reluFrom: 3, reluTo: n - 20}, {bias2: b2, reluFrom: 0, reluTo: n},
				{bias: b2, reluFrom: 40, reluTo: 70},
			}
			for _, alpha := range []float32{1, -1} {
				prod := make([]float32, m*n)
				ws := getWorkspace(pb.mk)
				gemmBlocked(pb.mk, ws, epilogue{}, false, true, m, n, k, alpha, x, k, false, nil, 0, pb, 0, prod, n)
				putWorkspace(pb.mk, ws)
				for i, ep := range eps {
					if _, ok := ep.fused(); !ok {
						t.Fatalf("epilogue %d: not fused", i)
					}
					want := append([]float32(nil), prod...)
					ep.apply(want, n, m, n, 0, 0)
					got := make([]float32, m*n)
					ws := getWorkspace(pb.mk)
					gemmBlocked(pb.mk, ws, ep, false, true, m, n, k, alpha, x, k, false, nil, 0, pb, 0, got, n)
					putWorkspace(pb.mk, ws)
					what := fmt.Sprintf("%s %v alpha %g epilogue %d", pb.mk.name, s, alpha, i)
					sameBits(t, what, got, want)
					if v := got[3*n+5]; alpha < 0 && !(v == 0 && math.Signbit(float64(v))) {
						t.Fatalf("%s: the -0 sum gave %g", what, v)
					}
				}
			}
		}
	}
}
