package kernels

import (
	"runtime"
	"sync"
)

// minParallelFlops is the work below which SgemmParallel runs on the calling
// goroutine only: starting a goroutine costs about a microsecond, the time
// of some 100,000 flops.
const minParallelFlops = 1 << 21

// SgemmParallel is [Sgemm] split over up to workers goroutines (workers <= 0
// means GOMAXPROCS). C is cut into blocks of whole micro-tiles along its
// longer side and each goroutine computes one block, so the result is the
// same as Sgemm's for any worker count. Small products run on the calling
// goroutine. It allocates only what starting the goroutines costs. It is
// safe for concurrent use on disjoint C. It panics on inconsistent shapes.
func SgemmParallel(workers int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkGemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	gemmParallel(active, workers, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func gemmParallel(mk *microKernel, workers int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if workers == 1 || 2*m*n*k < minParallelFlops {
		gemmWith(mk, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
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
		gemmWith(mk, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	var wg sync.WaitGroup
	for w := workers - 1; w >= 0; w-- {
		lo := tiles * w / workers * tile
		hi := min(size, tiles*(w+1)/workers*tile)
		var (
			as, bs, cs = a, b, c
			mm, nn     = m, n
		)
		if splitRows {
			mm = hi - lo
			if transA {
				as = a[lo:]
			} else {
				as = a[lo*lda:]
			}
			cs = c[lo*ldc:]
		} else {
			nn = hi - lo
			if transB {
				bs = b[lo*ldb:]
			} else {
				bs = b[lo:]
			}
			cs = c[lo:]
		}
		if w == 0 {
			gemmWith(mk, transA, transB, mm, nn, k, alpha, as, lda, bs, ldb, beta, cs, ldc)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			gemmWith(mk, transA, transB, mm, nn, k, alpha, as, lda, bs, ldb, beta, cs, ldc)
		}()
	}
	wg.Wait()
}
