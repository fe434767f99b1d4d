package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// view makes a rows x cols view with stride cols+pad whose padding holds
// the sentinel.
func view(rng *rand.Rand, rows, cols, pad int) ([]float32, int) {
	ld := cols + pad
	x := make([]float32, rows*ld)
	for i := range x {
		if i%ld < cols {
			x[i] = rng.Float32()*4 - 2
		} else {
			x[i] = sentinel
		}
	}
	return x, ld
}

func checkPadding(t *testing.T, name string, x []float32, ld, cols int) {
	t.Helper()
	for i, v := range x {
		if i%ld >= cols && v != sentinel {
			t.Fatalf("%s: padding element %d changed to %g", name, i, v)
		}
	}
}

var elemShapes = [][2]int{{0, 0}, {1, 1}, {1, 7}, {3, 8}, {2, 17}, {7, 31}, {5, 33}, {3, 129}, {2, 257}}

func TestBiasAndReLU(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	for _, s := range elemShapes {
		rows, cols := s[0], s[1]
		for pad := 0; pad < 3; pad += 2 {
			y, ld := view(rng, rows, cols, pad)
			if len(y) > 0 {
				y[0] = float32(math.NaN())
			}
			bias := randSlice(rng, cols)
			y1 := append([]float32(nil), y...)
			AddBias(y1, ld, rows, bias)
			y2 := append([]float32(nil), y...)
			AddBiasReLU(y2, ld, rows, bias)
			y3 := append([]float32(nil), y...)
			ReLU(y3, ld, rows, cols)
			for r := 0; r < rows; r++ {
				for c := 0; c < cols; c++ {
					i := r*ld + c
					sum := y[i] + bias[c]
					if !same(y1[i], sum) {
						t.Fatalf("AddBias %dx%d: [%d,%d] = %g, want %g", rows, cols, r, c, y1[i], sum)
					}
					if want := max(sum, 0); !same(y2[i], want) {
						t.Fatalf("AddBiasReLU %dx%d: [%d,%d] = %g, want %g", rows, cols, r, c, y2[i], want)
					}
					if want := max(y[i], 0); !same(y3[i], want) && !(y[i] != y[i]) {
						t.Fatalf("ReLU %dx%d: [%d,%d] = %g, want %g", rows, cols, r, c, y3[i], want)
					}
				}
			}
			checkPadding(t, "AddBias", y1, ld, cols)
			checkPadding(t, "AddBiasReLU", y2, ld, cols)
		}
	}
}

// same reports whether a and b are equal, both NaN, or both zero.
func same(a, b float32) bool { return a == b || (a != a && b != b) }

func TestReLUBackward(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	for _, s := range elemShapes {
		rows, cols := s[0], s[1]
		dy, ldd := view(rng, rows, cols, 1)
		y, ldy := view(rng, rows, cols, 3)
		if rows > 0 && cols > 0 {
			y[0], y[ldy*(rows-1)] = 0, float32(math.NaN())
		}
		got := append([]float32(nil), dy...)
		ReLUBackward(got, ldd, y, ldy, rows, cols)
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				want := dy[r*ldd+c]
				if !(y[r*ldy+c] > 0) {
					want = 0
				}
				if got[r*ldd+c] != want {
					t.Fatalf("%dx%d [%d,%d] = %g, want %g (y %g)", rows, cols, r, c, got[r*ldd+c], want, y[r*ldy+c])
				}
			}
		}
		checkPadding(t, "ReLUBackward", got, ldd, cols)
	}
}

func TestSumRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 12))
	for _, s := range elemShapes {
		rows, cols := s[0], s[1]
		x, ld := view(rng, rows, cols, 2)
		dst := randSlice(rng, cols)
		acc := append([]float32(nil), dst...)
		AddSumRows(acc, x, ld, rows)
		sum := append([]float32(nil), dst...)
		SumRowsTo(sum, x, ld, rows)
		for c := 0; c < cols; c++ {
			var want, abs float64
			for r := 0; r < rows; r++ {
				want += float64(x[r*ld+c])
				abs += math.Abs(float64(x[r*ld+c]))
			}
			tol := float64(rows+2) * 1.2e-7 * (abs + math.Abs(float64(dst[c])))
			if d := math.Abs(float64(sum[c]) - want); d > tol {
				t.Fatalf("SumRowsTo %dx%d col %d = %g, want %g", rows, cols, c, sum[c], want)
			}
			if d := math.Abs(float64(acc[c]) - want - float64(dst[c])); d > tol {
				t.Fatalf("AddSumRows %dx%d col %d = %g, want %g", rows, cols, c, acc[c], want+float64(dst[c]))
			}
		}
	}
}

