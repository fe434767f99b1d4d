package mmoe

import (
	"math"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/kernels"
)

// Split scores many candidates against one context cheaply. The first layer
// of every expert and gate is linear in x, so for x = (context columns,
// candidate columns) it splits as W·x = W_ctx·x_ctx + W_cand·x_cand: a Split
// computes the context share once per request (one row) and multiplies only
// the candidate columns per candidate. Which columns are which follows the
// Side of each sparse and dense field in the layout.
//
// A Split keeps inference copies of the model's dense weights, packed for
// the GEMM kernel once (kernels.PackB) rather than on every product: the
// first layer's context and candidate column blocks, and every later layer
// (experts' deeper layers, later levels, towers, heads). They are made by
// NewSplit and re-read by Refresh; call Refresh after the model's weights
// change (a Split of a model being trained is stale). The copies cost about
// the size of the dense parameters again (embeddings are read from the
// model). Forward and ForwardRows are safe for concurrent use with separate
// Workspaces made by the Split's NewWorkspace; Refresh is not.
type Split struct {
	m       *Model
	prec    kernels.Precision
	cols    []int     // x columns of the candidate side, ascending
	ctxCols []int     // x columns of the context side, ascending
	wCand   []float32 // level-0 fused weight restricted to cols: [out, inK]
	wCtx    []float32 // level-0 fused weight restricted to ctxCols: [out, inC]
	inK     int
	inC     int
	pCand   *kernels.PackedB // wCandᵀ
	pCtx    *kernels.PackedB // wCtxᵀ
	pw      packedWeights
	// fused: Forward applies level 0's biases and ReLU in the candidate
	// product's epilogue: b0 holds the bias of every column of the fused
	// first layer, and the experts' columns are [reluFrom, reluTo). Set
	// when the activation is ReLU and the columns are laid out so.
	fused            bool
	b0               []float32
	reluFrom, reluTo int
	// pairs: in bf16, Forward's first-layer epilogue also stores the
	// experts' columns as bf16 pairs, and the experts' second layers read
	// them in place (kernels.LinearPackedPairsTo) rather than convert and
	// pack the first layer's float32 output again: the same operand, so
	// the same bits. Set when fused, in bf16, with every such expert's
	// columns starting at an even distance from reluFrom.
	pairs bool
}

// packedWeights are a Split's packed copies of the weights used after the
// first layer: Wᵀ of each product, indexed like the model's layers.
type packedWeights struct {
	groups [][]*kernels.PackedB   // [level][group]; nil at level 0 (split)
	layers [][][]*kernels.PackedB // [level][expert][layer]; nil at layer 0
	towers [][]*kernels.PackedB   // [task][layer]
	heads  []*kernels.PackedB     // [task]
}

// NewSplit prepares side-split scoring for m, in float32: NewSplitIn(m,
// kernels.FP32).
func (m *Model) NewSplit() *Split { return m.NewSplitIn(kernels.FP32) }

