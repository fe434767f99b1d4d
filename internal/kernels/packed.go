package kernels

import "fmt"

// PackedB is the B operand of a GEMM packed once for the selected
// micro-kernel, for products that reuse the same B many times (a layer's
// weights at inference): [SgemmPacked] and [LinearPackedTo] read its
// panels directly and skip the packing Sgemm does on every call.
//
// A product with a PackedB gives the same bits as [Sgemm] with the matrix
// it was packed from: the k blocks, the micro-kernel and the order of every
// element's sum are the same. A PackedB made by [PackBBF16] holds bf16
// values, and its products give the bits of [GemmBF16].
//
// A PackedB is read-only after PackB or Repack and then safe for
// concurrent use by any number of products; Repack must not run
// concurrently with a product that reads it.
type PackedB struct {
	mk   *microKernel
	n, k int
	kc   int // k block (kBlock(mk, k))
	nc   int // column block, a multiple of mk.nr
	// data holds the panels of block (jc, pc) at
	// jc*words(k) + words(pc)*roundUp(nb, nr) (words: see microKernel),
	// laid out as packB (or packBBF16) writes them.
	data []float32
}

// PackB packs op(B), the k x n matrix b (transB false: stored k x n with row
// stride ldb) or bᵀ (transB true: b stored n x k), for [SgemmPacked]. For a
// dense layer's weights W stored [out, in] row-major, PackB(true, out, in,
// w, in) packs Wᵀ, the operand of y = x·Wᵀ. It allocates the packed copy
// (k x n rounded up to the micro-kernel's tile width). It panics on
// inconsistent shapes.
func PackB(transB bool, n, k int, b []float32, ldb int) *PackedB {
	if n < 0 || k < 0 {
		panic(fmt.Sprintf("kernels: PackB: negative dimension n=%d k=%d", n, k))
	}
	return packBFor(active, transB, n, k, b, ldb)
}

// packBFor is PackB for the micro-kernel mk (or its narrow kernel).
func packBFor(mk *microKernel, transB bool, n, k int, b []float32, ldb int) *PackedB {
	if mk.narrow != nil && n <= mk.narrow.nr {
		mk = mk.narrow
	}
	p := &PackedB{mk: mk, n: n, k: k, kc: kBlock(mk, k), nc: packedNC(mk, k)}
	p.data = make([]float32, mk.words(k)*roundUp(n, mk.nr))
	p.Repack(transB, b, ldb)
	return p
}

// packedL2 is the size in floats of the B block that a packed product keeps
// cache-resident while it sweeps the rows of A: half of the std machine's
// 1 MiB L2 per core.
const packedL2 = 128 << 10

// packedNC is the column block of a packed B of depth k: as wide as fits
// packedL2, a multiple of mk.nr, at most mk.nc. (Measured for the std first
// layer, 500x2064x208: about 5% faster than mk.nc's 2048 columns, whose
// block overflows the L2.) The block width does not change any result.
func packedNC(mk *microKernel, k int) int {
	kw := max(1, mk.words(kBlock(mk, k)))
	return min(mk.nc, max(mk.nr, packedL2/kw/mk.nr*mk.nr))
}

// Dims returns the shape of op(B): k rows (the product's depth) by n
// columns.
func (p *PackedB) Dims() (k, n int) { return p.k, p.n }

// BF16 reports whether p was packed by [PackBBF16]: its products then have
// bf16 operands and float32 sums.
func (p *PackedB) BF16() bool { return p.mk.bf16 }

// Repack packs op(B) again from b, a matrix of the shape p was made for
// (for instance after the weights it holds were updated), without
// allocating (in steady state, for a bf16 PackedB). It panics on
// inconsistent shapes.
func (p *PackedB) Repack(transB bool, b []float32, ldb int) {
	checkMat("B", transB, p.k, p.n, b, ldb)
	var ws *workspace
	if p.mk.bf16 {
		ws = getWorkspace(p.mk)
		defer putWorkspace(p.mk, ws)
	}
	for jc := 0; jc < p.n; jc += p.nc {
		nb := min(p.nc, p.n-jc)
		for pc := 0; pc < p.k; pc += p.kc {
			kb := min(p.kc, p.k-pc)
			if p.mk.bf16 {
				packBBF16(p.panel(jc, pc, nb), transB, b, ldb, pc, jc, kb, nb, p.mk.nr, ws.pair)
				continue
			}
			packB(p.panel(jc, pc, nb), transB, b, ldb, pc, jc, kb, nb, p.mk.nr)
		}
	}
}

