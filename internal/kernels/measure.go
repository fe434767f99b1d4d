package kernels

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
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

// StdShapes lists the GEMMs of the std workload (docs/benchmarks.md) at training
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

// GemmRate is a measured GEMM throughput.
type GemmRate struct {
	// GFlops is the rate per second of wall time.
	GFlops float64
	// GFlopsCPU is the rate per second of the process's CPU time (all
	// its threads): what a core does while it works on the product,
	// which other processes' load moves far less than GFlops. 0 where
	// the system does not say (ProcessCPU).
	GFlopsCPU float64
}

// MeasureGemm runs SgemmParallel(workers, ...) on random m x n x k operands
// with the given transposes for about dur (at least one call after a warm-up
// call) and returns the achieved rate. It is for `onestone bench`; tests
// use the testing package's benchmarks instead.
func MeasureGemm(m, n, k int, transA, transB bool, workers int, dur time.Duration) GemmRate {
	return measureGemm(SgemmParallel, m, n, k, transA, transB, workers, dur)
}

// MeasureGemmBF16 is [MeasureGemm] for [GemmBF16Parallel] (bf16 operands,
// float32 sums), on the same operands.
func MeasureGemmBF16(m, n, k int, transA, transB bool, workers int, dur time.Duration) GemmRate {
	return measureGemm(GemmBF16Parallel, m, n, k, transA, transB, workers, dur)
}

type gemmFunc func(workers int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

func measureGemm(gemm gemmFunc, m, n, k int, transA, transB bool, workers int, dur time.Duration) GemmRate {
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
		gemm(workers, transA, transB, m, n, k, 1, a, max(1, lda), b, max(1, ldb), 0, c, max(1, n))
	}
	run()
	start, cpu0 := time.Now(), ProcessCPU()
	calls := 0
	for calls == 0 || time.Since(start) < dur {
		run()
		calls++
	}
	secs, cpuSecs := time.Since(start).Seconds(), (ProcessCPU() - cpu0).Seconds()
	gflop := 2 * float64(m) * float64(n) * float64(k) * float64(calls) / 1e9
	r := GemmRate{GFlops: gflop / secs}
	if cpu0 > 0 && cpuSecs > 0 {
		r.GFlopsCPU = gflop / cpuSecs
	}
	return r
}

// Ceiling is the arithmetic peak of one kind of vector instruction on this
// CPU: what a loop of independent chains of it, with no memory operands,
// achieves. Kernel figures are judged as fractions of it, measured in the
// same run (the figures differ from host to host and with load).
type Ceiling struct {
	// Name is "fma_zmm" (VFMADD231PS on 512-bit registers, AVX-512),
	// "fma_ymm" (256-bit, AVX2+FMA) or "dpbf16_zmm" (VDPBF16PS, the bf16
	// kernel's instruction, counting each of its bf16 multiply-adds as 2
	// FLOP).
	Name string
	// GFlops1 is the rate of one goroutine.
	GFlops1 float64
	// GFlopsAll is the rate of Workers goroutines running the loop at once
	// (their sum), Workers being GOMAXPROCS.
	GFlopsAll float64
	Workers   int
	// GFlopsCPU is the one goroutine's rate per second of its thread's
	// CPU time rather than of wall time: what one core does while it
	// runs the loop, which other processes' load moves far less. 0 where
	// the system has no thread CPU clock (Linux has).
	GFlopsCPU float64
}

// CeilingName names the [Ceiling] that bounds products in precision p on
// the kernel this build selected: "fma_zmm" (the AVX-512 kernel),
// "fma_ymm" (AVX2), "dpbf16_zmm" (bf16 on AVX512_BF16), or "" for the
// portable kernels, which no peak loop bounds.
func (p Precision) CeilingName() string {
	if p == BF16 {
		return activeBF16.ceiling
	}
	return active.ceiling
}

// peakLoop is one peak loop: fn(n) runs n iterations of flops each.
type peakLoop struct {
	name  string
	flops float64
	fn    func(n int)
}