// NewSplitIn prepares side-split scoring for m with products in precision
// p: the weights are packed for p's kernel (kernels.Precision.PackB), and
// every product of the split forward reads them in p. p is used exactly,
// emulated where the CPU lacks AVX512_BF16 (the caller chooses with
// kernels.Precision.Effective).
func (m *Model) NewSplitIn(p kernels.Precision) *Split {
	s := &Split{m: m, prec: p}
	side := func(f features.Side) *[]int {
		if f == features.SideCandidate {
			return &s.cols
		}
		return &s.ctxCols
	}
	for f, fld := range m.layout.Sparse {
		cols := side(fld.Side)
		for d := 0; d < m.dim; d++ {
			*cols = append(*cols, f*m.dim+d)
		}
	}
	for i, fld := range m.layout.Dense {
		cols := side(fld.Side)
		*cols = append(*cols, m.embWidth+i)
	}
	s.inK, s.inC = len(s.cols), len(s.ctxCols)
	g := &m.levels[0].groups[0]
	s.wCand = make([]float32, g.out*s.inK)
	s.wCtx = make([]float32, g.out*s.inC)
	s.planFused()
	s.planPairs()
	s.copyFirst()
	s.pCand = p.PackB(true, g.out, s.inK, s.wCand, max(1, s.inK))
	s.pCtx = p.PackB(true, g.out, s.inC, s.wCtx, max(1, s.inC))
	a := m.arena
	pack := func(w, out, in int) *kernels.PackedB {
		return p.PackB(true, out, in, a[w:w+out*in], max(1, in))
	}
	for li := range m.levels {
		lv := &m.levels[li]
		gs := make([]*kernels.PackedB, len(lv.groups))
		if li > 0 {
			for gi, g := range lv.groups {
				gs[gi] = pack(g.w, g.out, g.in)
			}
		}
		s.pw.groups = append(s.pw.groups, gs)
		var es [][]*kernels.PackedB
		for _, ex := range lv.experts {
			ls := make([]*kernels.PackedB, len(ex.layers))
			for l := 1; l < len(ex.layers); l++ {
				L := &ex.layers[l]
				ls[l] = pack(L.w, L.out, L.in)
			}
			es = append(es, ls)
		}
		s.pw.layers = append(s.pw.layers, es)
	}
	for t := range m.heads {
		var ts []*kernels.PackedB
		for l := range m.towers[t] {
			L := &m.towers[t][l]
			ts = append(ts, pack(L.w, L.out, L.in))
		}
		s.pw.towers = append(s.pw.towers, ts)
		L := &m.headL[t]
		s.pw.heads = append(s.pw.heads, pack(L.w, 1, L.in))
	}
	return s
}

// planFused decides whether Forward can apply level 0's biases and
// activation in the GEMM epilogue: the activation is ReLU, the level's
// first group holds every expert's first layer and every gate's logits,
// each column exactly once, and the experts' columns are one range.
func (s *Split) planFused() {
	m := s.m
	lv := &m.levels[0]
	if m.act != actReLU || len(lv.groups) != 1 {
		return
	}
	g := &lv.groups[0]
	seen := make([]bool, g.out)
	claim := func(lo, hi int) bool {
		for j := lo; j < hi; j++ {
			if j < 0 || j >= g.out || seen[j] {
				return false
			}
			seen[j] = true
		}
		return true
	}
	lo, hi := g.out, 0
	for _, ex := range lv.experts {
		L0 := &ex.layers[0]
		if ex.grp != 0 || L0.act != actReLU || !claim(ex.col, ex.col+L0.out) {
			return
		}
		lo, hi = min(lo, ex.col), max(hi, ex.col+L0.out)
	}
	for _, gt := range lv.gates {
		if len(gt.cands) > 1 && (gt.grp != 0 || !claim(gt.col, gt.col+len(gt.cands))) {
			return
		}
	}
	for j, ok := range seen {
		// Every column is claimed, and the experts' ones are contiguous.
		if !ok || (j >= lo && j < hi) != s.isExpertCol(j) {
			return
		}
	}
	s.fused, s.reluFrom, s.reluTo = true, lo, hi
	s.b0 = make([]float32, g.out)
}

// planPairs decides whether Forward hands the experts' second layers
// their input as bf16 pairs (see Split.pairs).
func (s *Split) planPairs() {
	if !s.fused || s.prec != kernels.BF16 || s.reluFrom%2 != 0 {
		return
	}
	for _, ex := range s.m.levels[0].experts {
		if len(ex.layers) > 1 && (ex.col-s.reluFrom)%2 != 0 {
			return
		}
	}
	s.pairs = true
}

// isExpertCol reports whether column j of level 0's first group belongs to
// an expert.
func (s *Split) isExpertCol(j int) bool {
	for _, ex := range s.m.levels[0].experts {
		if j >= ex.col && j < ex.col+ex.layers[0].out {
			return true
		}
	}
	return false
}

