package mmoe

import (
	"math"
	"slices"
)

// AIT is the adaptive information transfer of AITM (Xi et al., "Modeling
// the Sequential Dependence among Audience Multi-step Conversions with
// Multi-task Learning in Targeted Display Advertising", KDD 2021). With
// Config.AIT, a head h whose task has a parent p (Config.Transfer) does not
// read its tower's output q_h directly. Let D be the tower's output width
// (the last Tower width, or the expert width without a tower) and z_p the
// vector p's head reads. Then
//
//	info = act(W_info·z_p + b_info)                 what p passes on
//	for u in {info, q_h}: s_u = <W_q·u, W_k·u>/√D   self-attention scores
//	(a_info, a_q) = softmax(s_info, s_q)
//	z_h = a_info·W_v·info + a_q·W_v·q_h
//
// and h's head reads z_h; a head without a parent reads z_h = q_h. So
// information flows along the chain impression → click → cart → buy, each
// step attending over its own representation and its predecessor's. The
// parameters of head h are
//
//	ait.<h>.info.weight [D, D], ait.<h>.info.bias [D]
//	ait.<h>.query.weight, ait.<h>.key.weight, ait.<h>.value.weight [D, D]
//
// stored after every head, query, key and value next to each other so that
// one product computes all three. The calibrator that keeps the steps'
// probabilities ordered is a loss (mtl's calibrator_weight).

// aitPlan is the model's AIT: one entry per head.
type aitPlan struct {
	d     int
	order []int // heads, each parent before its children
	heads []aitHead
}

type aitHead struct {
	parent int   // head it receives from, or -1
	info   layer // D -> D, with the model's activation
	qkv    int   // offset of the [3D, D] query, key and value weights
}

// validateTransfer checks AIT's transfer against the heads.
func (c Config) validateTransfer(heads []string) error {
	if !c.AIT {
		if len(c.Transfer) > 0 {
			return configErr("transfer %v without ait: the transfer is AIT's (arch aitm, or ait: true)", c.Transfer)
		}
		return nil
	}
	if len(c.Transfer) == 0 {
		return configErr("arch %s with ait: no task has a parent: AITM transfers information along a chain of tasks (give each task after the first its parent:)", c.Arch)
	}
	for child, parent := range c.Transfer {
		if !slices.Contains(heads, child) || !slices.Contains(heads, parent) {
			return configErr("ait: transfer %s -> %s: both must be heads %v", parent, child, heads)
		}
		if child == parent {
			return configErr("ait: head %q transfers to itself", child)
		}
	}
	for _, h := range heads {
		steps := 0
		for p, ok := c.Transfer[h]; ok; p, ok = c.Transfer[p] {
			if steps++; steps > len(heads) {
				return configErr("ait: the transfer from head %q's parents forms a cycle", h)
			}
		}
	}
	return nil
}

// aitWidth is the width D of what the heads read: the towers' output.
func (m *Model) aitWidth() int {
	if n := len(m.cfg.Tower); n > 0 {
		return m.cfg.Tower[n-1]
	}
	return m.hidden
}

// allocAIT allocates the AIT parameters of every head with a parent, after
// everything else (build calls it last).
func (m *Model) allocAIT(b *builder) {
	D := m.aitWidth()
	p := &aitPlan{d: D, heads: make([]aitHead, len(m.heads))}
	for h, name := range m.heads {
		p.heads[h].parent = -1
		if par, ok := m.cfg.Transfer[name]; ok {
			p.heads[h].parent = slices.Index(m.heads, par)
		}
	}
	// Parents first: a head enters the order after its parent.
	placed := make([]bool, len(m.heads))
	var place func(h int)
	place = func(h int) {
		if placed[h] {
			return
		}
		if par := p.heads[h].parent; par >= 0 {
			place(par)
		}
		placed[h] = true
		p.order = append(p.order, h)
	}
	for h := range m.heads {
		place(h)
	}
	for h, name := range m.heads {
		a := &p.heads[h]
		if a.parent < 0 {
			continue
		}
		pre := "ait." + name + "."
		w := b.alloc(pre+"info.weight", m.hiddenInit(), D, D, D, D)
		bb := b.alloc(pre+"info.bias", initZero, 0, 0, D)
		a.info = layer{in: D, out: D, w: w, b: bb, act: m.act}
		a.qkv = b.alloc(pre+"query.weight", initXavier, D, D, D, D)
		b.alloc(pre+"key.weight", initXavier, D, D, D, D)
		b.alloc(pre+"value.weight", initXavier, D, D, D, D)
	}
	m.ait = p
}