func TestSoftmax(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 13))
	for _, s := range elemShapes {
		rows, cols := s[0], s[1]
		x, ld := view(rng, rows, cols, 1)
		if rows > 0 && cols > 1 {
			x[0], x[1] = 1000, 999 // overflows exp without the max shift
		}
		y := make([]float32, rows*cols)
		SoftmaxTo(y, cols, x, ld, rows, cols)
		in := append([]float32(nil), x...)
		SoftmaxTo(in, ld, in, ld, rows, cols) // in place
		dy, _ := view(rng, rows, cols, 0)
		dx := make([]float32, rows*cols)
		SoftmaxBackwardTo(dx, cols, y, cols, dy, cols, rows, cols)
		for r := 0; r < rows; r++ {
			mx := math.Inf(-1)
			for c := 0; c < cols; c++ {
				mx = math.Max(mx, float64(x[r*ld+c]))
			}
			var z float64
			for c := 0; c < cols; c++ {
				z += math.Exp(float64(x[r*ld+c]) - mx)
			}
			var dot float64
			for c := 0; c < cols; c++ {
				p := math.Exp(float64(x[r*ld+c])-mx) / z
				dot += p * float64(dy[r*cols+c])
			}
			for c := 0; c < cols; c++ {
				p := math.Exp(float64(x[r*ld+c])-mx) / z
				if math.Abs(float64(y[r*cols+c])-p) > 1e-6 || in[r*ld+c] != y[r*cols+c] {
					t.Fatalf("SoftmaxTo %dx%d [%d,%d] = %g (in place %g), want %g", rows, cols, r, c, y[r*cols+c], in[r*ld+c], p)
				}
				want := p * (float64(dy[r*cols+c]) - dot)
				if math.Abs(float64(dx[r*cols+c])-want) > 1e-5 {
					t.Fatalf("SoftmaxBackwardTo %dx%d [%d,%d] = %g, want %g", rows, cols, r, c, dx[r*cols+c], want)
				}
			}
		}
		checkPadding(t, "SoftmaxTo in place", in, ld, cols)
	}
}

func TestGatherScatter(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 14))
	const rows, dim, ld = 50, 16, 429
	table := randSlice(rng, rows*dim)
	ids := []int32{3, 0, 49, 3, 17, 3}
	dst := make([]float32, len(ids)*ld)
	Gather(dst[5:], ld, table, dim, ids)
	for r, id := range ids {
		for i := 0; i < dim; i++ {
			if dst[5+r*ld+i] != table[int(id)*dim+i] {
				t.Fatalf("Gather row %d elem %d = %g, want %g", r, i, dst[5+r*ld+i], table[int(id)*dim+i])
			}
		}
	}
	// ScatterAdd of ones counts the occurrences of every id.
	grad := make([]float32, rows*dim)
	ones := make([]float32, len(ids)*ld)
	for i := range ones {
		ones[i] = 1
	}
	ScatterAdd(grad, dim, ids, ones, ld)
	count := map[int32]float32{}
	for _, id := range ids {
		count[id]++
	}
	for id := 0; id < rows; id++ {
		for i := 0; i < dim; i++ {
			if grad[id*dim+i] != count[int32(id)] {
				t.Fatalf("ScatterAdd row %d = %g, want %g", id, grad[id*dim+i], count[int32(id)])
			}
		}
	}
	// Pooled: bags {3,0} {} {49,3,17} {3}.
	offsets := []int32{0, 2, 2, 5, 6}
	pooled := make([]float32, 4*dim)
	for _, mean := range []bool{false, true} {
		GatherPooled(pooled, dim, table, dim, ids, offsets, mean)
		for r := 0; r < 4; r++ {
			bag := ids[offsets[r]:offsets[r+1]]
			for i := 0; i < dim; i++ {
				var want float32
				for _, id := range bag {
					want += table[int(id)*dim+i]
				}
				if mean && len(bag) > 0 {
					want /= float32(len(bag))
				}
				if math.Abs(float64(pooled[r*dim+i]-want)) > 1e-6 {
					t.Fatalf("GatherPooled mean=%v row %d elem %d = %g, want %g", mean, r, i, pooled[r*dim+i], want)
				}
			}
		}
		g := make([]float32, rows*dim)
		ScatterAddPooled(g, dim, ids, offsets, ones, ld, mean)
		want := map[int32]float32{}
		for r := 0; r < 4; r++ {
			bag := ids[offsets[r]:offsets[r+1]]
			for _, id := range bag {
				if mean {
					want[id] += 1 / float32(len(bag))
				} else {
					want[id]++
				}
			}
		}
		for id := 0; id < rows; id++ {
			if math.Abs(float64(g[id*dim]-want[int32(id)])) > 1e-6 {
				t.Fatalf("ScatterAddPooled mean=%v row %d = %g, want %g", mean, id, g[id*dim], want[int32(id)])
			}
		}
	}
}