// copyFirst copies the context and candidate column blocks of the
// first-layer weight, and its biases when fused.
func (s *Split) copyFirst() {
	m := s.m
	g := &m.levels[0].groups[0]
	if s.fused {
		a, lv := m.arena, &m.levels[0]
		for _, ex := range lv.experts {
			L0 := &ex.layers[0]
			copy(s.b0[ex.col:ex.col+L0.out], a[L0.b:L0.b+L0.out])
		}
		for _, gt := range lv.gates {
			if n := len(gt.cands); n > 1 {
				b := lv.groups[gt.grp].b + gt.col
				copy(s.b0[gt.col:gt.col+n], a[b:b+n])
			}
		}
	}
	w := m.arena[g.w : g.w+g.out*g.in]
	for o := 0; o < g.out; o++ {
		row := w[o*g.in : (o+1)*g.in]
		dst := s.wCand[o*s.inK : (o+1)*s.inK]
		for j, c := range s.cols {
			dst[j] = row[c]
		}
		dst = s.wCtx[o*s.inC : (o+1)*s.inC]
		for j, c := range s.ctxCols {
			dst[j] = row[c]
		}
	}
}

// Refresh re-reads every weight the Split keeps a copy of from the model.
// It does not allocate.
func (s *Split) Refresh() {
	m, a := s.m, s.m.arena
	s.copyFirst()
	s.pCand.Repack(true, s.wCand, max(1, s.inK))
	s.pCtx.Repack(true, s.wCtx, max(1, s.inC))
	repack := func(p *kernels.PackedB, w, out, in int) {
		p.Repack(true, a[w:w+out*in], max(1, in))
	}
	for li := range m.levels {
		lv := &m.levels[li]
		if li > 0 {
			for gi, g := range lv.groups {
				repack(s.pw.groups[li][gi], g.w, g.out, g.in)
			}
		}
		for e, ex := range lv.experts {
			for l := 1; l < len(ex.layers); l++ {
				L := &ex.layers[l]
				repack(s.pw.layers[li][e][l], L.w, L.out, L.in)
			}
		}
	}
	for t := range m.heads {
		for l := range m.towers[t] {
			L := &m.towers[t][l]
			repack(s.pw.towers[t][l], L.w, L.out, L.in)
		}
		L := &m.headL[t]
		repack(s.pw.heads[t], L.w, 1, L.in)
	}
}

// Precision is the precision of the split's products (NewSplitIn).
func (s *Split) Precision() kernels.Precision { return s.prec }

// CandidateWidth is the number of first-layer input columns computed per
// candidate.
func (s *Split) CandidateWidth() int { return s.inK }

// NewWorkspace makes a Workspace for up to maxCandidates candidates that
// both Model.Forward and Split.Forward accept.
func (s *Split) NewWorkspace(maxCandidates int) *Workspace {
	ws := s.m.NewWorkspace(maxCandidates)
	ws.xk = make([]float32, ws.maxRows*s.inK)
	ws.yc = make([]float32, s.m.levels[0].groups[0].out)
	if s.pairs {
		// A row stride a cache line off a multiple of 4 KiB: the kernel
		// reads 14 rows at once, which would otherwise share L1 sets.
		ws.ldp = (s.reluTo-s.reluFrom+1)/2/16*16 + 32
		ws.xp = make([]float32, ws.maxRows*ws.ldp)
		ws.pairsFrom = s.reluFrom
	}
	return ws
}

