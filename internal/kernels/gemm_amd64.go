//go:build !noasm

package kernels

import "golang.org/x/sys/cpu"

//go:generate go run ./gen

// kernAVX2 is the 6x16 AVX2+FMA micro-kernel (kernel_amd64.s).
//
//go:noescape
func kernAVX2(k int, a, b, c *float32, ldc int, alpha, beta float32)

// kernAVX2x8 is the 12x8 AVX2+FMA micro-kernel for products with at most
// 8 columns, such as the std workload's gates (kernel_amd64.s).
//
//go:noescape
func kernAVX2x8(k int, a, b, c *float32, ldc int, alpha, beta float32)

// kernAVX512 is the 14x32 AVX-512F micro-kernel (kernel_amd64.s).
//
//go:noescape
func kernAVX512(k int, a, b, c *float32, ldc int, alpha, beta float32)

// kernAVX512E is kernAVX512 with a layer's epilogue applied to the tile
// before it is stored (tileEpilogue; kernel_amd64.s).
//
//go:noescape
func kernAVX512E(k int, a, b, c *float32, ldc int, alpha float32, first, last *float32, relu uint32)

// kernAVX2x1 is the 1x16 one-row variant of kernAVX2 (kernel_amd64.s).
//
//go:noescape
func kernAVX2x1(k int, a, b, c *float32, ldc int, alpha, beta float32)

// kernAVX512x1 is the 1x32 one-row variant of kernAVX512 (kernel_amd64.s).
//
//go:noescape
func kernAVX512x1(k int, a, b, c *float32, ldc int, alpha, beta float32)

var (
	narrowMicroKernel = &microKernel{name: "avx2x8", mr: 12, nr: 8, mc: 120, kc: 512, nc: 2048, fn: kernAVX2x8, ceiling: "fma_ymm"}
	avx2MicroKernel   = &microKernel{name: "avx2", mr: 6, nr: 16, mc: 96, kc: 512, nc: 2048, fn: kernAVX2, ceiling: "fma_ymm",
		row1: &microKernel{name: "avx2x1", mr: 1, nr: 16, mc: 1, kc: 512, nc: 2048, fn: kernAVX2x1}}
	avx512MicroKernel = &microKernel{name: "avx512", mr: 14, nr: 32, mc: 112, kc: 512, nc: 2048, fn: kernAVX512, fnEp: kernAVX512E, ceiling: "fma_zmm",
		row1: &microKernel{name: "avx512x1", mr: 1, nr: 32, mc: 1, kc: 512, nc: 2048, fn: kernAVX512x1}}
)

// hasAVX2 and hasAVX512 report what the CPU and OS support.
var (
	hasAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA
	hasAVX512 = cpu.X86.HasAVX512F && hasAVX2
)

// availableKernels lists the micro-kernels this machine can run, best first.
func availableKernels() []*microKernel {
	var ks []*microKernel
	if hasAVX512 {
		ks = append(ks, avx512MicroKernel)
	}
	if hasAVX2 {
		ks = append(ks, avx2MicroKernel, narrowMicroKernel)
	}
	return append(ks, goMicroKernel)
}

// selectKernel returns the best kernel, with the narrow AVX2 kernel for
// products of few columns.
func selectKernel() *microKernel {
	mk := *availableKernels()[0]
	if hasAVX2 {
		mk.narrow = narrowMicroKernel
	}
	return &mk
}