func TestElementwisePanics(t *testing.T) {
	table := make([]float32, 10*4)
	for name, f := range map[string]func(){
		"gather id":      func() { Gather(make([]float32, 8), 4, table, 4, []int32{1, 10}) },
		"scatter id":     func() { ScatterAdd(table, 4, []int32{-1}, make([]float32, 4), 4) },
		"pooled offsets": func() { GatherPooled(make([]float32, 8), 4, table, 4, []int32{1}, []int32{0, 2}, false) },
		"short view":     func() { AddBias(make([]float32, 7), 4, 2, make([]float32, 4)) },
		"small stride":   func() { ReLU(make([]float32, 16), 3, 2, 4) },
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

func TestElementwiseNoAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 15))
	y, ld := view(rng, 64, 256, 0)
	bias := randSlice(rng, 256)
	table := randSlice(rng, 100*16)
	ids := []int32{1, 5, 99, 5}
	dst := make([]float32, len(ids)*16)
	if n := testing.AllocsPerRun(10, func() {
		AddBiasReLU(y, ld, 64, bias)
		ReLUBackward(y, ld, y, ld, 64, 256)
		AddSumRows(bias, y, ld, 64)
		SoftmaxTo(y, ld, y, ld, 64, 256)
		Gather(dst, 16, table, 16, ids)
		ScatterAdd(table, 16, ids, dst, 16)
	}); n != 0 {
		t.Errorf("elementwise kernels allocate %v times, want 0", n)
	}
}

// TestPackPanels checks the panel packing of packA and packB against a
// plain loop, on the panel widths of every kernel, one or several panels
// and partial last panels: the columns past w zeroed, nothing past the
// last row's w columns read (the source ends there) or past the panels
// written.
func TestPackPanels(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, pad := range []int{1, 6, 8, 14, 16, 17, 31, 32, 40} {
		for _, w := range []int{1, pad / 2, pad - 1, pad, pad + 1, 3*pad - 2, 4 * pad} {
			if w < 1 {
				continue
			}
			for _, rows := range []int{1, 2, 7, 20} {
				lds := w + rng.IntN(5)
				src := make([]float32, (rows-1)*lds+w)
				for i := range src {
					src[i] = rng.Float32()
				}
				panels := (w + pad - 1) / pad
				dst := make([]float32, panels*pad*rows+3)
				for i := range dst {
					dst[i] = sentinel
				}
				packPanels(dst, pad, rows, src, lds, w, rows)
				for r := range rows {
					for j := range panels * pad {
						want := float32(0)
						if j < w {
							want = src[r*lds+j]
						}
						if got := dst[(j/pad)*pad*rows+r*pad+j%pad]; got != want {
							t.Fatalf("pad %d w %d rows %d: element (%d, %d) = %v, want %v", pad, w, rows, r, j, got, want)
						}
					}
				}
				for i := panels * pad * rows; i < len(dst); i++ {
					if dst[i] != sentinel {
						t.Fatalf("pad %d w %d rows %d: wrote dst[%d] past the panels", pad, w, rows, i)
					}
				}
			}
		}
	}
}

// TestDot compares Dot with a float64 sum on lengths around the vector
// blocks, and checks that it is deterministic.
func TestDot(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 7, 8, 9, 31, 32, 33, 40, 128, 129, 1000} {
		x, y := make([]float32, n), make([]float32, n+3)
		var want, mag float64
		for i := range x {
			x[i], y[i] = rng.Float32()*2-1, rng.Float32()*2-1
			want += float64(x[i]) * float64(y[i])
			mag += math.Abs(float64(x[i]) * float64(y[i]))
		}
		got := Dot(x, y)
		if math.Abs(float64(got)-want) > 1e-6*mag+1e-7 {
			t.Errorf("n %d: Dot = %v, want %v", n, got, want)
		}
		if again := Dot(x, y); math.Float32bits(again) != math.Float32bits(got) {
			t.Errorf("n %d: Dot gave %v, then %v", n, got, again)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("Dot accepted a short y")
		}
	}()
	Dot(make([]float32, 3), make([]float32, 2))
}