// panel returns the packed block of columns jc..jc+nb and rows pc.. of
// op(B).
func (p *PackedB) panel(jc, pc, nb int) []float32 {
	return p.data[jc*p.mk.words(p.k)+p.mk.words(pc)*roundUp(nb, p.mk.nr):]
}

// SgemmPacked computes C = alpha * op(A) * B + beta * C like [Sgemm], with
// B packed by [PackB]: op(A) is m x k, B is k x n, C is m x n with row
// stride ldc. The result has the same bits as Sgemm's on the unpacked B.
// It runs on the calling goroutine, does not allocate in steady state, and
// is safe for concurrent use on disjoint C. It panics on inconsistent
// shapes.
func SgemmPacked(transA bool, m int, alpha float32, a []float32, lda int, pb *PackedB, beta float32, c []float32, ldc int) {
	checkPacked("SgemmPacked", transA, m, a, lda, pb, c, ldc)
	gemmPacked(epilogue{}, transA, m, alpha, a, lda, false, pb, beta, c, ldc)
}

// LinearPackedTo computes the dense layer y = act(x·B + bias) for rows
// examples, with B (in x out) packed by [PackB] — for weights W stored
// [out, in], PackB(true, out, in, w, in). x is the rows x in view (x, ldx),
// bias has out entries or is nil, y is the rows x out view (y, ldy) and is
// overwritten. The bias and activation are applied to each tile of y while
// it is in cache, after the tile's sum is complete, so y has the same bits
// as Sgemm followed by [AddBias] and [ReLU] (or [AddBiasReLU]). It runs on
// the calling goroutine, does not allocate in steady state, and is safe for
// concurrent use on disjoint y. It panics on inconsistent shapes.
func LinearPackedTo(act Activation, y []float32, ldy int, x []float32, ldx, rows int, w *PackedB, bias []float32) {
	checkPacked("LinearPackedTo", false, rows, x, ldx, w, y, ldy)
	if bias != nil && len(bias) < w.n {
		panic(fmt.Sprintf("kernels: LinearPackedTo: len(bias) = %d, want %d", len(bias), w.n))
	}
	if act > ActReLU {
		panic(fmt.Sprintf("kernels: LinearPackedTo: unknown activation %d", act))
	}
	gemmPacked(epilogue{bias: bias, act: act}, false, rows, 1, x, ldx, false, w, 0, y, ldy)
}

// Epilogue is what [LinearPackedEpilogueTo] applies to each element
// y[i, j] of its product once the element's sum is complete, in this
// order: y += Bias[j] (when Bias is not nil), y += Bias2[j] (when Bias2 is
// not nil), then y = max(y, 0) when ReLUFrom <= j < ReLUTo. Each step is
// rounded, so the result has the same bits as the product followed by
// [AddBias] with Bias, then AddBias or [AddBiasReLU] with Bias2 on the
// matching columns.
//
// With Pairs not nil, the columns [PairsFrom, PairsTo) of y are also
// stored, rounded to bf16 as a bf16 product rounds its operands
// ([RoundBF16]), as pairs in the layout [LinearPackedPairsTo] reads: pair
// p of row i, columns PairsFrom+2p and PairsFrom+2p+1 (the even one in the
// lower 16 bits, the upper half zero past PairsTo), at Pairs[i*LdPairs+p].
// The next layer can then read them without converting and packing y
// again. PairsFrom must be even.
type Epilogue struct {
	Bias, Bias2      []float32
	ReLUFrom, ReLUTo int

	Pairs              []float32
	LdPairs            int
	PairsFrom, PairsTo int
}

