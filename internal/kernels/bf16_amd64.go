//go:build !noasm

package kernels

import (
	"fmt"

	"golang.org/x/sys/cpu"
)

// kernBF16 is the 14x32 AVX512_BF16 micro-kernel on bf16 pairs
// (kernel_amd64.s).
//
//go:noescape
func kernBF16(k int, a, b, c *float32, ldc int, alpha, beta float32)

// kernBF16E is kernBF16 with a layer's epilogue applied to the tile before
// it is stored (tileEpilogue; kernel_amd64.s).
//
//go:noescape
func kernBF16E(k int, a, b, c *float32, ldc int, alpha float32, first, last *float32, relu uint32)

// kernBF16EP is kernBF16E that also stores the tile's bf16 pairs
// (kernel_amd64.s).
//
//go:noescape
func kernBF16EP(k int, a, b, c *float32, ldc int, alpha float32, first, last *float32, relu uint32, pairs *float32, ldp int)

// kernBF16RE is kernBF16E reading A's 14 rows of pairs in place, row i at
// a + i*lda (kernel_amd64.s).
//
//go:noescape
func kernBF16RE(k int, a *float32, lda int, b, c *float32, ldc int, alpha float32, first, last *float32, relu uint32)

// kernBF16x1 is the 1x32 one-row variant of kernBF16 (kernel_amd64.s).
//
//go:noescape
func kernBF16x1(k int, a, b, c *float32, ldc int, alpha, beta float32)

// kernBF16x16 is the 28x16 AVX512_BF16 micro-kernel for products of at
// most 16 columns (kernel_amd64.s).
//
//go:noescape
func kernBF16x16(k int, a, b, c *float32, ldc int, alpha, beta float32)

// cvtPairsBF16 converts n floats to (n+1)/2 bf16 pairs (bf16_amd64.s).
//
//go:noescape
func cvtPairsBF16(dst, src *float32, n int)

// cvtInterleavePanelBF16 converts pairs of rows of a k-major matrix to a
// panel of pairs (bf16_amd64.s).
//
//go:noescape
func cvtInterleavePanelBF16(dst *float32, ldd int, src *float32, lds, n, w, pairs int)

// cvtTranspose8BF16 converts eight rows of kb floats to (kb+1)/2 rows of
// eight pairs (bf16_amd64.s).
//
//go:noescape
func cvtTranspose8BF16(dst *float32, ldd int, src *float32, lds, kb int)

// hasBF16 reports whether the CPU and OS support the bf16 kernel and
// conversions (AVX-512 F and BW, and AVX512_BF16).
var hasBF16 = hasAVX512 && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512BF16

// bf16MicroKernel has the float32 AVX-512 kernel's tile and the same bytes
// per k block: kc is twice as many k. Its narrow kernel computes products
// of at most 16 columns (the std gates) on a 28x16 tile instead of wasting
// most of a 32-column one; all three give the same bits.
var (
	bf16NarrowMicroKernel = &microKernel{name: "avx512bf16x16", mr: 28, nr: 16, mc: 112, kc: 1024, nc: 2048, fn: kernBF16x16, bf16: true, ceiling: "dpbf16_zmm"}
	bf16MicroKernel       = &microKernel{name: "avx512bf16", mr: 14, nr: 32, mc: 112, kc: 1024, nc: 2048, fn: kernBF16, fnEp: kernBF16E, fnEpPairs: kernBF16EP, fnRowA: kernBF16RE, bf16: true, ceiling: "dpbf16_zmm",
		narrow: bf16NarrowMicroKernel,
		row1:   &microKernel{name: "avx512bf16x1", mr: 1, nr: 32, mc: 1, kc: 1024, nc: 2048, fn: kernBF16x1, bf16: true}}
)

// availableBF16Kernels lists the bf16 micro-kernels this machine can run,
// best first.
func availableBF16Kernels() []*microKernel {
	if hasBF16 {
		return []*microKernel{bf16MicroKernel, bf16NarrowMicroKernel, goBF16MicroKernel}
	}
	return []*microKernel{goBF16MicroKernel}
}

func selectBF16Kernel() *microKernel { return availableBF16Kernels()[0] }

// cvtPairs sets dst[q] to the bf16 pair (src[2q], src[2q+1]) for q <
// (len(src)+1)/2, the upper half of the last zero when len(src) is odd.
func cvtPairs(dst, src []float32) {
	if !hasBF16 {
		cvtPairsGo(dst, src)
		return
	}
	if n := len(src); n > 0 {
		_ = dst[(n+1)/2-1]
		cvtPairsBF16(&dst[0], &src[0], n)
	}
}

// cvtInterleavePanel sets, for q < pairs, dst[q*ldd+i] to the bf16 pair
// (src[2q*lds+i], src[(2q+1)*lds+i]) for i < n, and to zero for n <= i <
// w; n <= w <= 32.
func cvtInterleavePanel(dst []float32, ldd int, src []float32, lds, n, w, pairs int) {
	if !hasBF16 {
		cvtInterleavePanelGo(dst, ldd, src, lds, n, w, pairs)
		return
	}
	if pairs <= 0 || w <= 0 {
		return
	}
	if n < 0 || n > w || w > 32 {
		panic(fmt.Sprintf("kernels: cvtInterleavePanel: n=%d w=%d", n, w))
	}
	_ = dst[(pairs-1)*ldd+w-1]
	if n > 0 {
		_ = src[(2*pairs-1)*lds+n-1]
	}
	cvtInterleavePanelBF16(&dst[0], ldd, &src[0], lds, n, w, pairs)
}

// cvtTranspose8 sets dst[q*ldd+r] to the bf16 pair (src[r*lds+2q],
// src[r*lds+2q+1]) for r < 8 and q < (kb+1)/2, the upper half of the last
// zero when kb is odd, and reports true; without a fast path it does
// nothing and reports false.
func cvtTranspose8(dst []float32, ldd int, src []float32, lds, kb int) bool {
	if !hasBF16 {
		return false
	}
	if kb > 0 {
		_ = dst[((kb+1)/2-1)*ldd+7]
		_ = src[7*lds+kb-1]
		cvtTranspose8BF16(&dst[0], ldd, &src[0], lds, kb)
	}
	return true
}