// aitWS is a Workspace's AIT activations, per head (nil for a head without
// a parent, but for the views).
type aitWS struct {
	q, z       [][]float32 // views: the tower's output; what the head reads
	info, pre  [][]float32 // [rows, D]; pre for GELU
	qkvI, qkvQ [][]float32 // [rows, 3D]: query, key, value of info and of q
	att        [][]float32 // [rows, 2]: a_info, a_q
}

func (m *Model) newAITWorkspace(ws *Workspace, buf func(int) []float32, gelu bool) {
	p := m.ait
	D := p.d
	aw := &aitWS{}
	last := &ws.lv[len(ws.lv)-1]
	for h := range m.heads {
		q := last.out[m.towerSrc[h]]
		if n := len(m.towers[h]); n > 0 {
			q = ws.tw[h][n-1]
		}
		aw.q = append(aw.q, q)
		if p.heads[h].parent < 0 {
			aw.z = append(aw.z, q)
			aw.info, aw.pre, aw.qkvI, aw.qkvQ, aw.att = append(aw.info, nil), append(aw.pre, nil), append(aw.qkvI, nil), append(aw.qkvQ, nil), append(aw.att, nil)
			continue
		}
		var pre []float32
		if gelu {
			pre = buf(D)
		}
		aw.z = append(aw.z, buf(D))
		aw.info, aw.pre = append(aw.info, buf(D)), append(aw.pre, pre)
		aw.qkvI, aw.qkvQ, aw.att = append(aw.qkvI, buf(3*D)), append(aw.qkvQ, buf(3*D)), append(aw.att, buf(2))
	}
	ws.ait = aw
}

// aitForward computes every head's input z and its logit from the
// towers' outputs, parents first.
func (m *Model) aitForward(ws *Workspace, rows int) {
	p, aw, a := m.ait, ws.ait, m.arena
	D := p.d
	for _, h := range p.order {
		ah := &p.heads[h]
		if ah.parent >= 0 {
			L := &ah.info
			linearTo(ws.prec, L.act, aw.info[h], D, aw.z[ah.parent], D, rows, D, D, a[L.w:L.w+D*D], a[L.b:L.b+D], aw.pre[h])
			W := a[ah.qkv : ah.qkv+3*D*D]
			linearTo(ws.prec, actNone, aw.qkvI[h], 3*D, aw.info[h], D, rows, D, 3*D, W, nil, nil)
			linearTo(ws.prec, actNone, aw.qkvQ[h], 3*D, aw.q[h], D, rows, D, 3*D, W, nil, nil)
			attend(aw.z[h], aw.att[h], aw.qkvI[h], aw.qkvQ[h], rows, D)
		}
		L := &m.headL[h]
		linearTo(ws.prec, actNone, ws.logits[h], 1, aw.z[h], D, rows, D, 1, a[L.w:L.w+D], a[L.b:L.b+1], nil)
		ws.Logits[h] = ws.logits[h][:rows]
	}
}

// attend writes, per row, the softmax weights of the two items' scores
// into att and their weighted values into z. qkvI and qkvQ hold each
// item's query, key and value side by side ([rows, 3D]).
func attend(z, att, qkvI, qkvQ []float32, rows, D int) {
	inv := 1 / math.Sqrt(float64(D))
	for r := range rows {
		i, q := qkvI[r*3*D:(r+1)*3*D], qkvQ[r*3*D:(r+1)*3*D]
		si := float64(dot(i[:D], i[D:2*D])) * inv
		sq := float64(dot(q[:D], q[D:2*D])) * inv
		mx := max(si, sq)
		ei, eq := math.Exp(si-mx), math.Exp(sq-mx)
		ai, aq := float32(ei/(ei+eq)), float32(eq/(ei+eq))
		att[2*r], att[2*r+1] = ai, aq
		zr, vi, vq := z[r*D:(r+1)*D], i[2*D:], q[2*D:]
		for k := range zr {
			zr[k] = ai*vi[k] + aq*vq[k]
		}
	}
}

// aitGrad is a Grads' AIT scratch, per head.
type aitGrad struct {
	dz          [][]float32 // [rows, D]: gradient of what the head reads
	dinfo, dq   [][]float32 // [rows, D]
	dqkvI, dqkv [][]float32 // [rows, 3D]
}