// LinearPackedEpilogueTo computes y = x·B followed by ep, for rows
// examples: B (in x out) is packed by [PackB], x is the rows x in view
// (x, ldx), y the rows x out view (y, ldy), overwritten. It is
// [LinearPackedTo] with two bias vectors and a ReLU on a range of columns:
// a first layer whose output columns feed both ReLU experts and linear
// gates, with a per-request share added first. It runs on the calling
// goroutine, does not allocate in steady state, and is safe for concurrent
// use on disjoint y. It panics on inconsistent shapes or a bias shorter
// than out.
func LinearPackedEpilogueTo(y []float32, ldy int, x []float32, ldx, rows int, w *PackedB, ep Epilogue) {
	checkPacked("LinearPackedEpilogueTo", false, rows, x, ldx, w, y, ldy)
	for _, b := range [][]float32{ep.Bias, ep.Bias2} {
		if b != nil && len(b) < w.n {
			panic(fmt.Sprintf("kernels: LinearPackedEpilogueTo: len(bias) = %d, want %d", len(b), w.n))
		}
	}
	e := epilogue{bias: ep.Bias, bias2: ep.Bias2, reluFrom: ep.ReLUFrom, reluTo: ep.ReLUTo}
	if ep.Pairs != nil {
		lo, hi := ep.PairsFrom, ep.PairsTo
		if lo < 0 || lo%2 != 0 || hi < lo || hi > w.n {
			panic(fmt.Sprintf("kernels: LinearPackedEpilogueTo: pairs of columns [%d, %d), want an even start in [0, %d]", lo, hi, w.n))
		}
		checkMat("Pairs", false, rows, (hi-lo+1)/2, ep.Pairs, ep.LdPairs)
		e.pairs, e.ldp, e.pairsFrom, e.pairsTo = ep.Pairs, ep.LdPairs, lo, hi
	}
	gemmPacked(e, false, rows, 1, x, ldx, false, w, 0, y, ldy)
}

// LinearPackedPairsTo is [LinearPackedTo] with x given as bf16 pairs, as
// an [Epilogue] with Pairs stores them: pair q of row i, the values of
// columns 2q and 2q+1, at x[i*ldx+q], for the in = k columns of the
// product ((k+1)/2 pairs a row). w must be packed by [PackBBF16]. y has
// the bits LinearPackedTo gives on the float32 x the pairs were rounded
// from; the pairs are read where they are, without the conversion and
// packing of x. It does not allocate in steady state and panics on
// inconsistent shapes.
func LinearPackedPairsTo(act Activation, y []float32, ldy int, x []float32, ldx, rows int, w *PackedB, bias []float32) {
	if w == nil || !w.mk.bf16 {
		panic("kernels: LinearPackedPairsTo: w is not packed for bf16 products")
	}
	if rows < 0 {
		panic(fmt.Sprintf("kernels: LinearPackedPairsTo: negative dimension m=%d", rows))
	}
	checkMat("A", false, rows, (w.k+1)/2, x, ldx)
	checkMat("C", false, rows, w.n, y, ldy)
	if bias != nil && len(bias) < w.n {
		panic(fmt.Sprintf("kernels: LinearPackedPairsTo: len(bias) = %d, want %d", len(bias), w.n))
	}
	if act > ActReLU {
		panic(fmt.Sprintf("kernels: LinearPackedPairsTo: unknown activation %d", act))
	}
	gemmPacked(epilogue{bias: bias, act: act}, false, rows, 1, x, ldx, true, w, 0, y, ldy)
}

func checkPacked(fn string, transA bool, m int, a []float32, lda int, pb *PackedB, c []float32, ldc int) {
	if pb == nil {
		panic(fmt.Sprintf("kernels: %s: nil PackedB", fn))
	}
	if m < 0 {
		panic(fmt.Sprintf("kernels: %s: negative dimension m=%d", fn, m))
	}
	checkMat("A", transA, m, pb.k, a, lda)
	checkMat("C", false, m, pb.n, c, ldc)
}

// gemmPacked is gemmWith for a packed B, with A as bf16 pairs when
// aPairs is set (gemmBlocked); the arguments are checked.
func gemmPacked(ep epilogue, transA bool, m int, alpha float32, a []float32, lda int, aPairs bool, pb *PackedB, beta float32, c []float32, ldc int) {
	n, k := pb.n, pb.k
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		scaleC(m, n, beta, c, ldc)
		if !ep.none() {
			ep.apply(c, ldc, m, n, 0, 0)
		}
		return
	}
	mk := pb.mk
	if m == 1 && mk.row1 != nil {
		// A wide kernel would compute mr-1 rows of padding.
		mk = mk.row1
	}
	ws := getWorkspace(mk)
	gemmBlocked(mk, ws, ep, transA, false, m, n, k, alpha, a, lda, aPairs, nil, 0, pb, beta, c, ldc)
	putWorkspace(mk, ws)
}
