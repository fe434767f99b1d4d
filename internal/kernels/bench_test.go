package kernels

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// BenchmarkSgemm runs each std shape with every available micro-kernel on
// one goroutine, with Sgemm's selection ("selected", one goroutine) and
// SgemmParallel ("parallel", GOMAXPROCS goroutines), next to gonum's
// blas32.Gemm (which itself uses GOMAXPROCS goroutines) on the same operands.
func BenchmarkSgemm(b *testing.B) {
	for _, s := range StdShapes() {
		rng := rand.New(rand.NewPCG(1, 2))
		ar, ac := s.M, s.K
		ta := blas.NoTrans
		if s.TransA {
			ar, ac, ta = s.K, s.M, blas.Trans
		}
		br, bc := s.K, s.N
		tb := blas.NoTrans
		if s.TransB {
			br, bc, tb = s.N, s.K, blas.Trans
		}
		a, bm, c := randSlice(rng, ar*ac), randSlice(rng, br*bc), make([]float32, s.M*s.N)
		report := func(b *testing.B) {
			b.ReportMetric(s.Flops()*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		}
		for _, mk := range availableKernels() {
			b.Run(fmt.Sprintf("%s/%s", s.Name, mk.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					gemmWith(mk, epilogue{}, s.TransA, s.TransB, s.M, s.N, s.K, 1, a, ac, bm, bc, 0, c, s.N)
				}
				report(b)
			})
		}
		b.Run(s.Name+"/selected", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Sgemm(s.TransA, s.TransB, s.M, s.N, s.K, 1, a, ac, bm, bc, 0, c, s.N)
			}
			report(b)
		})
		b.Run(s.Name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				SgemmParallel(0, s.TransA, s.TransB, s.M, s.N, s.K, 1, a, ac, bm, bc, 0, c, s.N)
			}
			report(b)
		})
		b.Run(s.Name+"/gonum", func(b *testing.B) {
			for b.Loop() {
				blas32.Gemm(ta, tb, 1,
					blas32.General{Rows: ar, Cols: ac, Data: a, Stride: ac},
					blas32.General{Rows: br, Cols: bc, Data: bm, Stride: bc},
					0, blas32.General{Rows: s.M, Cols: s.N, Data: c, Stride: s.N})
			}
			report(b)
		})
	}
}

// BenchmarkGemmBF16 compares the bf16 GEMM with the float32 one on each
// std shape, on one goroutine and on GOMAXPROCS. Each iteration runs
// SgemmParallel then GemmBF16Parallel on the same operands, so that both
// see the same load on a shared machine; it reports the GFLOP/s of the
// median call of each and the ratio of the medians.
func BenchmarkGemmBF16(b *testing.B) {
	for _, s := range StdShapes() {
		rng := rand.New(rand.NewPCG(1, 2))
		ac, bc := s.K, s.N
		if s.TransA {
			ac = s.M
		}
		if s.TransB {
			bc = s.K
		}
		a, bm, c := randSlice(rng, s.M*s.K), randSlice(rng, s.K*s.N), make([]float32, s.M*s.N)
		for _, par := range []struct {
			name    string
			workers int
		}{{"1", 1}, {"all", 0}} {
			b.Run(s.Name+"/workers="+par.name, func(b *testing.B) {
				var t32, t16 []time.Duration
				for b.Loop() {
					t0 := time.Now()
					SgemmParallel(par.workers, s.TransA, s.TransB, s.M, s.N, s.K, 1, a, ac, bm, bc, 0, c, s.N)
					t1 := time.Now()
					GemmBF16Parallel(par.workers, s.TransA, s.TransB, s.M, s.N, s.K, 1, a, ac, bm, bc, 0, c, s.N)
					t32, t16 = append(t32, t1.Sub(t0)), append(t16, time.Since(t1))
				}
				m32, m16 := median(t32).Seconds(), median(t16).Seconds()
				b.ReportMetric(s.Flops()/m32/1e9, "fp32-GFLOP/s")
				b.ReportMetric(s.Flops()/m16/1e9, "bf16-GFLOP/s")
				b.ReportMetric(m32/m16, "bf16/fp32")
			})
		}
	}
}

func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// BenchmarkLinear compares the fused LinearTo (bias and ReLU in the GEMM's
// tile epilogue) with Sgemm followed by AddBiasReLU, on one goroutine, for
// the std experts' first layers.
func BenchmarkLinear(b *testing.B) {
	const rows, in, out = 1024, 429, 2048
	rng := rand.New(rand.NewPCG(3, 4))
	x, w, bias, y := randSlice(rng, rows*in), randSlice(rng, out*in), randSlice(rng, out), make([]float32, rows*out)
	flops := 2.0 * rows * in * out
	b.Run("fused", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			LinearTo(1, ActReLU, y, out, x, in, rows, in, out, w, bias)
		}
		b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
	b.Run("separate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Sgemm(false, true, rows, out, in, 1, x, in, w, in, 0, y, out)
			AddBiasReLU(y, out, rows, bias)
		}
		b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
}

// BenchmarkElementwise runs the row kernels on a 1024 x 256 activation (the
// std experts' first-layer output per expert), reporting GB/s of data read
// and written.
func BenchmarkElementwise(b *testing.B) {
	const rows, cols = 1024, 256
	rng := rand.New(rand.NewPCG(5, 6))
	y, dy, bias := randSlice(rng, rows*cols), randSlice(rng, rows*cols), randSlice(rng, cols)
	gb := func(b *testing.B, bytes float64) {
		b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
	}
	b.Run("AddBiasReLU", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			AddBiasReLU(y, cols, rows, bias)
		}
		gb(b, 8*rows*cols)
	})
	b.Run("ReLUBackward", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ReLUBackward(dy, cols, y, cols, rows, cols)
		}
		gb(b, 12*rows*cols)
	})
	b.Run("AddSumRows", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			AddSumRows(bias, dy, cols, rows)
		}
		gb(b, 4*rows*cols)
	})
	b.Run("SoftmaxTo_8cols", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			SoftmaxTo(dy, 8, y, 8, rows, 8)
		}
		gb(b, 8*rows*8)
	})
	const dim, tableRows = 16, 100000
	table := randSlice(rng, tableRows*dim)
	ids := make([]int32, rows)
	for i := range ids {
		ids[i] = int32(rng.IntN(tableRows))
	}
	dst := make([]float32, rows*429)
	b.Run("Gather_1024x16", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Gather(dst, 429, table, dim, ids)
		}
		gb(b, 8*rows*dim)
	})
	b.Run("ScatterAdd_1024x16", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ScatterAdd(table, dim, ids, dst, 429)
		}
		gb(b, 12*rows*dim)
	})
}
