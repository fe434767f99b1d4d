package mmoe

import (
	"slices"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/kernels"
	"github.com/onestone/onestone/internal/rowindex"
)

// SparseGrad is the gradient of one embedding table for one batch: Rows are
// the distinct table rows the batch touched, in first-touch order, and Grad
// holds their gradients, len(Rows) x Dim row-major.
type SparseGrad struct {
	Rows []int32
	Grad []float32
}

// Grads receives the gradients of one Backward, plus the scratch the backward
// pass needs for up to maxRows rows. A Grads is for one goroutine at a time.
type Grads struct {
	// Dense holds one gradient per parameter, aligned with Model.Params().
	Dense [][]float32
	// Sparse holds one gradient per embedding table, aligned with
	// Model.Embeddings().
	Sparse []SparseGrad

	m       *Model
	maxRows int
	arena   []float32 // backs Dense, laid out like Model.arena

	dx    []float32 // [maxRows, embWidth]: gradient of the embedding columns of x
	lv    []levelGrad
	dtw   [][][]float32  // per task, per tower layer: gradient of its output
	index rowindex.Index // scatter's and AddFrom's: a field's rows to their index in Sparse[f].Rows
	zero  [][2]int       // the ranges of arena Backward clears: all but the groups' weights
	// maskGate, per level and expert, is the gate whose gateBack applies
	// the ReLU backward of the expert's last layer (the last gate over
	// it, once the expert's gradient is whole), or -1: a single-layer
	// expert, another activation, or no gate.
	maskGate [][]int
	s        []float32 // per-row scratch, maxCands
	ait      *aitGrad  // AIT's scratch (ait.go), or nil
}

type levelGrad struct {
	dy   [][]float32   // per group
	dhid [][][]float32 // per expert, per layer l >= 1
	dout [][]float32   // per gate
}

// NewGrads allocates gradients and backward scratch for batches of up to
// maxRows rows (at least 1).
func (m *Model) NewGrads(maxRows int) *Grads {
	maxRows = max(maxRows, 1)
	buf := func(w int) []float32 { return make([]float32, maxRows*w) }
	g := &Grads{m: m, maxRows: maxRows, arena: make([]float32, len(m.arena)), dx: buf(m.embWidth), s: make([]float32, m.maxCands)}
	for _, p := range m.params {
		n := 1
		for _, s := range p.shape {
			n *= s
		}
		g.Dense = append(g.Dense, g.arena[p.off:p.off+n:p.off+n])
	}
	// The groups' weight gradients, the bulk of the dense ones, are set
	// by their products (beta 0) rather than cleared and added to.
	lo := 0
	for li := range m.levels {
		for _, gr := range m.levels[li].groups {
			if gr.w > lo {
				g.zero = append(g.zero, [2]int{lo, gr.w})
			}
			lo = gr.w + gr.out*gr.in
		}
	}
	if lo < len(g.arena) {
		g.zero = append(g.zero, [2]int{lo, len(g.arena)})
	}
	for _, f := range m.layout.Sparse {
		c := maxRows
		if f.Pooling != features.PoolNone {
			c *= 4
		}
		c = min(c, f.Cardinality)
		g.Sparse = append(g.Sparse, SparseGrad{Rows: make([]int32, 0, c), Grad: make([]float32, 0, c*m.dim)})
		g.index.Reset(2 * c) // AddFrom's union of two workers' rows
	}
	for li := range m.levels {
		lv := &m.levels[li]
		mg := make([]int, len(lv.experts))
		for e := range mg {
			mg[e] = -1
		}
		for gi, gt := range lv.gates {
			for _, c := range gt.cands {
				if L := lv.experts[c].layers; len(L) > 1 && L[len(L)-1].act == actReLU {
					mg[c] = gi
				}
			}
		}
		g.maskGate = append(g.maskGate, mg)
		var lg levelGrad
		for _, gr := range lv.groups {
			lg.dy = append(lg.dy, buf(gr.out))
		}
		for _, e := range lv.experts {
			d := make([][]float32, len(e.layers))
			for l := 1; l < len(e.layers); l++ {
				d[l] = buf(e.layers[l].out)
			}
			lg.dhid = append(lg.dhid, d)
		}
		for range lv.gates {
			lg.dout = append(lg.dout, buf(m.hidden))
		}
		g.lv = append(g.lv, lg)
	}
	for t := range m.heads {
		var d [][]float32
		for _, L := range m.towers[t] {
			d = append(d, buf(L.out))
		}
		g.dtw = append(g.dtw, d)
	}
	if m.ait != nil {
		m.newAITGrads(g, buf)
	}
	return g
}

