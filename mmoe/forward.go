package mmoe

import (
	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/kernels"
)

// Workspace holds every activation of a forward pass for up to maxRows rows,
// allocated once. A Workspace is for one goroutine at a time; use one per
// worker.
type Workspace struct {
	// Logits holds, after Forward, one slice per head of length b.Rows: the
	// model's outputs before any link function. It is overwritten by the
	// next Forward.
	Logits [][]float32

	m       *Model
	maxRows int
	rows    int // rows of the last successful Forward, -1 if none

	x      []float32 // [maxRows, inWidth]
	lv     []levelWS
	tw     [][][]float32 // per task, per tower layer: output
	twPre  [][][]float32 // GELU pre-activations, else nil
	logits [][]float32   // per task, [maxRows]

	ait  *aitWS            // AIT's activations (ait.go), or nil
	prec kernels.Precision // of Forward's and Backward's products (SetPrecision)

	xk, yc []float32 // Split only: candidate columns [maxRows, inK]; context share [out]
	ycRows []float32 // Split.ForwardRows only: per-row context shares [maxRows, out]
	touch  uint32    // Split only: keeps the gather's prefetching loads alive
	ctxSet bool      // Split only: yc holds a context share (SetContext)
	// Split in bf16 only (Split.pairs): level 0's expert columns of the
	// first layer as bf16 pairs [maxRows, ldp] from column pairsFrom,
	// which the experts' second layers read when pairsSet (during a
	// ForwardCandidates).
	xp        []float32
	ldp       int
	pairsFrom int
	pairsSet  bool
}

type levelWS struct {
	y, pre      [][]float32   // per group: fused first-layer outputs [maxRows, out]; pre for GELU
	hid, hidPre [][][]float32 // per expert, per layer l >= 1 (index 0 nil)
	g           [][]float32   // per gate: softmax weights [maxRows, len(cands)]
	out         [][]float32   // per gate: mixture [maxRows, hidden]
	mixX        [][][]float32 // per gate: its candidates' output views
	mixLd       [][]int       // per gate: their row strides
}

// NewWorkspace allocates the activations for batches of up to maxRows rows
// (at least 1).
func (m *Model) NewWorkspace(maxRows int) *Workspace {
	maxRows = max(maxRows, 1)
	gelu := m.act == actGELU
	buf := func(w int) []float32 { return make([]float32, maxRows*w) }
	opt := func(w int) []float32 {
		if gelu {
			return buf(w)
		}
		return nil
	}
	ws := &Workspace{m: m, maxRows: maxRows, rows: -1, x: buf(m.inWidth)}
	for li := range m.levels {
		lv := &m.levels[li]
		var lw levelWS
		for _, g := range lv.groups {
			lw.y = append(lw.y, buf(g.out))
			lw.pre = append(lw.pre, opt(g.out))
		}
		for _, e := range lv.experts {
			hid := make([][]float32, len(e.layers))
			pre := make([][]float32, len(e.layers))
			for l := 1; l < len(e.layers); l++ {
				hid[l] = buf(e.layers[l].out)
				pre[l] = opt(e.layers[l].out)
			}
			lw.hid = append(lw.hid, hid)
			lw.hidPre = append(lw.hidPre, pre)
		}
		for _, g := range lv.gates {
			lw.g = append(lw.g, buf(len(g.cands)))
			lw.out = append(lw.out, buf(m.hidden))
		}
		ws.lv = append(ws.lv, lw)
	}
	for li := range m.levels {
		lw := &ws.lv[li]
		for _, g := range m.levels[li].gates {
			xs, lds := make([][]float32, len(g.cands)), make([]int, len(g.cands))
			for j, c := range g.cands {
				xs[j], lds[j] = m.expertOut(ws, li, c)
			}
			lw.mixX = append(lw.mixX, xs)
			lw.mixLd = append(lw.mixLd, lds)
		}
	}
	for t := range m.heads {
		var tw, pre [][]float32
		for _, L := range m.towers[t] {
			tw = append(tw, buf(L.out))
			pre = append(pre, opt(L.out))
		}
		ws.tw = append(ws.tw, tw)
		ws.twPre = append(ws.twPre, pre)
		ws.logits = append(ws.logits, buf(1))
	}
	ws.Logits = make([][]float32, len(m.heads))
	if m.ait != nil {
		m.newAITWorkspace(ws, buf, gelu)
	}
	return ws
}

