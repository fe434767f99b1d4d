package kernels

import (
	"fmt"
	"testing"
)

// BenchmarkMicroKernel runs each micro-kernel alone on L1-resident packed
// panels: the ceiling the blocked GEMM can approach.
func BenchmarkMicroKernel(b *testing.B) {
	for _, mk := range availableKernels() {
		for _, k := range []int{64, 256} {
			a := make([]float32, mk.mr*k)
			bp := make([]float32, mk.nr*k)
			c := make([]float32, mk.mr*mk.nr)
			b.Run(fmt.Sprintf("%s/k%d", mk.name, k), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					mk.fn(k, &a[0], &bp[0], &c[0], mk.nr, 1, 1)
				}
				b.ReportMetric(2*float64(mk.mr*mk.nr*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