// Backward computes the gradients of Σ_t Σ_r dLogits[t][r]·logit[t][r] with
// respect to every parameter and the touched embedding rows, overwriting g.
// ws must hold the Forward of the same batch b. dLogits has one slice per
// head with at least b.Rows values. Backward only reads the model and ws;
// it allocates nothing in steady state (Sparse grows when a batch touches
// more rows than any before).
func (m *Model) Backward(ws *Workspace, b *features.Batch, dLogits [][]float32, g *Grads) error {
	if ws == nil || ws.m != m {
		return batchErr("backward: workspace was not made by this model")
	}
	if g == nil || g.m != m {
		return batchErr("backward: grads were not made by this model")
	}
	if b == nil || ws.rows < 0 || ws.rows != b.Rows {
		return batchErr("backward: the workspace holds no forward pass of this batch (run Forward first)")
	}
	if err := m.checkBatch(b, g.maxRows); err != nil {
		return err
	}
	rows := b.Rows
	if len(dLogits) != len(m.heads) {
		return batchErr("backward: %d logit gradients for %d heads", len(dLogits), len(m.heads))
	}
	for t, d := range dLogits {
		if len(d) < rows {
			return batchErr("backward: head %q: %d logit gradients for %d rows", m.heads[t], len(d), rows)
		}
	}
	if rows == 0 {
		clear(g.arena)
	}
	for _, z := range g.zero {
		clear(g.arena[z[0]:z[1]])
	}
	a, ga := m.arena, g.arena
	H := m.hidden
	for li := range m.levels {
		for gi := range m.levels[li].gates {
			clear(g.lv[li].dout[gi][:rows*H])
		}
	}
	// Heads and towers.
	lastW, lastG := &ws.lv[len(ws.lv)-1], &g.lv[len(g.lv)-1]
	if m.ait != nil {
		m.aitBack(ws, g, dLogits, rows) // the heads, and AIT into the towers
	}
	for t := range m.heads {
		src := m.towerSrc[t]
		in, dIn := lastW.out[src], lastG.dout[src]
		tw := m.towers[t]
		L := &m.headL[t]
		switch n := len(tw); {
		case m.ait != nil: // aitBack ran the head
		case n > 0:
			linearBack(ws.prec, ga[L.w:L.w+L.in], ga[L.b:L.b+1], dLogits[t], 1, ws.tw[t][n-1], L.in, rows, L.in, 1, a[L.w:L.w+L.in], g.dtw[t][n-1], L.in, 0)
		default:
			linearBack(ws.prec, ga[L.w:L.w+L.in], ga[L.b:L.b+1], dLogits[t], 1, in, H, rows, L.in, 1, a[L.w:L.w+L.in], dIn, H, 1)
		}
		for l := len(tw) - 1; l >= 0; l-- {
			L := &tw[l]
			dOut := g.dtw[t][l]
			activateBack(L.act, dOut, L.out, ws.tw[t][l], ws.twPre[t][l], L.out, rows, L.out)
			prev, dprev, ld, beta := in, dIn, H, float32(1)
			if l > 0 {
				prev, dprev, ld, beta = ws.tw[t][l-1], g.dtw[t][l-1], tw[l-1].out, 0
			}
			linearBack(ws.prec, ga[L.w:L.w+L.out*L.in], ga[L.b:L.b+L.out], dOut, L.out, prev, ld, rows, L.in, L.out, a[L.w:L.w+L.out*L.in], dprev, ld, beta)
		}
	}
	// Levels, last to first.
	for li := len(m.levels) - 1; li >= 0; li-- {
		lv, lw, lg := &m.levels[li], &ws.lv[li], &g.lv[li]
		// The gates' columns of dy are set by gateBack, the first layers'
		// of experts with more layers by their input-gradient products
		// (beta 0); only single-layer experts sum into theirs, one term
		// per gate, from zero.
		for e := range lv.experts {
			if ex := &lv.experts[e]; len(ex.layers) == 1 {
				ld, w := lv.groups[ex.grp].out, ex.layers[0].out
				d := lg.dy[ex.grp][ex.col:]
				for r := 0; r < rows; r++ {
					clear(d[r*ld : r*ld+w])
				}
			}
		}
		for e := range lv.experts {
			if n := len(lv.experts[e].layers); n > 1 {
				clear(lg.dhid[e][n-1][:rows*lv.experts[e].layers[n-1].out])
			}
		}
		for gi := range lv.gates {
			m.gateBack(ws, g, li, gi, rows)
		}
		for e := range lv.experts {
			ex := &lv.experts[e]
			ld0 := lv.groups[ex.grp].out
			masked := false // the first layer's ReLU backward done
			for l := len(ex.layers) - 1; l >= 1; l-- {
				L := &ex.layers[l]
				dOut := lg.dhid[e][l]
				if l < len(ex.layers)-1 || g.maskGate[li][e] < 0 {
					activateBack(L.act, dOut, L.out, lw.hid[e][l], lw.hidPre[e][l], L.out, rows, L.out)
				}
				prev, dprev, ld := lw.y[ex.grp][ex.col:], lg.dy[ex.grp][ex.col:], ld0
				if l > 1 {
					prev, dprev, ld = lw.hid[e][l-1], lg.dhid[e][l-1], ex.layers[l-1].out
				}
				dw, db, w := ga[L.w:L.w+L.out*L.in], ga[L.b:L.b+L.out], a[L.w:L.w+L.out*L.in]
				if l == 1 && m.act == actReLU && rows > 0 {
					// The first layer's ReLU backward in the product's
					// epilogue, its input gradient still in cache.
					linearBack(ws.prec, dw, db, dOut, L.out, prev, ld, rows, L.in, L.out, w, nil, 0, 0)
					ws.prec.GemmReLUBack(false, false, rows, L.in, L.out, dOut, L.out, w, L.in, dprev, ld, prev, ld)
					masked = true
					continue
				}
				linearBack(ws.prec, dw, db, dOut, L.out, prev, ld, rows, L.in, L.out, w, dprev, ld, 0)
			}
			if !masked {
				activateBack(m.act, lg.dy[ex.grp][ex.col:], ld0, lw.y[ex.grp][ex.col:], off(lw.pre[ex.grp], ex.col), ld0, rows, ex.layers[0].out)
			}
		}
		for gi := range lv.groups {
			gr := &lv.groups[gi]
			in, ldin := m.streamIn(ws, li, gr.src)
			w := a[gr.w : gr.w+gr.out*gr.in]
			if gr.src >= 0 {
				linearBackSet(ws.prec, ga[gr.w:gr.w+gr.out*gr.in], ga[gr.b:gr.b+gr.out], lg.dy[gi], gr.out, in, ldin, rows, gr.in, gr.out, w, g.lv[li-1].dout[gr.src], H, 1)
				continue
			}
			linearBackSet(ws.prec, ga[gr.w:gr.w+gr.out*gr.in], ga[gr.b:gr.b+gr.out], lg.dy[gi], gr.out, in, ldin, rows, gr.in, gr.out, w, nil, 0, 0)
			if m.embWidth > 0 && rows > 0 {
				// Only the embedding columns of x need a gradient.
				ws.prec.Gemm(false, false, rows, m.embWidth, gr.out, 1, lg.dy[gi], gr.out, w, gr.in, 0, g.dx, m.embWidth)
			}
		}
	}
	m.scatter(g, b)
	return nil
}

