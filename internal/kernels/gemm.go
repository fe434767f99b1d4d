// Package kernels holds the float32 numeric kernels of onestone's models:
// GEMM (with a bf16 variant), fused bias and activation, softmax, embedding
// gather and scatter-add.
//
// The GEMM is blocked and packed in the manner of GotoBLAS/BLIS: op(B) is
// packed in kc x nc blocks that stay in the L2 cache, op(A) in mc x kc
// blocks whose mr-row micro-panels stay in L1, and a register-tiled
// micro-kernel computes mr x nr tiles of C. The micro-kernel is Go assembly
// (AVX-512 or AVX2+FMA) chosen at run time with golang.org/x/sys/cpu, or a
// portable Go kernel when neither is available or the package is built with
// the noasm tag. [Impl] names the kernel in use.
//
// For inference, where the same weights multiply every request, [PackB]
// packs op(B) once and [SgemmPacked], [LinearPackedTo] and
// [LinearPackedEpilogueTo] reuse it; products of a single row then run on
// a one-row variant of the micro-kernel. A packed product gives the same
// bits as Sgemm.
//
// [GemmBF16], [GemmBF16Parallel] and [PackBBF16] are the same products in
// mixed precision: operands rounded to bf16 (nearest even) as they are
// packed, products summed in float32 by AVX512_BF16's VDPBF16PS, twice the
// multiply-adds per instruction of a float32 FMA. [NativeBF16] tells
// whether the CPU has it; without it an exact Go emulation gives the same
// bits, slowly. See [GemmBF16] for the rounding.
//
// [AdamUpdate] is the dense Adam step in one pass, and [PrefetchRows]
// brings an embedding table's scattered rows into the caches ahead of a
// sparse update.
//
// [MeasureCeilings] and [MeasureCopy] measure the machine's arithmetic
// ceiling and copy bandwidth, to judge the kernels' figures against in the
// same run.
//
// All functions are safe for concurrent use as long as the destinations
// they write do not overlap. Kernels panic on inconsistent shapes or slices
// too short for the shapes given, as gonum's BLAS does; callers at a package
// boundary turn shape bugs into errors before calling.
package kernels

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// microKernel is one register-tiled kernel and the block sizes tuned for it.
// fn computes, for an mr x nr tile,
//
//	C[i*ldc+j] = alpha * sum_p a[p*mr+i]*b[p*nr+j] + beta*C[i*ldc+j]
//
// reading C only when beta != 0; a and b are packed panels of k steps.
type microKernel struct {
	name       string
	mr, nr     int
	mc, kc, nc int // block sizes: mc multiple of mr, nc multiple of nr, kc the largest k block
	fn         func(k int, a, b, c *float32, ldc int, alpha, beta float32)
	// fnEp, if set, is fn with beta 0 and an epilogue applied to the
	// tile before it is stored (see tileEpilogue): C = alpha*acc, plus
	// first[j] when first is not nil, plus last[j], then max(0, C) on the
	// columns whose bit of relu is set. It gives the bits of fn followed
	// by epilogue.apply, without a second pass over C. Kernels with fnEp
	// are 32 columns wide (relu's bits).
	fnEp func(k int, a, b, c *float32, ldc int, alpha float32, first, last *float32, relu uint32)
	// fnEpPairs, if set, is fnEp that also stores the tile's bf16 pairs
	// (row i's 16 at pairs[i*ldp:]), as epilogue.storePairs would.
	fnEpPairs func(k int, a, b, c *float32, ldc int, alpha float32, first, last *float32, relu uint32, pairs *float32, ldp int)
	// fnRowA, if set, is fnEp of a bf16 kernel reading its mr rows of A
	// in place, bf16 pairs row-major (row i at a[i*lda:]), rather than
	// from a packed panel: the same pairs in the same order.
	fnRowA func(k int, a *float32, lda int, b, c *float32, ldc int, alpha float32, first, last *float32, relu uint32)
	// narrow, if set, is used instead for products of at most narrow.nr
	// columns, where this kernel's wide tile would mostly compute padding.
	narrow *microKernel
	// row1, if set, is a one-row kernel reading the same B panels (same nr
	// and kc) with the same arithmetic, used by the packed products of a
	// single row.
	row1 *microKernel
	// bf16 marks a kernel on bf16 pairs (bf16.go): each 32-bit slot of its
	// packed panels holds the bf16 values of two consecutive k, and fn's k
	// counts those pairs.
	bf16 bool
	// emulated marks the portable bf16 kernel, which callers choosing a
	// precision for speed should not pick (NativeBF16).
	emulated bool
	// ceiling names the Ceiling (MeasureCeilings) of the instruction the
	// kernel runs on, "" for the portable ones.
	ceiling string
}