// SetPrecision sets the precision of the products of Model.Forward and
// Model.Backward on ws: kernels.FP32 (the default) or kernels.BF16 (bf16
// operands, float32 sums; exact, emulated where the CPU lacks
// AVX512_BF16: see kernels.Precision.Effective). The weights, the
// activations and the gradients stay float32. A Split's products follow
// the precision its weights were packed in instead (NewSplitIn).
func (ws *Workspace) SetPrecision(p kernels.Precision) { ws.prec = p }

// Precision is the precision set by SetPrecision.
func (ws *Workspace) Precision() kernels.Precision { return ws.prec }

// MaxRows is the largest batch the workspace takes.
func (ws *Workspace) MaxRows() int { return ws.maxRows }

// Input returns the first-layer input x of the last Model.Forward (not
// meaningful after a Split.Forward), rows x
// InputWidth row-major (embeddings in field order, then the dense block).
func (ws *Workspace) Input() (x []float32, rows, width int) {
	if ws.rows < 0 {
		return nil, 0, ws.m.inWidth
	}
	return ws.x[:ws.rows*ws.m.inWidth], ws.rows, ws.m.inWidth
}

// GateWeights returns the softmax weights of the gate that feeds task's
// tower (the last level's), rows x experts row-major, from the last Forward.
// Column j is the gate's j-th candidate: the level's shared experts in order,
// then the task's own experts. A gate over a single expert reports weight 1.
// It returns nil if there was no successful Forward or task is out of range.
func (ws *Workspace) GateWeights(task int) (w []float32, rows, experts int) {
	m := ws.m
	if ws.rows < 0 || task < 0 || task >= len(m.heads) {
		return nil, 0, 0
	}
	gi := m.towerSrc[task]
	n := len(m.levels[len(m.levels)-1].gates[gi].cands)
	return ws.lv[len(ws.lv)-1].g[gi][:ws.rows*n], ws.rows, n
}

func off(s []float32, o int) []float32 {
	if s == nil {
		return nil
	}
	return s[o:]
}

// streamIn is the input view of a group whose source is src at level li.
func (m *Model) streamIn(ws *Workspace, li, src int) ([]float32, int) {
	if src < 0 {
		return ws.x, m.inWidth
	}
	return ws.lv[li-1].out[src], m.hidden
}

// expertOut is the output view of expert e of level li.
func (m *Model) expertOut(ws *Workspace, li, e int) ([]float32, int) {
	ex := &m.levels[li].experts[e]
	if n := len(ex.layers); n > 1 {
		return ws.lv[li].hid[e][n-1], ex.layers[n-1].out
	}
	return ws.lv[li].y[ex.grp][ex.col:], m.levels[li].groups[ex.grp].out
}

// Forward runs the model on b, leaving the logits in ws.Logits and the
// activations in ws for Backward. It returns an error wrapping ErrBatch if b
// does not match the model's layout, has more rows than the workspace, or
// holds an id outside its field's table. It allocates nothing.
func (m *Model) Forward(ws *Workspace, b *features.Batch) error {
	if ws == nil || ws.m != m {
		return batchErr("forward: workspace was not made by this model")
	}
	ws.rows = -1
	if err := m.checkBatch(b, ws.maxRows); err != nil {
		return err
	}
	m.gather(ws.x, b)
	m.forward(ws, b.Rows, firstNone, nil)
	return nil
}

// firstStage says how much of level 0's fused first layer a caller of
// forward has already computed into ws.lv[0].y.
type firstStage uint8

const (
	firstNone    firstStage = iota // nothing: forward computes it from ws.x
	firstProduct                   // the product, before biases
	firstDone                      // the product, gate biases, expert biases and activation
)