// gateBack propagates the gradient of gate gi's mixture into its experts'
// outputs and, for a gate with parameters, into its logits.
func (m *Model) gateBack(ws *Workspace, g *Grads, li, gi, rows int) {
	H := m.hidden
	lv, lw, lg := &m.levels[li], &ws.lv[li], &g.lv[li]
	gt := &lv.gates[gi]
	n := len(gt.cands)
	dM, G := lg.dout[gi], lw.g[gi]
	if n == 1 {
		c := gt.cands[0]
		de, ld := m.expertGrad(g, li, c)
		e, lde := m.expertOut(ws, li, c)
		mask := g.maskGate[li][c] == gi
		for r := 0; r < rows; r++ {
			axpy(de[r*ld:r*ld+H], 1, dM[r*H:r*H+H])
			if mask {
				kernels.ReLUBackward(de[r*ld:r*ld+H], ld, e[r*lde:r*lde+H], lde, 1, H)
			}
		}
		return
	}
	ldy := lv.groups[gt.grp].out
	dy := lg.dy[gt.grp][gt.col:]
	s := g.s[:n]
	for r := 0; r < rows; r++ {
		dm := dM[r*H : r*H+H]
		gr := G[r*n : r*n+n]
		var sg float32
		for j, c := range gt.cands {
			e, lde := m.expertOut(ws, li, c)
			de, ldd := m.expertGrad(g, li, c)
			s[j] = kernels.Dot(dm, e[r*lde:r*lde+H])
			sg += gr[j] * s[j]
			axpy(de[r*ldd:r*ldd+H], gr[j], dm)
			if g.maskGate[li][c] == gi {
				// The last term of the expert's gradient: its last
				// layer's ReLU backward, on the row still in cache.
				kernels.ReLUBackward(de[r*ldd:r*ldd+H], ldd, e[r*lde:r*lde+H], lde, 1, H)
			}
		}
		d := dy[r*ldy : r*ldy+n]
		for j := range d {
			d[j] = gr[j] * (s[j] - sg)
		}
	}
}

