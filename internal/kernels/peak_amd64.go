//go:build !noasm

package kernels

// The peak loops (peak_amd64.s): n iterations of independent chains of one
// instruction on zero operands.
func peakFMAZMM(n int)    // 12 chains of VFMADD231PS on ZMM
func peakFMAYMM(n int)    // 12 chains of VFMADD231PS on YMM
func peakDPBF16ZMM(n int) // 24 chains of VDPBF16PS on ZMM

// peakLoops lists the peak loops this CPU can run.
func peakLoops() []peakLoop {
	var ls []peakLoop
	if hasAVX512 {
		ls = append(ls, peakLoop{name: "fma_zmm", flops: 12 * 16 * 2, fn: peakFMAZMM})
	}
	if hasAVX2 {
		ls = append(ls, peakLoop{name: "fma_ymm", flops: 12 * 8 * 2, fn: peakFMAYMM})
	}
	if hasBF16 {
		// Each lane of a VDPBF16PS is two multiply-adds.
		ls = append(ls, peakLoop{name: "dpbf16_zmm", flops: 24 * 16 * 2 * 2, fn: peakDPBF16ZMM})
	}
	return ls
}