// forward runs everything after the gather, from level 0's first layer in
// the state first. With pw (inference only) the products read pw's packed
// copies of the weights, which gives the same bits as the unpacked ones.
func (m *Model) forward(ws *Workspace, rows int, first firstStage, pw *packedWeights) {
	a := m.arena
	for li := range m.levels {
		lv, lw := &m.levels[li], &ws.lv[li]
		for gi, g := range lv.groups {
			if li == 0 && first != firstNone {
				continue
			}
			// One product for every first layer reading this input; biases
			// and activations are applied per consumer below.
			in, ld := m.streamIn(ws, li, g.src)
			if pw != nil {
				linearPacked(actNone, lw.y[gi], g.out, in, ld, rows, pw.groups[li][gi], nil, nil)
				continue
			}
			linearTo(ws.prec, actNone, lw.y[gi], g.out, in, ld, rows, g.in, g.out, a[g.w:g.w+g.out*g.in], nil, nil)
		}
		for gi := range lv.gates {
			if li == 0 && first == firstDone {
				break
			}
			if gt := &lv.gates[gi]; len(gt.cands) > 1 {
				b := lv.groups[gt.grp].b + gt.col
				addBias(lw.y[gt.grp][gt.col:], lv.groups[gt.grp].out, rows, a[b:b+len(gt.cands)])
			}
		}
		for e := range lv.experts {
			ex := &lv.experts[e]
			ld := lv.groups[ex.grp].out
			prev := lw.y[ex.grp][ex.col:]
			L0 := &ex.layers[0]
			if li != 0 || first != firstDone {
				biasActivate(m.act, prev, ld, rows, a[L0.b:L0.b+L0.out], off(lw.pre[ex.grp], ex.col))
			}
			for l := 1; l < len(ex.layers); l++ {
				L := &ex.layers[l]
				out := lw.hid[e][l]
				switch {
				case pw != nil && li == 0 && l == 1 && ws.pairsSet:
					// The first layer's epilogue stored this input as
					// bf16 pairs: the same operand, read in place.
					xp := ws.xp[(ex.col-ws.pairsFrom)/2:]
					linearPackedPairs(L.act, out, L.out, xp, ws.ldp, rows, pw.layers[li][e][l], a[L.b:L.b+L.out], lw.hidPre[e][l])
				case pw != nil:
					linearPacked(L.act, out, L.out, prev, ld, rows, pw.layers[li][e][l], a[L.b:L.b+L.out], lw.hidPre[e][l])
				default:
					linearTo(ws.prec, L.act, out, L.out, prev, ld, rows, L.in, L.out, a[L.w:L.w+L.out*L.in], a[L.b:L.b+L.out], lw.hidPre[e][l])
				}
				prev, ld = out, L.out
			}
		}
		H := m.hidden
		for gi := range lv.gates {
			gt := &lv.gates[gi]
			n := len(gt.cands)
			G, out := lw.g[gi], lw.out[gi]
			if n == 1 {
				e, lde := m.expertOut(ws, li, gt.cands[0])
				for r := 0; r < rows; r++ {
					G[r] = 1
					copy(out[r*H:r*H+H], e[r*lde:r*lde+H])
				}
				continue
			}
			softmaxTo(G, n, lw.y[gt.grp][gt.col:], lv.groups[gt.grp].out, rows)
			// out = Σ_j G[:, j] · expert_j, summed in order of j from zero.
			if rows > 0 {
				kernels.MixTo(out, H, rows, H, G, n, lw.mixX[gi], lw.mixLd[gi])
			}
		}
	}
	last := &ws.lv[len(ws.lv)-1]
	for t := range m.heads {
		prev, ld := last.out[m.towerSrc[t]], m.hidden
		for l := range m.towers[t] {
			L := &m.towers[t][l]
			out := ws.tw[t][l]
			if pw != nil {
				linearPacked(L.act, out, L.out, prev, ld, rows, pw.towers[t][l], a[L.b:L.b+L.out], ws.twPre[t][l])
			} else {
				linearTo(ws.prec, L.act, out, L.out, prev, ld, rows, L.in, L.out, a[L.w:L.w+L.out*L.in], a[L.b:L.b+L.out], ws.twPre[t][l])
			}
			prev, ld = out, L.out
		}
		if m.ait != nil {
			continue // the heads read AIT's output (aitForward)
		}
		L := &m.headL[t]
		if pw != nil {
			linearPacked(actNone, ws.logits[t], 1, prev, ld, rows, pw.heads[t], a[L.b:L.b+1], nil)
		} else {
			linearTo(ws.prec, actNone, ws.logits[t], 1, prev, ld, rows, L.in, 1, a[L.w:L.w+L.in], a[L.b:L.b+1], nil)
		}
		ws.Logits[t] = ws.logits[t][:rows]
	}
	if m.ait != nil {
		m.aitForward(ws, rows)
	}
	ws.rows = rows
}

// gatherAhead is how many rows ahead of its copies gather prefetches
// embedding rows.
const gatherAhead = 32