// MeasureCeilings measures the peak of each vector instruction kind the
// CPU has (none in a noasm build): 12 independent chains of VFMADD231PS on
// ZMM (AVX-512) and on YMM (AVX2), and 24 of VDPBF16PS on ZMM where the CPU
// has AVX512_BF16 (whose longer latency 12 chains do not cover). Each is
// run for about dur on one goroutine, then for about dur on GOMAXPROCS
// goroutines at once; a figure is the FLOP done over the wall time, so on
// a loaded machine it is what the load left. The one-goroutine run also
// gives the rate per second of its thread's CPU time (GFlopsCPU). It
// takes about 2*dur per ceiling and allocates little.
func MeasureCeilings(dur time.Duration) []Ceiling {
	workers := runtime.GOMAXPROCS(0)
	var cs []Ceiling
	for _, l := range peakLoops() {
		c := Ceiling{Name: l.name, Workers: workers}
		c.GFlops1, c.GFlopsCPU = l.measure1(dur)
		c.GFlopsAll = l.measure(workers, dur)
		cs = append(cs, c)
	}
	return cs
}

// measure1 runs l on one goroutine, locked to its thread, for about dur
// (at least one chunk, after a warm-up chunk) and returns its GFLOP/s per
// second of wall time and per second of the thread's CPU time (0 without
// a thread CPU clock).
func (l peakLoop) measure1(dur time.Duration) (wall, cpu float64) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	l.fn(peakChunk)
	start, cpu0 := time.Now(), threadCPU()
	deadline := start.Add(dur)
	n := 0
	for {
		l.fn(peakChunk)
		n += peakChunk
		if !time.Now().Before(deadline) {
			break
		}
	}
	secs, cpuSecs := time.Since(start).Seconds(), (threadCPU() - cpu0).Seconds()
	flop := float64(n) * l.flops / 1e9
	if cpu0 > 0 && cpuSecs > 0 {
		cpu = flop / cpuSecs
	}
	return flop / secs, cpu
}

// peakChunk is the iterations a peak loop runs between looks at the clock:
// tens of microseconds.
const peakChunk = 1 << 13

// measure runs l on workers goroutines for about dur (at least one chunk
// each, after a warm-up chunk) and returns their summed GFLOP/s.
func (l peakLoop) measure(workers int, dur time.Duration) float64 {
	var iters atomic.Int64
	var wg sync.WaitGroup
	l.fn(peakChunk) // wake the vector units
	start := time.Now()
	deadline := start.Add(dur)
	for range workers {
		wg.Go(func() {
			n := 0
			for {
				l.fn(peakChunk)
				n += peakChunk
				if !time.Now().Before(deadline) {
					break
				}
			}
			iters.Add(int64(n))
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	return float64(iters.Load()) * l.flops / secs / 1e9
}

// CopyBytes is the buffer size [MeasureCopy] is meant for: 64 MiB, so
// that source and destination together are 4x the 32 MiB L3 of a Zen 5
// CCD (the std host) and the copy runs from and to memory.
const CopyBytes = 64 << 20

// MeasureCopy measures memory bandwidth as copy (the runtime's memmove)
// sustains it: it allocates two buffers of size bytes, splits them into
// workers parts (workers <= 0 means GOMAXPROCS) and has each goroutine
// copy its part over and over for about dur (at least once each, after
// one copy that faults the pages in). It returns bytes read plus bytes
// written per second, summed over the goroutines: the figure to set
// against a kernel's bytes moved (loaded plus stored). The buffers are
// dropped on return, but they count towards the process's peak RSS.
func MeasureCopy(workers, size int, dur time.Duration) (bytesPerSec float64) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	size = max(size, workers)
	src, dst := make([]byte, size), make([]byte, size)
	for i := range src {
		src[i] = byte(i)
	}
	var moved atomic.Int64
	var wg sync.WaitGroup
	part := func(w int, b []byte) []byte { return b[size*w/workers : size*(w+1)/workers] }
	for w := range workers {
		copy(part(w, dst), part(w, src))
	}
	start := time.Now()
	deadline := start.Add(dur)
	for w := range workers {
		wg.Go(func() {
			s, d := part(w, src), part(w, dst)
			n := 0
			for {
				copy(d, s)
				n += 2 * len(s)
				if !time.Now().Before(deadline) {
					break
				}
			}
			moved.Add(int64(n))
		})
	}
	wg.Wait()
	return float64(moved.Load()) / time.Since(start).Seconds()
}
