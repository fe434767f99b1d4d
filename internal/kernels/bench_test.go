package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"

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