// gather writes the embedding lookups and the dense block into x.
func (m *Model) gather(x []float32, b *features.Batch) {
	D, W, rows := m.dim, m.inWidth, b.Rows
	for f, fld := range m.layout.Sparse {
		tbl := m.emb[f]
		col := &b.Sparse[f]
		if col.Offsets == nil {
			// The rows are scattered over a table far larger than the
			// caches: prefetched a stretch ahead, their loads overlap.
			ids := col.IDs[:rows]
			for lo := 0; lo < rows; lo += gatherAhead {
				if lo == 0 {
					kernels.PrefetchRows(tbl, D, ids[:min(gatherAhead, rows)])
				}
				if next := lo + gatherAhead; next < rows {
					kernels.PrefetchRows(tbl, D, ids[next:min(next+gatherAhead, rows)])
				}
				for r := lo; r < min(lo+gatherAhead, rows); r++ {
					o := int(ids[r]) * D
					copy(x[r*W+f*D:r*W+f*D+D], tbl[o:o+D])
				}
			}
			continue
		}
		for r := 0; r < rows; r++ {
			dst := x[r*W+f*D : r*W+f*D+D]
			clear(dst)
			lo, hi := col.Offsets[r], col.Offsets[r+1]
			for _, id := range col.IDs[lo:hi] {
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
	}
	if DW := b.DenseWidth; DW > 0 {
		E := m.embWidth
		for r := 0; r < rows; r++ {
			copy(x[r*W+E:r*W+W], b.Dense[r*DW:r*DW+DW])
		}
	}
}

// checkBatch validates b against the layout, including every id.
func (m *Model) checkBatch(b *features.Batch, maxRows int) error {
	if b == nil {
		return batchErr("batch is nil")
	}
	rows := b.Rows
	if rows < 0 || rows > maxRows {
		return batchErr("batch has %d rows, want 0..%d (the workspace's maxRows)", rows, maxRows)
	}
	if len(b.Sparse) != len(m.layout.Sparse) {
		return batchErr("batch has %d sparse columns, the layout %d", len(b.Sparse), len(m.layout.Sparse))
	}
	if b.DenseWidth != len(m.layout.Dense) {
		return batchErr("batch dense width %d, the layout has %d dense fields", b.DenseWidth, len(m.layout.Dense))
	}
	if len(b.Dense) < rows*b.DenseWidth {
		return batchErr("batch dense block has %d values, want %d rows x %d", len(b.Dense), rows, b.DenseWidth)
	}
	for f, fld := range m.layout.Sparse {
		col := &b.Sparse[f]
		var ids []int32
		if fld.Pooling == features.PoolNone {
			if col.Offsets != nil {
				return batchErr("batch field %q: has offsets, but the layout says one id per row", fld.Name)
			}
			if len(col.IDs) < rows {
				return batchErr("batch field %q: %d ids for %d rows", fld.Name, len(col.IDs), rows)
			}
			ids = col.IDs[:rows]
		} else {
			if len(col.Offsets) != rows+1 {
				return batchErr("batch field %q: %d offsets for %d rows, want rows+1 (a pooled field)", fld.Name, len(col.Offsets), rows)
			}
			for r := 0; r < rows; r++ {
				if col.Offsets[r] > col.Offsets[r+1] {
					return batchErr("batch field %q row %d: offsets decrease (%d > %d)", fld.Name, r, col.Offsets[r], col.Offsets[r+1])
				}
			}
			lo, hi := col.Offsets[0], col.Offsets[rows]
			if lo < 0 || int(hi) > len(col.IDs) {
				return batchErr("batch field %q: offsets [%d, %d] outside the %d ids", fld.Name, lo, hi, len(col.IDs))
			}
			ids = col.IDs[lo:hi]
		}
		card := int32(fld.Cardinality)
		for i, id := range ids {
			if id < 0 || id >= card {
				return m.idErr(col, f, i, id)
			}
		}
	}
	return nil
}

func (m *Model) idErr(col *features.SparseColumn, f, i int, id int32) error {
	fld := m.layout.Sparse[f]
	row := i
	if col.Offsets != nil {
		pos := int32(i) + col.Offsets[0]
		for r := 0; r+1 < len(col.Offsets); r++ {
			if pos < col.Offsets[r+1] {
				row = r
				break
			}
		}
	}
	return batchErr("batch field %q row %d: id %d outside the table [0, %d)", fld.Name, row, id, fld.Cardinality)
}