// words is the number of 32-bit slots a packed panel row of k steps of
// depth takes: k, or (k+1)/2 bf16 pairs.
func (mk *microKernel) words(k int) int {
	if mk.bf16 {
		return (k + 1) / 2
	}
	return k
}

// active is the micro-kernel selected for this machine (see selectKernel in
// the per-architecture files).
var active = selectKernel()

// Impl names the GEMM micro-kernel selected at start-up: "avx512", "avx2" or
// "go" (the portable fallback, forced by the noasm build tag).
func Impl() string { return active.name }

// RowBlock is the number of rows of A the selected micro-kernel computes at
// once (14 for AVX-512, 6 for AVX2). A product whose row count is a
// multiple of it wastes no part of a tile; callers that cut a large product
// into passes use multiples of it.
func RowBlock() int { return active.mr }

// workspace is the per-call packing scratch. It is sized for one
// microKernel's block sizes.
type workspace struct {
	a, b []float32
	tmp  []float32 // one mr x nr edge tile
	pair []float32 // bf16 kernels: max(mr, nr) rows of kc/2 pairs (packABF16, packBBF16)
}

// wsLists keeps each micro-kernel's idle workspaces between products
// (*microKernel -> *wsList). Not a sync.Pool: the garbage collector
// empties those, and an AVX-512 workspace is over 4 MB (the packed B
// panel), so every collection cost the next products a 4 MB allocation,
// its clearing and page faults: a latency spike in scoring, and more
// garbage, hence more collections. A list keeps up to maxIdleWorkspaces
// (more than the products a process runs at once on its cores) for
// good.
var wsLists sync.Map

type wsList struct {
	mu   sync.Mutex
	idle []*workspace
}

// maxIdleWorkspaces bounds each micro-kernel's idle workspaces.
var maxIdleWorkspaces = 2*runtime.GOMAXPROCS(0) + 2

func getWorkspace(mk *microKernel) *workspace {
	l, ok := wsLists.Load(mk)
	if !ok {
		l, _ = wsLists.LoadOrStore(mk, &wsList{})
	}
	wl := l.(*wsList)
	wl.mu.Lock()
	if n := len(wl.idle); n > 0 {
		ws := wl.idle[n-1]
		wl.idle[n-1] = nil
		wl.idle = wl.idle[:n-1]
		wl.mu.Unlock()
		return ws
	}
	wl.mu.Unlock()
	kw := mk.words(mk.kc)
	ws := &workspace{
		a:   make([]float32, mk.mc*kw),
		b:   make([]float32, kw*roundUp(ncMax(mk), mk.nr)),
		tmp: make([]float32, mk.mr*mk.nr),
	}
	if mk.bf16 {
		ws.pair = make([]float32, max(mk.mr, mk.nr)*kw)
	}
	return ws
}

func putWorkspace(mk *microKernel, ws *workspace) {
	l, _ := wsLists.Load(mk)
	wl := l.(*wsList)
	wl.mu.Lock()
	if len(wl.idle) < maxIdleWorkspaces {
		wl.idle = append(wl.idle, ws)
	}
	wl.mu.Unlock()
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

// Sgemm computes C = alpha * op(A) * op(B) + beta * C for row-major matrices,
// where op(X) is X or its transpose. op(A) is m x k, op(B) is k x n, C is
// m x n; lda, ldb and ldc are the row strides of A, B and C as stored. When
// beta is zero C is overwritten and its previous contents (even NaN) are not
// read. It runs on the calling goroutine; see [SgemmParallel] to use several.
//
// Each element of C is computed the same way whatever the shape around it:
// the k products are accumulated in order with fused multiply-adds (split
// into the same k blocks for a given k), then alpha*sum and beta*C are each
// rounded and added. So a row computed alone, or in any sub-block, gives
// the same bits as in the whole product, on a given machine and build.
// It does not allocate in steady state (packing buffers come from a pool).
// It is safe for concurrent use on disjoint C. It panics on inconsistent
// shapes.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkGemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	gemmWith(active, epilogue{}, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// checkGemm panics unless the slices hold the matrices the shapes describe.
// The assembly kernels do no bounds checks, so this is what keeps them in
// bounds.
func checkGemm(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("kernels: Sgemm: negative dimension m=%d n=%d k=%d", m, n, k))
	}
	checkMat("A", transA, m, k, a, lda)
	checkMat("B", transB, k, n, b, ldb)
	checkMat("C", false, m, n, c, ldc)
}

