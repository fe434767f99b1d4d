package kernels

import "fmt"

// Precision is the arithmetic of a model's products: float32 throughout,
// or bf16 operands with float32 sums ([GemmBF16]). Everything else (the
// weights, activations, elementwise steps and optimizer state) stays
// float32 in both.
type Precision uint8

const (
	// FP32 computes every product in float32 ([Sgemm]).
	FP32 Precision = iota
	// BF16 rounds the operands of every product to bf16 and sums in
	// float32 ([GemmBF16]).
	BF16
)

// String returns "fp32" or "bf16".
func (p Precision) String() string {
	switch p {
	case FP32:
		return "fp32"
	case BF16:
		return "bf16"
	}
	return fmt.Sprintf("Precision(%d)", uint8(p))
}

// ParsePrecision parses "fp32" (or "", the default) and "bf16".
func ParsePrecision(s string) (Precision, error) {
	switch s {
	case "", "fp32":
		return FP32, nil
	case "bf16":
		return BF16, nil
	}
	return FP32, fmt.Errorf("kernels: precision %q: want fp32 or bf16", s)
}

// Effective is the precision products asked to run in p do run in on this
// machine: BF16 only where [NativeBF16] (elsewhere the emulation would be
// tens of times slower than float32), else FP32.
func (p Precision) Effective() Precision {
	if p == BF16 && !NativeBF16() {
		return FP32
	}
	return p
}

// Gemm is [Sgemm] for FP32 and [GemmBF16] for BF16: the product in
// precision p, exactly (BF16 on a CPU without AVX512_BF16 runs on the
// emulation, with the same bits).
func (p Precision) Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if p == BF16 {
		GemmBF16(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// GemmReLUBack computes C = op(A)·op(B) (m x n, overwritten) in
// precision p on the calling goroutine, then zeroes each element of C
// whose element in the m x n view (y, ldy) is not positive (or is NaN):
// the gradient of a layer's input through the ReLU whose output is y.
// The mask is applied to each strip of C while it is in cache, with the
// bits of the product followed by [ReLUBackward]. It panics on
// inconsistent shapes.
func (p Precision) GemmReLUBack(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, y []float32, ldy int) {
	mk := active
	if p == BF16 {
		mk = activeBF16
	}
	checkGemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	checkView("GemmReLUBack", "y", y, ldy, m, n)
	if m == 0 || n == 0 {
		return
	}
	gemmWith(mk, epilogue{mask: y, ldm: ldy}, transA, transB, m, n, k, 1, a, lda, b, ldb, 0, c, ldc)
}

// LinearTo is [LinearTo] on one goroutine in precision p: y = act(x·Wᵀ +
// bias) with the bias and activation applied in the product's epilogue.
func (p Precision) LinearTo(act Activation, y []float32, ldy int, x []float32, ldx, rows, in, out int, w, bias []float32) {
	mk := active
	if p == BF16 {
		mk = activeBF16
	}
	checkGemm(false, true, rows, out, in, x, ldx, w, max(1, in), y, ldy)
	if bias != nil && len(bias) < out {
		panic(fmt.Sprintf("kernels: LinearTo: len(bias) = %d, want %d", len(bias), out))
	}
	if act > ActReLU {
		panic(fmt.Sprintf("kernels: LinearTo: unknown activation %d", act))
	}
	gemmWith(mk, epilogue{bias: bias, act: act}, false, true, rows, out, in, 1, x, ldx, w, max(1, in), 0, y, ldy)
}

// PackB is [PackB] for FP32 and [PackBBF16] for BF16.
func (p Precision) PackB(transB bool, n, k int, b []float32, ldb int) *PackedB {
	if p == BF16 {
		return PackBBF16(transB, n, k, b, ldb)
	}
	return PackB(transB, n, k, b, ldb)
}

// SetNativeBF16 turns the use of the CPU's AVX512_BF16 instructions off
// (false) or back on (true, where the CPU has them) and returns the
// previous setting. Off, [NativeBF16] reports false and the bf16 products
// run on the exact emulation, as on a CPU without the instructions: it is
// for tests of that fallback. It must not run concurrently with products
// or packing; a PackedB packed before the switch keeps its kernel.
func SetNativeBF16(on bool) (was bool) {
	was = NativeBF16()
	if on {
		activeBF16 = selectBF16Kernel()
	} else {
		activeBF16 = goBF16MicroKernel
	}
	return was
}