// expertGrad is the gradient view of expert e's output at level li.
func (m *Model) expertGrad(g *Grads, li, e int) ([]float32, int) {
	ex := &m.levels[li].experts[e]
	if n := len(ex.layers); n > 1 {
		return g.lv[li].dhid[e][n-1], ex.layers[n-1].out
	}
	return g.lv[li].dy[ex.grp][ex.col:], m.levels[li].groups[ex.grp].out
}

// scatter turns the gradient of x's embedding columns into per-table sparse
// gradients, each touched row once.
func (m *Model) scatter(g *Grads, b *features.Batch) {
	D, ld, rows := m.dim, m.embWidth, b.Rows
	for f, fld := range m.layout.Sparse {
		sg := &g.Sparse[f]
		sg.Rows, sg.Grad = sg.Rows[:0], sg.Grad[:0]
		col := &b.Sparse[f]
		if col.Offsets == nil {
			g.index.Reset(rows)
		} else {
			g.index.Reset(int(col.Offsets[rows] - col.Offsets[0]))
		}
		for r := 0; r < rows; r++ {
			src := g.dx[r*ld+f*D : r*ld+f*D+D]
			var ids []int32
			scale := float32(1)
			if col.Offsets == nil {
				ids = col.IDs[r : r+1]
			} else {
				ids = col.IDs[col.Offsets[r]:col.Offsets[r+1]]
				if fld.Pooling == features.PoolMean && len(ids) > 0 {
					scale = 1 / float32(len(ids))
				}
			}
			for _, id := range ids {
				s, added := g.index.Find(id, int32(len(sg.Rows)))
				if added {
					sg.Rows = append(sg.Rows, id)
					n := len(sg.Grad)
					sg.Grad = slices.Grow(sg.Grad, D)[:n+D]
					clear(sg.Grad[n:])
				}
				o := int(s) * D
				axpy(sg.Grad[o:o+D], scale, src)
			}
		}
	}
}

// AddFrom adds the gradients in o to g: the dense gradients elementwise and
// the sparse ones row by row, so that a row touched by both appears once in
// g. It combines the gradients of data-parallel workers that each ran
// Backward on a slice of one batch (features.Batch.SliceTo) into the
// gradient of the whole batch. Both must come from this model; o is not
// changed. It allocates nothing once g's sparse gradients have grown to the
// union's size.
func (g *Grads) AddFrom(o *Grads) error {
	if g == nil || o == nil || g.m != o.m || g.m == nil {
		return batchErr("Grads.AddFrom: gradients of different models")
	}
	dst, src := g.arena, o.arena[:len(g.arena)]
	for i, v := range src {
		dst[i] += v
	}
	D := g.m.dim
	for f := range g.Sparse {
		sg, so := &g.Sparse[f], &o.Sparse[f]
		g.index.Reset(len(sg.Rows) + len(so.Rows))
		for i, id := range sg.Rows {
			g.index.Find(id, int32(i))
		}
		for i, id := range so.Rows {
			s, added := g.index.Find(id, int32(len(sg.Rows)))
			if added {
				sg.Rows = append(sg.Rows, id)
				sg.Grad = append(sg.Grad, so.Grad[i*D:i*D+D]...)
				continue
			}
			axpy(sg.Grad[int(s)*D:int(s)*D+D], 1, so.Grad[i*D:i*D+D])
		}
	}
	return nil
}