// checkMat checks a matrix whose op() is rows x cols.
func checkMat(name string, trans bool, rows, cols int, x []float32, ld int) {
	sr, sc := rows, cols
	if trans {
		sr, sc = cols, rows
	}
	if ld < max(1, sc) {
		panic(fmt.Sprintf("kernels: Sgemm: ld%s = %d, want >= %d (%s stored %dx%d)", name, ld, max(1, sc), name, sr, sc))
	}
	if sr > 0 && sc > 0 && len(x) < (sr-1)*ld+sc {
		panic(fmt.Sprintf("kernels: Sgemm: len(%s) = %d, want >= %d (%s stored %dx%d, ld %d)", name, len(x), (sr-1)*ld+sc, name, sr, sc, ld))
	}
}

// epilogue is what a fused GEMM applies to each finished strip of C, in
// this order: add bias[j] to column j (when bias is not nil), add bias2[j]
// (when bias2 is not nil), then the activation act on every column and
// ReLU on columns [reluFrom, reluTo). With mask set (and nothing else),
// it is instead the backward of a ReLU whose output is the view (mask,
// ldm) of C's shape: element (i, j) of C is zeroed where mask's (i, j) is
// not positive.
//
// With pairs set, the columns [pairsFrom, pairsTo) of the result are then
// also stored rounded to bf16 pairs (cvtPairs), row-major: pair p of row
// i, columns pairsFrom+2p and the next, at pairs[i*ldp+p], the next
// layer's operand for a bf16 product that reads them in place
// (LinearPackedPairsTo). pairsFrom is even.
type epilogue struct {
	bias, bias2      []float32
	act              Activation
	reluFrom, reluTo int
	mask             []float32
	ldm              int
	pairs            []float32
	ldp              int
	pairsFrom        int
	pairsTo          int
}

// apply runs the epilogue on the rows x cols block of C at c (stride ldc)
// whose first element is element (i0, j0) of the product.
func (ep epilogue) apply(c []float32, ldc, rows, cols, i0, j0 int) {
	ep.applyValues(c, ldc, rows, cols, i0, j0)
	ep.storePairs(c, ldc, rows, cols, i0, j0)
}

// storePairs stores the bf16 pairs of the block's columns in [pairsFrom,
// pairsTo) (see epilogue), if any. The block starts at an even distance
// from pairsFrom, as the kernels' tiles and column blocks do.
func (ep epilogue) storePairs(c []float32, ldc, rows, cols, i0, j0 int) {
	if ep.pairs == nil {
		return
	}
	lo, hi := max(ep.pairsFrom, j0), min(ep.pairsTo, j0+cols)
	if lo >= hi {
		return
	}
	q := (lo - ep.pairsFrom) / 2
	for i := 0; i < rows; i++ {
		cvtPairs(ep.pairs[(i0+i)*ep.ldp+q:], c[i*ldc+lo-j0:i*ldc+hi-j0])
	}
}

// applyValues is apply without the pairs.
func (ep epilogue) applyValues(c []float32, ldc, rows, cols, i0, j0 int) {
	if ep.mask != nil {
		for i := 0; i < rows; i++ {
			reluMaskRow(c[i*ldc:i*ldc+cols], ep.mask[(i0+i)*ep.ldm+j0:])
		}
		return
	}
	if ep.bias2 != nil || ep.reluFrom < ep.reluTo {
		ep.applyRange(c, ldc, rows, cols, j0)
		return
	}
	for i := 0; i < rows; i++ {
		row := c[i*ldc : i*ldc+cols]
		switch {
		case ep.bias != nil && ep.act == ActReLU:
			addReLURow(row, ep.bias[j0:j0+cols])
		case ep.bias != nil:
			addRow(row, ep.bias[j0:j0+cols])
		case ep.act == ActReLU:
			for j, v := range row {
				row[j] = max(v, 0)
			}
		}
	}
}

