package kernels

import (
	"math/rand/v2"
	"time"
)

// GemmShape is one GEMM of the std workload, named for benchmark reports.
type GemmShape struct {
	Name           string // e.g. "fwd_expert1_1024x2048x429"
	TransA, TransB bool
	M, N, K        int
}

// Flops is the floating-point operation count of one product, 2*M*N*K.
func (s GemmShape) Flops() float64 { return 2 * float64(s.M) * float64(s.N) * float64(s.K) }

// StdShapes lists the GEMMs of the std workload (BENCHMARKS.md) at training
// batch 1024: the forward layers with W stored [out, in] (Y = X·Wᵀ) and the
// backward products of the first expert layer (dW = dYᵀ·X, dX = dY·W).
func StdShapes() []GemmShape {
	return []GemmShape{
		{Name: "fwd_experts1_1024x2048x429", TransB: true, M: 1024, N: 2048, K: 429},
		{Name: "fwd_experts2_1024x128x256", TransB: true, M: 1024, N: 128, K: 256},
		{Name: "fwd_gates_1024x8x429", TransB: true, M: 1024, N: 8, K: 429},
		{Name: "fwd_towers_1024x64x128", TransB: true, M: 1024, N: 64, K: 128},
		{Name: "bwd_dW_256x429x1024", TransA: true, M: 256, N: 429, K: 1024},
		{Name: "bwd_dX_1024x429x256", M: 1024, N: 429, K: 256},
	}
}

// MeasureGemm runs SgemmParallel(workers, ...) on random m x n x k operands
// with the given transposes for about dur (at least one call after a warm-up
// call) and returns the achieved GFLOP/s. It is for `onestone bench`; tests
// use the testing package's benchmarks instead.
func MeasureGemm(m, n, k int, transA, transB bool, workers int, dur time.Duration) (gflops float64) {
	rng := rand.New(rand.NewPCG(uint64(m), uint64(n*k+1)))
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	a := make([]float32, m*k)
	b := make([]float32, k*n)
	c := make([]float32, m*n)
	for i := range a {
		a[i] = rng.Float32() - 0.5
	}
	for i := range b {
		b[i] = rng.Float32() - 0.5
	}
	run := func() {
		SgemmParallel(workers, transA, transB, m, n, k, 1, a, max(1, lda), b, max(1, ldb), 0, c, max(1, n))
	}
	run()
	start := time.Now()
	calls := 0
	for calls == 0 || time.Since(start) < dur {
		run()
		calls++
	}
	secs := time.Since(start).Seconds()
	return 2 * float64(m) * float64(n) * float64(k) * float64(calls) / secs / 1e9
}