// ForwardRows scores a batch whose rows each carry their own context (batch
// inference over logged events) with the arithmetic of Forward: each row's
// context share of the first layer and its candidate share are computed
// apart and then added. Since every kernel computes a row of its product
// the same way whatever the number of rows, a row scores the same to the
// last bit here as it does through Forward as a candidate of its own
// context. ws must come from this Split's NewWorkspace. It allocates
// nothing after the workspace's first ForwardRows.
func (s *Split) ForwardRows(ws *Workspace, b *features.Batch) error {
	m := s.m
	if ws == nil || ws.m != m || ws.xk == nil {
		return batchErr("split forward: workspace was not made by this split")
	}
	ws.rows = -1
	if err := m.checkBatch(b, ws.maxRows); err != nil {
		return err
	}
	rows := b.Rows
	g := &m.levels[0].groups[0]
	if len(ws.ycRows) < ws.maxRows*g.out {
		ws.ycRows = make([]float32, ws.maxRows*g.out)
	}
	// Context shares of every row (ws.x holds the context columns,
	// compacted).
	xc := ws.x[:rows*s.inC]
	ws.touch ^= m.gatherSide(xc, s.inC, b, features.SideContext)
	yc := ws.ycRows[:rows*g.out]
	kernels.SgemmPacked(false, rows, 1, xc, max(1, s.inC), s.pCtx, 0, yc, g.out)
	// Candidate shares, then the sum row by row as Forward adds its one
	// context row.
	ws.touch ^= m.gatherSide(ws.xk, s.inK, b, features.SideCandidate)
	y := ws.lv[0].y[0]
	kernels.SgemmPacked(false, rows, 1, ws.xk, max(1, s.inK), s.pCand, 0, y, g.out)
	for r := 0; r < rows; r++ {
		addBias(y[r*g.out:(r+1)*g.out], g.out, 1, yc[r*g.out:(r+1)*g.out])
	}
	m.forward(ws, rows, firstProduct, &s.pw)
	return nil
}

// Forward scores cand.Rows candidates against one context, leaving the
// logits in ws.Logits as Model.Forward would for a batch whose rows all
// carry ctx's context fields and their own candidate fields. ctx must be a
// one-row batch of the layout whose context-side fields (sparse and dense)
// are read; its candidate-side values are ignored. cand holds the
// candidates: its candidate-side fields are read, its context-side fields
// are ignored (they must still be valid ids, e.g. 0). The result equals
// Model.Forward's up to float32 rounding (the first-layer sums are taken in
// another order). ws must come from this Split's NewWorkspace. Backward does
// not apply to a split forward. It allocates nothing.
//
// Forward is SetContext followed by ForwardCandidates: to score a request's
// candidates in several passes, call SetContext once and ForwardCandidates
// for each pass.
func (s *Split) Forward(ws *Workspace, ctx, cand *features.Batch) error {
	if err := s.SetContext(ws, ctx); err != nil {
		return err
	}
	return s.ForwardCandidates(ws, cand)
}

// SetContext computes ctx's share of the first layer into ws, for the
// ForwardCandidates calls that follow on ws. ctx is a one-row batch whose
// context-side fields are read (see Forward).
func (s *Split) SetContext(ws *Workspace, ctx *features.Batch) error {
	m := s.m
	if ws == nil || ws.m != m || ws.xk == nil {
		return batchErr("split forward: workspace was not made by this split")
	}
	ws.rows, ws.ctxSet = -1, false
	if ctx == nil || ctx.Rows != 1 {
		return batchErr("split forward: the context batch must have exactly 1 row")
	}
	if err := m.checkBatch(ctx, 1); err != nil {
		return err
	}
	// The context columns times their weight block.
	xc := ws.x[:s.inC]
	ws.touch ^= m.gatherSide(xc, s.inC, ctx, features.SideContext)
	kernels.SgemmPacked(false, 1, 1, xc, max(1, s.inC), s.pCtx, 0, ws.yc, len(ws.yc))
	ws.ctxSet = true
	return nil
}

