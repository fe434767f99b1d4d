package kernels

import (
	"fmt"
	"testing"
)

// BenchmarkMicroKernel runs each micro-kernel alone on L1-resident packed
// panels (zeros): the ceiling the blocked GEMM can approach.
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
	// The bf16 kernels on panels of k pairs (2k of depth).
	for _, mk := range availableBF16Kernels() {
		for _, k := range []int{64, 256} {
			a := make([]float32, mk.mr*k)
			bp := make([]float32, mk.nr*k)
			c := make([]float32, mk.mr*mk.nr)
			b.Run(fmt.Sprintf("%s/k%d", mk.name, 2*k), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					mk.fn(k, &a[0], &bp[0], &c[0], mk.nr, 1, 1)
				}
				b.ReportMetric(4*float64(mk.mr*mk.nr*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
