//go:build noasm || !amd64

package kernels

// hasBF16: this build has no bf16 assembly.
const hasBF16 = false

// availableBF16Kernels lists the bf16 micro-kernels this build can run:
// the portable one only.
func availableBF16Kernels() []*microKernel { return []*microKernel{goBF16MicroKernel} }

func selectBF16Kernel() *microKernel { return goBF16MicroKernel }

func cvtPairs(dst, src []float32) { cvtPairsGo(dst, src) }

func cvtInterleavePanel(dst []float32, ldd int, src []float32, lds, n, w, pairs int) {
	cvtInterleavePanelGo(dst, ldd, src, lds, n, w, pairs)
}

// cvtTranspose8 has no fast path in this build.
func cvtTranspose8(dst []float32, ldd int, src []float32, lds, kb int) bool { return false }
