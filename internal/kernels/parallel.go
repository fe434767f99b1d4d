package kernels

import (
	"fmt"
	"runtime"
	"sync"
)

// minParallelFlops is the work below which SgemmParallel runs on the calling
// goroutine only. Measured on the 2-core std machine: at 8 MFLOP (500x64x128)
// two goroutines were slower than one, at 33 MFLOP about 1.2x faster. It is
// a variable so tests can force the parallel path on small shapes.
var minParallelFlops = 1 << 24

// SgemmParallel is [Sgemm] split over up to workers goroutines (workers <= 0
// means GOMAXPROCS). C is cut into blocks of whole micro-tiles along its
// longer side and each goroutine computes one block; the result has the
// same bits as Sgemm's for any worker count (see Sgemm). Small products run on the calling
// goroutine. It allocates only what starting the goroutines costs. It is
// safe for concurrent use on disjoint C. It panics on inconsistent shapes.
func SgemmParallel(workers int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkGemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	gemmParallel(active, epilogue{}, workers, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func gemmParallel(mk *microKernel, ep epilogue, workers int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if workers == 1 || 2*m*n*k < minParallelFlops {
		gemmWith(mk, ep, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	// Split the longer side of C into at most workers chunks of whole tiles.
	splitRows := m >= n
	size, tile := n, mk.nr
	if splitRows {
		size, tile = m, mk.mr
	}
	tiles := (size + tile - 1) / tile
	workers = min(workers, tiles)
	if workers <= 1 {
		gemmWith(mk, ep, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	var wg sync.WaitGroup
	for w := workers - 1; w >= 0; w-- {
		lo := tiles * w / workers * tile
		hi := min(size, tiles*(w+1)/workers*tile)
		var (
			as, bs, cs = a, b, c
			mm, nn     = m, n
			wep        = ep
		)
		if splitRows {
			mm = hi - lo
			if transA {
				as = a[lo:]
			} else {
				as = a[lo*lda:]
			}
			cs = c[lo*ldc:]
			if ep.mask != nil {
				wep.mask = ep.mask[lo*ep.ldm:]
			}
		} else {
			nn = hi - lo
			if transB {
				bs = b[lo*ldb:]
			} else {
				bs = b[lo:]
			}
			cs = c[lo:]
			if ep.bias != nil {
				wep.bias = ep.bias[lo:]
			}
			if ep.bias2 != nil {
				wep.bias2 = ep.bias2[lo:]
			}
			wep.reluFrom, wep.reluTo = ep.reluFrom-lo, ep.reluTo-lo
			if ep.mask != nil {
				wep.mask = ep.mask[lo:]
			}
		}
		if w == 0 {
			gemmWith(mk, wep, transA, transB, mm, nn, k, alpha, as, lda, bs, ldb, beta, cs, ldc)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			gemmWith(mk, wep, transA, transB, mm, nn, k, alpha, as, lda, bs, ldb, beta, cs, ldc)
		}()
	}
	wg.Wait()
}

// Activation is the function a fused kernel applies elementwise after the
// bias.
type Activation uint8

const (
	// ActNone applies nothing (the identity).
	ActNone Activation = iota
	// ActReLU applies max(x, 0).
	ActReLU
)

// LinearTo computes the dense layer y = act(x·Wᵀ + bias) for rows examples:
// x is the rows x in view (x, ldx); W is out x in, stored row-major
// ([out, in], row stride in); bias has out entries, or is nil for none; y is
// the rows x out view (y, ldy) and is overwritten. The bias and activation
// are applied to each tile of y while it is in cache, which saves the
// separate passes of AddBias and ReLU. It uses up to workers goroutines
// (<= 0 means GOMAXPROCS; 1 runs on the caller's goroutine only and does not
// allocate). It is safe for concurrent use on disjoint y. It panics on
// inconsistent shapes.
func LinearTo(workers int, act Activation, y []float32, ldy int, x []float32, ldx, rows, in, out int, w, bias []float32) {
	checkGemm(false, true, rows, out, in, x, ldx, w, max(1, in), y, ldy)
	if bias != nil && len(bias) < out {
		panic(fmt.Sprintf("kernels: LinearTo: len(bias) = %d, want %d", len(bias), out))
	}
	if act > ActReLU {
		panic(fmt.Sprintf("kernels: LinearTo: unknown activation %d", act))
	}
	gemmParallel(active, epilogue{bias: bias, act: act}, workers, false, true, rows, out, in, 1, x, ldx, w, max(1, in), 0, y, ldy)
}