// applyRange is apply for an epilogue with bias2 or a ReLU column range
// (act is ActNone): the last addition and the ReLU are fused as in
// AddBiasReLU.
func (ep epilogue) applyRange(c []float32, ldc, rows, cols, j0 int) {
	lo := min(max(ep.reluFrom-j0, 0), cols)
	hi := min(max(ep.reluTo-j0, lo), cols)
	first, last := ep.bias, ep.bias2
	if last == nil {
		first, last = nil, first
	}
	for i := 0; i < rows; i++ {
		row := c[i*ldc : i*ldc+cols]
		if first != nil {
			addRow(row, first[j0:j0+cols])
		}
		if last == nil {
			for j, v := range row[lo:hi] {
				row[lo+j] = max(v, 0)
			}
			continue
		}
		l := last[j0 : j0+cols]
		addRow(row[:lo], l[:lo])
		addReLURow(row[lo:hi], l[lo:hi])
		addRow(row[hi:], l[hi:])
	}
}

// tileEpilogue is an epilogue in the form a micro-kernel's fnEp applies:
// an optional first bias, a last bias, and ReLU on the columns
// [reluFrom, reluTo) (every column when all is set).
type tileEpilogue struct {
	first, last      []float32
	all              bool
	reluFrom, reluTo int
}

// fused returns ep as a tileEpilogue, and false for an epilogue fnEp
// cannot apply (no bias, or the ReLU backward's mask). The steps are
// those of apply: applyRange's two biases and ReLU range, or the bias
// with or without ReLU.
func (ep epilogue) fused() (tileEpilogue, bool) {
	switch {
	case ep.mask != nil:
		return tileEpilogue{}, false
	case ep.bias2 != nil:
		return tileEpilogue{first: ep.bias, last: ep.bias2, reluFrom: ep.reluFrom, reluTo: ep.reluTo}, true
	case ep.bias == nil:
		return tileEpilogue{}, false
	case ep.reluFrom < ep.reluTo:
		return tileEpilogue{last: ep.bias, reluFrom: ep.reluFrom, reluTo: ep.reluTo}, true
	}
	return tileEpilogue{last: ep.bias, all: ep.act == ActReLU}, true
}

// tile returns fnEp's arguments for the tile of 32 columns from column j0.
func (te *tileEpilogue) tile(j0 int) (first, last *float32, relu uint32) {
	if te.first != nil {
		_ = te.first[j0+31]
		first = &te.first[j0]
	}
	_ = te.last[j0+31]
	last = &te.last[j0]
	if te.all {
		return first, last, ^uint32(0)
	}
	lo := min(max(te.reluFrom-j0, 0), 32)
	hi := min(max(te.reluTo-j0, lo), 32)
	return first, last, uint32(uint64(1)<<hi - uint64(1)<<lo)
}

func (ep epilogue) none() bool {
	return ep.bias == nil && ep.bias2 == nil && ep.act == ActNone && ep.reluFrom >= ep.reluTo && ep.mask == nil && ep.pairs == nil
}

// gemmWith is Sgemm with a given micro-kernel and epilogue; the arguments
// are checked.
func gemmWith(mk *microKernel, ep epilogue, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
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
	if mk.narrow != nil && n <= mk.narrow.nr {
		mk = mk.narrow
	}
	ws := getWorkspace(mk)
	gemmBlocked(mk, ws, ep, transA, transB, m, n, k, alpha, a, lda, false, b, ldb, nil, beta, c, ldc)
	putWorkspace(mk, ws)
}

// kBlock is the k block gemmBlocked uses for a product of depth k: k split
// into equal blocks of at most mk.kc, so that a k a little over mk.kc does
// not leave a thin last block. All blocks but the last are a multiple of 8
// (so bf16 pairs never straddle two blocks).
func kBlock(mk *microKernel, k int) int {
	if k <= mk.kc {
		return k
	}
	blocks := (k + mk.kc - 1) / mk.kc
	return min(roundUp((k+blocks-1)/blocks, 8), mk.kc)
}

// ncMax is the widest n block gemmBlocked packs: mk.nc, or up to an
// eighth more for a product that would otherwise leave a thin second block
// (the std first layer's 2064 columns against nc 2048), which would pack
// all of A again for a few columns and compute them in padded edge tiles.
// The blocks change no value: each element's arithmetic does not depend
// on them.
func ncMax(mk *microKernel) int { return mk.nc + mk.nc/8 }

