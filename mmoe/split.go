package mmoe

import (
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
// A Split copies the candidate columns of the first-layer weights when made
// and by Refresh; call Refresh after the model's weights change (a Split of a
// model being trained is stale). Forward is safe for concurrent use with
// separate Workspaces made by the Split's NewWorkspace; Refresh is not.
type Split struct {
	m     *Model
	cols  []int     // x columns of the candidate side, ascending
	wCand []float32 // level-0 fused weight restricted to cols: [out, len(cols)]
	inK   int
}

// NewSplit prepares side-split scoring for m.
func (m *Model) NewSplit() *Split {
	s := &Split{m: m}
	for f, fld := range m.layout.Sparse {
		if fld.Side == features.SideCandidate {
			for d := 0; d < m.dim; d++ {
				s.cols = append(s.cols, f*m.dim+d)
			}
		}
	}
	for i, fld := range m.layout.Dense {
		if fld.Side == features.SideCandidate {
			s.cols = append(s.cols, m.embWidth+i)
		}
	}
	s.inK = len(s.cols)
	g := &m.levels[0].groups[0]
	s.wCand = make([]float32, g.out*s.inK)
	s.Refresh()
	return s
}

// Refresh re-reads the first-layer weights from the model.
func (s *Split) Refresh() {
	m := s.m
	g := &m.levels[0].groups[0]
	w := m.arena[g.w : g.w+g.out*g.in]
	for o := 0; o < g.out; o++ {
		row, dst := w[o*g.in:(o+1)*g.in], s.wCand[o*s.inK:(o+1)*s.inK]
		for j, c := range s.cols {
			dst[j] = row[c]
		}
	}
}

// CandidateWidth is the number of first-layer input columns computed per
// candidate.
func (s *Split) CandidateWidth() int { return s.inK }

// NewWorkspace makes a Workspace for up to maxCandidates candidates that
// both Model.Forward and Split.Forward accept.
func (s *Split) NewWorkspace(maxCandidates int) *Workspace {
	ws := s.m.NewWorkspace(maxCandidates)
	ws.xk = make([]float32, ws.maxRows*s.inK)
	ws.yc = make([]float32, s.m.levels[0].groups[0].out)
	return ws
}

// ForwardRows scores a batch whose rows each carry their own context (batch
// inference over logged events) with the arithmetic of Forward: each row's
// context share of the first layer and its candidate share are computed
// apart and then added. Since every kernel computes a row of its product
// the same way whatever the number of rows, a row scores the same to the
// last bit here as it does through Forward as a candidate of its own
// context. ws must come from this Split's NewWorkspace.
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
	// Context shares: every row's x with its candidate columns zeroed.
	x := ws.x[:rows*g.in]
	m.gather(x, b)
	for r := 0; r < rows; r++ {
		xr := x[r*g.in : (r+1)*g.in]
		for _, c := range s.cols {
			xr[c] = 0
		}
	}
	yc := ws.ycRows[:rows*g.out]
	if rows > 0 {
		kernels.Sgemm(false, true, rows, g.out, g.in, 1, x, g.in, m.arena[g.w:g.w+g.out*g.in], g.in, 0, yc, g.out)
	}
	// Candidate shares, then the sum row by row as Forward adds its one
	// context row.
	m.gatherCand(ws.xk, s.inK, b)
	y := ws.lv[0].y[0]
	if s.inK > 0 && rows > 0 {
		kernels.Sgemm(false, true, rows, g.out, s.inK, 1, ws.xk, s.inK, s.wCand, s.inK, 0, y, g.out)
	} else {
		clear(y[:rows*g.out])
	}
	for r := 0; r < rows; r++ {
		addBias(y[r*g.out:(r+1)*g.out], g.out, 1, yc[r*g.out:(r+1)*g.out])
	}
	m.forward(ws, rows, true)
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
// not apply to a split forward.
func (s *Split) Forward(ws *Workspace, ctx, cand *features.Batch) error {
	m := s.m
	if ws == nil || ws.m != m || ws.xk == nil {
		return batchErr("split forward: workspace was not made by this split")
	}
	ws.rows = -1
	if ctx == nil || ctx.Rows != 1 {
		return batchErr("split forward: the context batch must have exactly 1 row")
	}
	if err := m.checkBatch(ctx, 1); err != nil {
		return err
	}
	if err := m.checkBatch(cand, ws.maxRows); err != nil {
		return err
	}
	rows := cand.Rows
	g := &m.levels[0].groups[0]
	// Context share: x_ctx (candidate columns zero) times the full weight.
	x := ws.x[:m.inWidth]
	m.gather(x, ctx)
	for _, c := range s.cols {
		x[c] = 0
	}
	kernels.Sgemm(false, true, 1, g.out, g.in, 1, x, g.in, m.arena[g.w:g.w+g.out*g.in], g.in, 0, ws.yc, g.out)
	if rows == 0 {
		m.forward(ws, 0, true)
		return nil
	}
	// Candidate share: gather only the candidate columns, then one product.
	m.gatherCand(ws.xk, s.inK, cand)
	y := ws.lv[0].y[0]
	if s.inK > 0 {
		kernels.Sgemm(false, true, rows, g.out, s.inK, 1, ws.xk, s.inK, s.wCand, s.inK, 0, y, g.out)
	} else {
		clear(y[:rows*g.out])
	}
	addBias(y, g.out, rows, ws.yc)
	m.forward(ws, rows, true)
	return nil
}

// gatherCand writes the candidate-side columns of x, compacted to width w.
func (m *Model) gatherCand(xk []float32, w int, b *features.Batch) {
	D, rows := m.dim, b.Rows
	col := 0
	for f, fld := range m.layout.Sparse {
		if fld.Side != features.SideCandidate {
			continue
		}
		sc := &b.Sparse[f]
		tbl := m.emb[f]
		for r := 0; r < rows; r++ {
			dst := xk[r*w+col : r*w+col+D]
			if sc.Offsets == nil {
				o := int(sc.IDs[r]) * D
				copy(dst, tbl[o:o+D])
				continue
			}
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
		if fld.Side != features.SideCandidate {
			continue
		}
		for r := 0; r < rows; r++ {
			xk[r*w+col] = b.Dense[r*b.DenseWidth+i]
		}
		col++
	}
}