func (m *Model) newAITGrads(g *Grads, buf func(int) []float32) {
	p := m.ait
	D := p.d
	ag := &aitGrad{}
	for h := range m.heads {
		ag.dz = append(ag.dz, buf(D))
		if p.heads[h].parent < 0 {
			ag.dinfo, ag.dq, ag.dqkvI, ag.dqkv = append(ag.dinfo, nil), append(ag.dq, nil), append(ag.dqkvI, nil), append(ag.dqkv, nil)
			continue
		}
		ag.dinfo, ag.dq = append(ag.dinfo, buf(D)), append(ag.dq, buf(D))
		ag.dqkvI, ag.dqkv = append(ag.dqkvI, buf(3*D)), append(ag.dqkv, buf(3*D))
	}
	g.ait = ag
}

// aitBack runs the heads' and AIT's backward pass, children before their
// parents, and leaves the gradient of each tower's output where the
// towers' backward pass reads it (the last tower layer's gradient, or, for
// a head without a tower, added to its gate's output gradient).
func (m *Model) aitBack(ws *Workspace, g *Grads, dLogits [][]float32, rows int) {
	p, aw, ag := m.ait, ws.ait, g.ait
	a, ga := m.arena, g.arena
	D := p.d
	for h := range m.heads {
		L := &m.headL[h]
		linearBack(ws.prec, ga[L.w:L.w+D], ga[L.b:L.b+1], dLogits[h], 1, aw.z[h], D, rows, D, 1, a[L.w:L.w+D], ag.dz[h], D, 0)
	}
	last := &g.lv[len(g.lv)-1]
	for i := len(p.order) - 1; i >= 0; i-- {
		h := p.order[i]
		ah := &p.heads[h]
		dq := ag.dz[h]
		if ah.parent >= 0 {
			attendBack(ag.dqkvI[h], ag.dqkv[h], ag.dz[h], aw.att[h], aw.qkvI[h], aw.qkvQ[h], rows, D)
			W, dW := a[ah.qkv:ah.qkv+3*D*D], ga[ah.qkv:ah.qkv+3*D*D]
			linearBack(ws.prec, dW, nil, ag.dqkvI[h], 3*D, aw.info[h], D, rows, D, 3*D, W, ag.dinfo[h], D, 0)
			linearBack(ws.prec, dW, nil, ag.dqkv[h], 3*D, aw.q[h], D, rows, D, 3*D, W, ag.dq[h], D, 0)
			L := &ah.info
			activateBack(L.act, ag.dinfo[h], D, aw.info[h], aw.pre[h], D, rows, D)
			linearBack(ws.prec, ga[L.w:L.w+D*D], ga[L.b:L.b+D], ag.dinfo[h], D, aw.z[ah.parent], D, rows, D, D, a[L.w:L.w+D*D], ag.dz[ah.parent], D, 1)
			dq = ag.dq[h]
		}
		if n := len(m.towers[h]); n > 0 {
			copy(g.dtw[h][n-1][:rows*D], dq[:rows*D])
		} else if rows > 0 {
			axpy(last.dout[m.towerSrc[h]][:rows*D], 1, dq[:rows*D])
		}
	}
}

// attendBack turns the gradient dz of attend's output into the gradients
// of both items' queries, keys and values.
func attendBack(dqkvI, dqkvQ, dz, att, qkvI, qkvQ []float32, rows, D int) {
	inv := float32(1 / math.Sqrt(float64(D)))
	for r := range rows {
		dzr := dz[r*D : (r+1)*D]
		i, q := qkvI[r*3*D:(r+1)*3*D], qkvQ[r*3*D:(r+1)*3*D]
		di, dq := dqkvI[r*3*D:(r+1)*3*D], dqkvQ[r*3*D:(r+1)*3*D]
		ai, aq := att[2*r], att[2*r+1]
		gi, gq := dot(dzr, i[2*D:]), dot(dzr, q[2*D:])
		gbar := ai*gi + aq*gq
		dsi, dsq := ai*(gi-gbar)*inv, aq*(gq-gbar)*inv
		for k := range D {
			di[k], di[D+k], di[2*D+k] = dsi*i[D+k], dsi*i[k], ai*dzr[k]
			dq[k], dq[D+k], dq[2*D+k] = dsq*q[D+k], dsq*q[k], aq*dzr[k]
		}
	}
}

// AITWeights returns, for the last Forward, head's attention weights
// (rows x 2, row-major: the weight of what its parent passed on, then of
// its own tower's output), or nil when the head receives no transfer.
func (ws *Workspace) AITWeights(head int) []float32 {
	m := ws.m
	if ws.rows < 0 || m.ait == nil || head < 0 || head >= len(m.heads) || m.ait.heads[head].parent < 0 {
		return nil
	}
	return ws.ait.att[head][:2*ws.rows]
}