// scaleC sets C = beta*C, overwriting with zeros when beta == 0.
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	if beta == 1 {
		return
	}
	for i := 0; i < m; i++ {
		ci := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(ci)
			continue
		}
		for j := range ci {
			ci[j] *= beta
		}
	}
}

// gemmBlocked is the GotoBLAS loop nest. Shapes are non-empty and checked.
// With pb not nil, op(B) is read from pb (packed for mk) instead of being
// packed from b; the blocks and the arithmetic are otherwise the same.
// With aPairs (a bf16 kernel, transA false), A holds bf16 pairs row-major
// (pair q of row i, k 2q and 2q+1, at a[i*lda+q]) rather than float32:
// its panels are moved, not converted, or read in place (fnRowA).
func gemmBlocked(mk *microKernel, ws *workspace, ep epilogue, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, aPairs bool, b []float32, ldb int, pb *PackedB, beta float32, c []float32, ldc int) {
	mr, nr := mk.mr, mk.nr
	tmp := ws.tmp
	kc, nc := kBlock(mk, k), mk.nc
	if n > nc && n <= ncMax(mk) {
		nc = n // one block rather than a sliver: A is packed once
	}
	if pb != nil {
		kc, nc = pb.kc, pb.nc
	}
	for jc := 0; jc < n; jc += nc {
		nb := min(nc, n-jc)
		for pc := 0; pc < k; pc += kc {
			kb := min(kc, k-pc)
			kw := mk.words(kb) // the kernel's steps: kb, or kb/2 bf16 pairs
			bpk := ws.b
			switch {
			case pb != nil:
				bpk = pb.panel(jc, pc, nb)
			case mk.bf16:
				packBBF16(bpk, transB, b, ldb, pc, jc, kb, nb, nr, ws.pair)
			default:
				packB(bpk, transB, b, ldb, pc, jc, kb, nb, nr)
			}
			bet := beta
			if pc > 0 {
				bet = 1
			}
			last := pc+kb >= k && !ep.none()
			// fuse: full tiles apply the epilogue as they are stored,
			// edge tiles after their merge, rather than the strips.
			var te tileEpilogue
			fuse := last && bet == 0 && mk.fnEp != nil
			if fuse {
				te, fuse = ep.fused()
			}
			// inPlace: full row tiles read A's pairs where they are.
			inPlace := aPairs && fuse && mk.fnRowA != nil
			for ic := 0; ic < m; ic += mk.mc {
				mb := min(mk.mc, m-ic)
				switch {
				case inPlace:
					// Panels are moved below, for the tiles that need one.
				case aPairs:
					packA(ws.a, false, a, lda, ic, pc/2, mb, kw, mr)
				case mk.bf16:
					packABF16(ws.a, transA, a, lda, ic, pc, mb, kb, mr, ws.pair)
				default:
					packA(ws.a, transA, a, lda, ic, pc, mb, kb, mr)
				}
				for ir := 0; ir < mb; ir += mr {
					ap := &ws.a[ir*kw]
					rows := min(mr, mb-ir)
					crow := (ic + ir) * ldc
					if inPlace && (rows < mr || nb%nr != 0) {
						packA(ws.a[ir*kw:], false, a, lda, ic+ir, pc/2, rows, kw, mr)
					}
					for jr := 0; jr < nb; jr += nr {
						bp := &bpk[jr*kw]
						cols := min(nr, nb-jr)
						if rows == mr && cols == nr {
							if inPlace {
								first, lastB, relu := te.tile(jc + jr)
								mk.fnRowA(kw, &a[(ic+ir)*lda+pc/2], lda, bp, &c[crow+jc+jr], ldc, alpha, first, lastB, relu)
								ep.storePairs(c[crow+jc+jr:], ldc, rows, cols, ic+ir, jc+jr)
								continue
							}
							if fuse {
								first, lastB, relu := te.tile(jc + jr)
								if j0 := jc + jr; ep.pairs != nil && mk.fnEpPairs != nil && j0 >= ep.pairsFrom && j0+nr <= ep.pairsTo {
									mk.fnEpPairs(kw, ap, bp, &c[crow+j0], ldc, alpha, first, lastB, relu,
										&ep.pairs[(ic+ir)*ep.ldp+(j0-ep.pairsFrom)/2], ep.ldp)
									continue
								}
								mk.fnEp(kw, ap, bp, &c[crow+jc+jr], ldc, alpha, first, lastB, relu)
								ep.storePairs(c[crow+jc+jr:], ldc, rows, cols, ic+ir, jc+jr)
								continue
							}
							mk.fn(kw, ap, bp, &c[crow+jc+jr], ldc, alpha, bet)
							continue
						}
						mk.fn(kw, ap, bp, &tmp[0], nr, alpha, 0)
						for i := 0; i < rows; i++ {
							ci := c[crow+i*ldc+jc+jr : crow+i*ldc+jc+jr+cols]
							ti := tmp[i*nr : i*nr+cols]
							if bet == 0 {
								copy(ci, ti)
								continue
							}
							for j, t := range ti {
								// The conversion forbids fusing into an FMA:
								// the assembly kernels round both products.
								ci[j] = t + float32(bet*ci[j])
							}
						}
						if fuse {
							ep.apply(c[crow+jc+jr:], ldc, rows, cols, ic+ir, jc+jr)
						}
					}
					// The epilogue runs on the strip of rows x nb just
					// finished, still in cache, in long rows: each element
					// gets the same operations as tile by tile.
					if last && !fuse {
						ep.apply(c[crow+jc:], ldc, rows, nb, ic+ir, jc)
					}
				}
			}
		}
	}
}

