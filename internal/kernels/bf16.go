package kernels

import (
	"fmt"
	"math"
	"unsafe"
)

// The bf16 GEMM: [GemmBF16], [GemmBF16Parallel] and [PackBBF16] take the
// same float32 matrices as their float32 counterparts, round both operands
// to bf16 (8 significant bits) while packing them, and sum their products
// in float32. C, alpha, beta and the epilogues stay float32.
//
// It runs the same blocked loop nest as Sgemm (gemmBlocked). Packed panels
// hold bf16 pairs: each 32-bit slot holds the bf16 values of two
// consecutive k of one row of op(A) or one column of op(B), the even k in
// the lower half (the VNNI layout VDPBF16PS reads). An odd k is padded with
// a zero. The micro-kernel is VDPBF16PS (AVX512_BF16) on the 14x32 tile of
// the float32 AVX-512 kernel (28x16 for products of at most 16 columns);
// the conversions are VCVTNE2PS2BF16 and VCVTNEPS2BF16, fused with the
// packing's transposes and interleaves (bf16_amd64.s). The k block is 1024
// (512 pairs: the float32 kernel's bytes), the same in the fallback.
//
// # Rounding
//
// The conversion to bf16 rounds to nearest, ties to even; float32
// denormals become zeros of their sign, NaNs stay NaN (quiet), and values
// that round past the largest bf16 become infinities (toBF16).
//
// Each element of C is computed as VDPBF16PS computes one lane, whose
// Intel SDM description is, for each pair of k (2q, 2q+1) in turn:
//
//	acc = acc + a[2q+1]*b[2q+1]   (an FMA: one rounding, to nearest even)
//	acc = acc + a[2q]*b[2q]
//
// reading denormal inputs as zero and flushing denormal results to zero,
// whatever MXCSR says. A result is flushed when, rounded to 24 bits with
// an unbounded exponent, it is below the smallest normal float32 (x86's
// tininess after rounding). All of this was checked bit for bit on the std
// host (AMD Zen 5) against the emulation below, including the flush
// threshold's edge cases (TestDotBF16Hardware), and the conversion on
// random bit patterns (TestCvtMatchesGo). Then C = alpha*acc + beta*C,
// each product rounded, as in Sgemm.
//
// The portable micro-kernel (goKernelBF16) emulates this exactly, so the
// fallback gives the same bits as the AVX512_BF16 kernel: same k blocks,
// same order, same rounding, same flushes. Only NaN payloads may differ.
// Since the packed operands are never denormal (the conversion flushes
// them) and acc starts at zero and is flushed after every step, the
// emulation has no denormal inputs to read as zero.