// ForwardCandidates scores cand.Rows candidates against the context of the
// last SetContext on ws, as Forward does, giving each row the bits Forward
// gives it whatever the rows around it. It is an error if no SetContext
// has succeeded on ws (a failed one clears the context). It allocates
// nothing.
func (s *Split) ForwardCandidates(ws *Workspace, cand *features.Batch) error {
	m := s.m
	if ws == nil || ws.m != m || ws.xk == nil {
		return batchErr("split forward: workspace was not made by this split")
	}
	ws.rows = -1
	if !ws.ctxSet {
		return batchErr("split forward: no context set on the workspace (call SetContext first)")
	}
	if err := m.checkBatch(cand, ws.maxRows); err != nil {
		return err
	}
	rows := cand.Rows
	g := &m.levels[0].groups[0]
	// Candidate share: gather only the candidate columns, then one product
	// whose epilogue adds the context share to every row (the addition
	// ForwardRows makes row by row).
	ws.touch ^= m.gatherSide(ws.xk, s.inK, cand, features.SideCandidate)
	if s.fused {
		// The epilogue also adds the gate and expert biases and applies
		// the experts' ReLU: the steps forward would take next, in order.
		ep := kernels.Epilogue{Bias: ws.yc, Bias2: s.b0, ReLUFrom: s.reluFrom, ReLUTo: s.reluTo}
		if s.pairs {
			ep.Pairs, ep.LdPairs, ep.PairsFrom, ep.PairsTo = ws.xp, ws.ldp, s.reluFrom, s.reluTo
		}
		kernels.LinearPackedEpilogueTo(ws.lv[0].y[0], g.out, ws.xk, max(1, s.inK), rows, s.pCand, ep)
		ws.pairsSet = s.pairs
		m.forward(ws, rows, firstDone, &s.pw)
		ws.pairsSet = false
		return nil
	}
	kernels.LinearPackedTo(kernels.ActNone, ws.lv[0].y[0], g.out, ws.xk, max(1, s.inK), rows, s.pCand, ws.yc)
	m.forward(ws, rows, firstProduct, &s.pw)
	return nil
}

// gatherSide writes the columns of x that belong to side, compacted to
// width w, for every row of b. It returns a value the caller keeps so that
// the compiler cannot drop the prefetching loads.
func (m *Model) gatherSide(xk []float32, w int, b *features.Batch, side features.Side) (touch uint32) {
	D, rows := m.dim, b.Rows
	// The table rows are scattered over tables far larger than the caches,
	// and a copy loop that waits on each miss in turn spends most of its
	// time waiting. A first pass that only loads one word of every row
	// (independent loads, all in flight at once) brings them into cache
	// for the copies.
	if rows > 1 {
		for f, fld := range m.layout.Sparse {
			if fld.Side != side || b.Sparse[f].Offsets != nil {
				continue
			}
			tbl := m.emb[f]
			for _, id := range b.Sparse[f].IDs[:rows] {
				touch ^= math.Float32bits(tbl[int(id)*D])
			}
		}
	}
	col := 0
	for f, fld := range m.layout.Sparse {
		if fld.Side != side {
			continue
		}
		sc := &b.Sparse[f]
		tbl := m.emb[f]
		if sc.Offsets == nil {
			ids := sc.IDs[:rows]
			if D == 16 {
				// A fixed-size copy compiles to a few moves rather than a
				// memmove call, which keeps more table misses in flight.
				for r, id := range ids {
					*(*[16]float32)(xk[r*w+col:]) = *(*[16]float32)(tbl[int(id)*16:])
				}
			} else {
				for r, id := range ids {
					o := int(id) * D
					copy(xk[r*w+col:r*w+col+D], tbl[o:o+D])
				}
			}
			col += D
			continue
		}
		for r := 0; r < rows; r++ {
			dst := xk[r*w+col : r*w+col+D]
			clear(dst)
			lo, hi := sc.Offsets[r], sc.Offsets[r+1]
			for _, id := range sc.IDs[lo:hi] {
				o := int(id) * D
				axpy(dst, 1, tbl[o:o+D])
			}
			if fld.Pooling == features.PoolMean && hi > lo {
				s := 1 / float32(hi-lo)
				for i := range dst {
					dst[i] *= s
				}
			}
		}
		col += D
	}
	for i, fld := range m.layout.Dense {
		if fld.Side != side {
			continue
		}
		for r := 0; r < rows; r++ {
			xk[r*w+col] = b.Dense[r*b.DenseWidth+i]
		}
		col++
	}
	return touch
}