// packA packs rows i0..i0+mb, columns p0..p0+kb of op(A) into dst as
// micro-panels of mr rows: panel s holds element (s*mr+i, p) at
// dst[s*mr*kb + p*mr + i]. Rows past mb are zero.
func packA(dst []float32, trans bool, a []float32, lda, i0, p0, mb, kb, mr int) {
	if trans {
		// op(A)(i, p) = a[p*lda+i]: rows of the panels are contiguous.
		packPanels(dst, mr, kb, a[p0*lda+i0:], lda, mb, kb)
		return
	}
	for s := 0; s < mb; s += mr {
		rs := min(mr, mb-s)
		d := dst[s*kb : s*kb+mr*kb]
		// op(A)(i, p) = a[i*lda+p]: a transpose of a rs x kb block.
		i := 0
		for ; i+8 <= rs; i += 8 {
			packA8(d, mr, a[(i0+s+i)*lda+p0:], lda, kb, i)
		}
		if i < rs && rs >= 8 && hasTranspose8 {
			// The last rs-i rows: an 8-row block ending at rs, which
			// rewrites a few rows with the same values rather than take
			// the scalar loops below.
			packA8(d, mr, a[(i0+s+rs-8)*lda+p0:], lda, kb, rs-8)
			i = rs
		}
		for ; i+4 <= rs; i += 4 {
			r0 := a[(i0+s+i)*lda+p0 : (i0+s+i)*lda+p0+kb]
			r1 := a[(i0+s+i+1)*lda+p0 : (i0+s+i+1)*lda+p0+kb]
			r2 := a[(i0+s+i+2)*lda+p0 : (i0+s+i+2)*lda+p0+kb]
			r3 := a[(i0+s+i+3)*lda+p0 : (i0+s+i+3)*lda+p0+kb]
			for p := range r0 {
				dp := d[p*mr+i : p*mr+i+4]
				dp[0], dp[1], dp[2], dp[3] = r0[p], r1[p], r2[p], r3[p]
			}
		}
		for ; i < rs; i++ {
			r := a[(i0+s+i)*lda+p0 : (i0+s+i)*lda+p0+kb]
			for p, v := range r {
				d[p*mr+i] = v
			}
		}
		if rs < mr {
			for p := 0; p < kb; p++ {
				clear(d[p*mr+rs : p*mr+mr])
			}
		}
	}
}

// packPanelsGo is packPanels without assembly.
func packPanelsGo(dst []float32, pad, kb int, src []float32, lds, w, rows int) {
	for s := 0; s < w; s += pad {
		cs := min(pad, w-s)
		d := dst[s*kb:]
		for r := 0; r < rows; r++ {
			dr := d[r*pad : r*pad+pad]
			copy(dr, src[r*lds+s:r*lds+s+cs])
			clear(dr[cs:])
		}
	}
}