// GemmBF16 is [Sgemm] with bf16 operands: C = alpha * op(A) * op(B) + beta
// * C, where op(A) and op(B) are rounded to bf16 ([RoundBF16]: 8
// significant bits, nearest even) and their products summed in float32.
// The arguments are those of Sgemm.
//
// Each element's sum is what VDPBF16PS computes: the k products in pairs
// (2q, 2q+1), the odd one added first, each added by an FMA (the product
// is exact; one rounding, to nearest even), with sums below the smallest
// normal float32 flushed to zero. Then C = alpha*sum + beta*C as in Sgemm.
// Compared with Sgemm on the same inputs, the error is dominated by the
// rounding of the operands: up to about 2^-7 of the sum of |products|.
//
// It runs on the AVX512_BF16 kernel where the CPU has it and on an exact
// but much slower emulation otherwise ([NativeBF16]); both give the same
// bits (NaN payloads aside). Like Sgemm, each element of C gets the same
// bits whatever the shape around it; it does not allocate in steady state,
// is safe for concurrent use on disjoint C, and panics on inconsistent
// shapes.
func GemmBF16(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkGemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	gemmWith(activeBF16, epilogue{}, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// GemmBF16Parallel is [GemmBF16] split over up to workers goroutines as
// [SgemmParallel] splits Sgemm, with the same bits as GemmBF16 for any
// worker count.
func GemmBF16Parallel(workers int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkGemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	gemmParallel(activeBF16, epilogue{}, workers, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// PackBBF16 is [PackB] for bf16 products: it rounds op(B) to bf16 and packs
// it for the bf16 kernel, in half the memory of PackB. [SgemmPacked],
// [LinearPackedTo] and [LinearPackedEpilogueTo] with the result compute
// with bf16 operands (op(A) rounded to bf16 as it is packed) and give the
// same bits as [GemmBF16] on the unpacked B; [PackedB.Repack] packs new
// values the same way. [LinearPackedPairsTo] reads its x as bf16 pairs an
// [Epilogue] stored, without converting or packing it.
func PackBBF16(transB bool, n, k int, b []float32, ldb int) *PackedB {
	if n < 0 || k < 0 {
		panic(fmt.Sprintf("kernels: PackBBF16: negative dimension n=%d k=%d", n, k))
	}
	return packBFor(activeBF16, transB, n, k, b, ldb)
}

// ImplBF16 names the bf16 micro-kernel selected at start-up: "avx512bf16",
// or "gobf16" (the portable emulation: the CPU lacks AVX512_BF16, or the
// package is built with the noasm tag).
func ImplBF16() string { return activeBF16.name }

// NativeBF16 reports whether the bf16 products run on the CPU's
// AVX512_BF16 instructions. Without them they are emulated (same bits,
// tens of times slower than Sgemm), and a caller choosing a precision for
// speed should use float32.
func NativeBF16() bool { return !activeBF16.emulated }

// activeBF16 is the bf16 micro-kernel in use (see selectBF16Kernel in the
// per-architecture files). Tests swap in goBF16MicroKernel to run the
// exported functions on the fallback.
var activeBF16 = selectBF16Kernel()

// goBF16MicroKernel is the portable bf16 kernel. Its kc is the AVX-512
// kernel's, so both split k the same way and give the same bits.
var goBF16MicroKernel = &microKernel{name: "gobf16", mr: 2, nr: 4, mc: 64, kc: 1024, nc: 512, fn: goKernelBF16, bf16: true, emulated: true}

// packABF16 is packA for a bf16 kernel: it rounds rows i0..i0+mb, columns
// p0..p0+kb of op(A) to bf16 and packs them as micro-panels of mr rows of
// kw = (kb+1)/2 pairs: panel s holds the pair (s*mr+i, q), that is
// op(A)(s*mr+i, p0+2q) and (…, p0+2q+1), at dst[s*mr*kw + q*mr + i]. Rows
// past mb, and the upper half of the last pair when kb is odd, are zero.
// scratch holds at least mr*kw floats.
func packABF16(dst []float32, trans bool, a []float32, lda, i0, p0, mb, kb, mr int, scratch []float32) {
	kw := (kb + 1) / 2
	for s := 0; s < mb; s += mr {
		rs := min(mr, mb-s)
		d := dst[s*kw : s*kw+mr*kw]
		if trans {
			// op(A)(i, p) = a[p*lda+i]: the pairs of row q of the panel
			// come from rows p0+2q and p0+2q+1 of a.
			packPairsKMajor(d, mr, a, lda, p0, i0+s, kb, rs)
			continue
		}
		// op(A)(i, p) = a[i*lda+p]: each row's consecutive k are pairs.
		packPairsRows(d, mr, a, lda, i0+s, p0, kb, rs, scratch)
	}
}

// packBBF16 is packB for a bf16 kernel: it rounds rows p0..p0+kb, columns
// j0..j0+nb of op(B) to bf16 and packs them as micro-panels of nr columns
// of kw = (kb+1)/2 pairs: panel s holds the pair (q, s*nr+j), that is
// op(B)(p0+2q, s*nr+j) and (p0+2q+1, …), at dst[s*nr*kw + q*nr + j].
// Columns past nb, and the upper half of the last pair when kb is odd, are
// zero. scratch holds at least nr*kw floats.
func packBBF16(dst []float32, trans bool, b []float32, ldb, p0, j0, kb, nb, nr int, scratch []float32) {
	kw := (kb + 1) / 2
	for s := 0; s < nb; s += nr {
		cs := min(nr, nb-s)
		d := dst[s*kw : s*kw+nr*kw]
		if !trans {
			// op(B)(p, j) = b[p*ldb+j]: the pairs of row q of the panel
			// come from rows p0+2q and p0+2q+1 of b.
			packPairsKMajor(d, nr, b, ldb, p0, j0+s, kb, cs)
			continue
		}
		// op(B)(p, j) = b[j*ldb+p]: column j of op(B) is a row of b.
		packPairsRows(d, nr, b, ldb, j0+s, p0, kb, cs, scratch)
	}
}

// packPairsKMajor writes the panel d of w rows or columns (its kw =
// (kb+1)/2 rows of w pairs) from a k-major matrix x (stride ldx): pair
// (q, i) of d holds x[(k0+2q)*ldx+c0+i] and x[(k0+2q+1)*ldx+c0+i] for i <
// n, zeros for n <= i < w.
func packPairsKMajor(d []float32, w int, x []float32, ldx, k0, c0, kb, n int) {
	cvtInterleavePanel(d, w, x[k0*ldx+c0:], ldx, n, w, kb/2)
	if kb%2 == 1 {
		dq := d[kb/2*w : kb/2*w+w]
		cvtInterleaveZero(dq[:n], x[(k0+kb-1)*ldx+c0:])
		clear(dq[n:])
	}
}

// packPairsRows writes the panel d of w rows or columns (its kw =
// (kb+1)/2 rows of w pairs) from n rows of x (stride ldx) whose
// consecutive k are pairs: pair (q, i) of d holds x[(r0+i)*ldx+k0+2q] and
// the next, zeros for n <= i < w. With eight or more rows, eight are
// converted and transposed at a time (the last eight overlapping the
// others); otherwise, or without the assembly, the rows are converted into
// scratch (at least n*kw floats) and transposed as packA transposes floats.
func packPairsRows(d []float32, w int, x []float32, ldx, r0, k0, kb, n int, scratch []float32) {
	kw := (kb + 1) / 2
	if n >= 8 {
		for i := 0; ; i += 8 {
			i = min(i, n-8)
			if !cvtTranspose8(d[i:], w, x[(r0+i)*ldx+k0:], ldx, kb) {
				break
			}
			if i+8 >= n {
				if n < w {
					for q := 0; q < kw; q++ {
						clear(d[q*w+n : q*w+w])
					}
				}
				return
			}
		}
	}
	for i := 0; i < n; i++ {
		cvtPairs(scratch[i*kw:(i+1)*kw], x[(r0+i)*ldx+k0:][:kb])
	}
	packA(d, false, scratch, kw, 0, 0, n, kw, w)
}

// toBF16 returns the bf16 nearest x (ties to even), as VCVTNE2PS2BF16
// converts: zeros and denormals become a zero of their sign, a NaN stays a
// NaN with its top payload bits and the quiet bit set, and a finite value
// that rounds past the largest bf16 becomes an infinity.
func toBF16(x float32) uint32 {
	u := math.Float32bits(x)
	switch {
	case u&0x7f800000 == 0:
		return u >> 16 & 0x8000
	case u&0x7fffffff > 0x7f800000:
		return u>>16 | 0x40
	}
	return (u + 0x7fff + u>>16&1) >> 16
}

// RoundBF16 returns x rounded to bf16 as the bf16 products round their
// operands, as a float32: what GemmBF16 multiplies in place of x.
func RoundBF16(x float32) float32 { return math.Float32frombits(toBF16(x) << 16) }

// pairBF16 returns the bits of the pair (lo, hi) as a float32 slot.
func pairBF16(lo, hi float32) float32 {
	return math.Float32frombits(toBF16(lo) | toBF16(hi)<<16)
}

// cvtPairsGo sets dst[q] to the pair (src[2q], src[2q+1]) for q <
// (len(src)+1)/2, the upper half of the last zero when len(src) is odd.
func cvtPairsGo(dst, src []float32) {
	n := len(src)
	dst = dst[:(n+1)/2]
	for q := 0; q < n/2; q++ {
		dst[q] = pairBF16(src[2*q], src[2*q+1])
	}
	if n%2 == 1 {
		dst[n/2] = pairBF16(src[n-1], 0)
	}
}

// cvtInterleavePanelGo is cvtInterleavePanel in Go.
func cvtInterleavePanelGo(dst []float32, ldd int, src []float32, lds, n, w, pairs int) {
	for q := 0; q < pairs; q++ {
		d := dst[q*ldd : q*ldd+w]
		x := src[2*q*lds:][:n]
		y := src[(2*q+1)*lds:][:n]
		for i := range x {
			d[i] = pairBF16(x[i], y[i])
		}
		clear(d[n:])
	}
}

// cvtInterleaveZero sets dst[i] to the pair (x[i], 0) for i < len(dst):
// the last pair of an odd k. It is one row per block, so Go is fast enough.
func cvtInterleaveZero(dst, x []float32) {
	x = x[:len(dst)]
	for i := range dst {
		dst[i] = math.Float32frombits(toBF16(x[i]))
	}
}

// ftzBelow is the magnitude below which VDPBF16PS flushes a result to
// zero: results that round (to 24 bits, unbounded exponent) to less than
// the smallest normal float32, 2^-126.
const ftzBelow = 0x1p-126 - 0x1p-151

// fmaBF16 returns acc + x*y, for x and y bf16 (their bits in the low 16 of
// each), as one FMA step of VDPBF16PS: rounded once to float32, flushed to
// a zero of its sign when tiny.
//
// The float64 arithmetic is exact where it matters: x*y has at most 16
// significant bits, so it is exact; the sum is exact unless the exponents
// of acc and x*y differ by more than 29, and then the smaller is below a
// sixteenth of half a float32 ulp of the larger (acc has 24 significant
// bits, x*y at most 16), too small for the float64 rounding to move the
// float32 result or the flush decision.
func fmaBF16(acc float32, x, y uint32) float32 {
	s := float64(acc) + float64(math.Float32frombits(x<<16))*float64(math.Float32frombits(y<<16))
	if math.Abs(s) < ftzBelow {
		return float32(math.Copysign(0, s))
	}
	return float32(s)
}

// dotBF16 returns acc plus the dot product of the bf16 pairs a and b as one
// lane of VDPBF16PS computes it: the upper (odd k) product first.
func dotBF16(acc float32, a, b uint32) float32 {
	return fmaBF16(fmaBF16(acc, a>>16, b>>16), a&0xffff, b&0xffff)
}

// goKernelBF16 is the portable 2x4 bf16 micro-kernel: VDPBF16PS emulated
// on panels of k pairs.
func goKernelBF16(k int, a, b, c *float32, ldc int, alpha, beta float32) {
	const mr, nr = 2, 4
	ap := unsafe.Slice((*uint32)(unsafe.Pointer(a)), k*mr)
	bp := unsafe.Slice((*uint32)(unsafe.Pointer(b)), k*nr)
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	for ; len(ap) >= mr && len(bp) >= nr; ap, bp = ap[mr:], bp[nr:] {
		b0, b1, b2, b3 := bp[0], bp[1], bp[2], bp[3]
		a0, a1 := ap[0], ap[1]
		c00 = dotBF16(c00, a0, b0)
		c01 = dotBF16(c01, a0, b1)
		c02 = dotBF16(c02, a0, b2)
		c03 = dotBF16(c03, a0, b3)
		c10 = dotBF16(c10, a1, b0)
		c11 = dotBF16(c11, a1, b1)
		c12 = dotBF16(c12, a1, b2)
		c13 = dotBF16(c13, a1, b3)
	}
	cs := unsafe.Slice(c, ldc+nr)
	goStore(cs[:nr:nr], alpha, beta, c00, c01, c02, c03)
	goStore(cs[ldc:ldc+nr:ldc+nr], alpha, beta, c10, c11, c12, c13)
}