// packA8 writes rows i..i+8 of an A micro-panel (src: those rows, stride
// lda, kb columns) into the panel d of mr rows.
func packA8(d []float32, mr int, src []float32, lda, kb, i int) {
	q := transpose8(d[i:], mr, src, lda, kb)
	for r := 0; r < 8 && q < kb; r++ {
		for p, v := range src[r*lda+q : r*lda+kb] {
			d[(q+p)*mr+i+r] = v
		}
	}
}

// packB packs rows p0..p0+kb, columns j0..j0+nb of op(B) into dst as
// micro-panels of nr columns: panel s holds element (p, s*nr+j) at
// dst[s*nr*kb + p*nr + j]. Columns past nb are zero.
func packB(dst []float32, trans bool, b []float32, ldb, p0, j0, kb, nb, nr int) {
	if !trans {
		// op(B)(p, j) = b[p*ldb+j]: rows of the panels are contiguous.
		packPanels(dst, nr, kb, b[p0*ldb+j0:], ldb, nb, kb)
		return
	}
	for s := 0; s < nb; s += nr {
		cs := min(nr, nb-s)
		d := dst[s*kb : s*kb+nr*kb]
		// op(B)(p, j) = b[j*ldb+p]: a transpose of a cs x kb block.
		j := 0
		for ; j+8 <= cs; j += 8 {
			src := b[(j0+s+j)*ldb+p0:]
			q := transpose8(d[j:], nr, src, ldb, kb)
			for r := 0; r < 8 && q < kb; r++ {
				for p, v := range src[r*ldb+q : r*ldb+kb] {
					d[(q+p)*nr+j+r] = v
				}
			}
		}
		for ; j+4 <= cs; j += 4 {
			r0 := b[(j0+s+j)*ldb+p0 : (j0+s+j)*ldb+p0+kb]
			r1 := b[(j0+s+j+1)*ldb+p0 : (j0+s+j+1)*ldb+p0+kb]
			r2 := b[(j0+s+j+2)*ldb+p0 : (j0+s+j+2)*ldb+p0+kb]
			r3 := b[(j0+s+j+3)*ldb+p0 : (j0+s+j+3)*ldb+p0+kb]
			for p := range r0 {
				dp := d[p*nr+j : p*nr+j+4]
				dp[0], dp[1], dp[2], dp[3] = r0[p], r1[p], r2[p], r3[p]
			}
		}
		for ; j < cs; j++ {
			r := b[(j0+s+j)*ldb+p0 : (j0+s+j)*ldb+p0+kb]
			for p, v := range r {
				d[p*nr+j] = v
			}
		}
		if cs < nr {
			for p := 0; p < kb; p++ {
				clear(d[p*nr+cs : p*nr+nr])
			}
		}
	}
}

// goKernel is the portable 2x4 micro-kernel. (A bigger tile makes the Go
// compiler spill accumulators to the stack.)
func goKernel(k int, a, b, c *float32, ldc int, alpha, beta float32) {
	const mr, nr = 2, 4
	ap := unsafe.Slice(a, k*mr)
	bp := unsafe.Slice(b, k*nr)
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	for ; len(ap) >= mr && len(bp) >= nr; ap, bp = ap[mr:], bp[nr:] {
		b0, b1, b2, b3 := bp[0], bp[1], bp[2], bp[3]
		a0, a1 := ap[0], ap[1]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
	}
	cs := unsafe.Slice(c, ldc+nr)
	goStore(cs[:nr:nr], alpha, beta, c00, c01, c02, c03)
	goStore(cs[ldc:ldc+nr:ldc+nr], alpha, beta, c10, c11, c12, c13)
}

// goStore sets row = alpha*x + beta*row (row not read when beta == 0),
// rounding both products as the assembly kernels do.
func goStore(row []float32, alpha, beta, x0, x1, x2, x3 float32) {
	row = row[:4:4]
	if beta == 0 {
		row[0], row[1], row[2], row[3] = alpha*x0, alpha*x1, alpha*x2, alpha*x3
		return
	}
	row[0] = float32(alpha*x0) + float32(beta*row[0])
	row[1] = float32(alpha*x1) + float32(beta*row[1])
	row[2] = float32(alpha*x2) + float32(beta*row[2])
	row[3] = float32(alpha*x3) + float32(beta*row[3])
}

// goMicroKernel is the portable fallback.
var goMicroKernel = &microKernel{name: "go", mr: 2, nr: 4, mc: 64, kc: 256, nc: 512, fn: goKernel}
