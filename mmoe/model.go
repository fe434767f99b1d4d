package mmoe

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"

	"github.com/onestone/onestone/features"
)

// Param is one dense parameter tensor. Data aliases the model's storage:
// writing into it changes the model.
type Param struct {
	Name  string
	Shape []int
	Data  []float32
}

// Embedding is one field's embedding table, [Rows, Dim] row-major. Data
// aliases the model's storage.
type Embedding struct {
	Name  string
	Field int // index in Layout.Sparse
	Rows  int
	Dim   int
	Data  []float32
}

// layer is a Linear layer followed by an activation. Its weight [out, in] and
// bias [out] live at offsets w and b of Model.arena.
type layer struct {
	in, out int
	w, b    int
	act     activation
}

// group is the fused first layer of every expert and gate of a level that
// read the same input stream: one weight [out, in] made of the consumers'
// weights stacked by rows, one bias [out].
type group struct {
	src     int // -1: the model input x; otherwise a gate of the previous level
	in, out int
	w, b    int
}

type expert struct {
	grp, col int     // first layer's columns [col, col+layers[0].out) of its group
	layers   []layer // layers[0] is a row block of the group's weight
}

type gate struct {
	cands []int // expert indices of the level; len 1 means no parameters
	grp   int   // group whose output holds the logits, if len(cands) > 1
	col   int
}

type level struct {
	groups  []group
	experts []expert
	gates   []gate
}

type paramInfo struct {
	name  string
	shape []int
	off   int
	init  initKind
	fanIn int
	fanOu int
}

type initKind uint8

const (
	initZero   initKind = iota
	initHe              // uniform ±sqrt(6/fanIn), for layers followed by ReLU or GELU
	initXavier          // uniform ±sqrt(6/(fanIn+fanOut)), for tanh and linear layers
)

// embeddingInitBound is the half-width of the uniform embedding init.
const embeddingInitBound = 0.05

// Model is a multi-task network. See the package documentation for its
// structure and parameter names. A Model is safe for concurrent Forward and
// Backward calls with separate Workspaces and Grads, as long as nothing
// writes its parameters meanwhile.
type Model struct {
	cfg    Config
	layout features.Layout
	heads  []string
	act    activation

	dim      int // embedding dim
	embWidth int // len(Sparse) * dim
	inWidth  int // embWidth + dense width
	hidden   int // expert output width

	arena  []float32 // all dense parameters
	params []paramInfo
	emb    [][]float32 // per sparse field, [card, dim]

	levels   []level
	towers   [][]layer // per task
	headL    []layer   // per task, out 1
	towerSrc []int     // per task: gate of the last level

	maxCands   int
	lastShared []int    // LastSharedLayer
	ait        *aitPlan // AIT's transfer between heads, or nil (ait.go)

	arenaLen int // len(arena): build plans it, allocate makes the arena
}

// New builds a model for the layout and the named heads (one per task, in
// the order of the logits), initialising the weights from cfg.Seed:
// hidden layers with ReLU or GELU get He (Kaiming) uniform weights
// U(±sqrt(6/in)), tanh layers, gates and heads Xavier uniform
// U(±sqrt(6/(in+out))), all biases zero, and embeddings U(±0.05). The same
// Config, Layout and heads give bit-identical weights.
func New(cfg Config, layout features.Layout, heads []string) (*Model, error) {
	m, err := newModel(cfg, layout, heads)
	if err != nil {
		return nil, err
	}
	m.initWeights()
	return m, nil
}

// NewFromSafetensors builds the model New would and takes every weight from
// r, as LoadSafetensors does (every tensor must be present, with its
// shape), without the random initialisation they would overwrite: loading
// a saved model this way costs the read alone.
//
// Nothing is allocated in proportion to the model before the file's header
// has been checked against it: every name and shape, and, when r is an
// io.Seeker (a file), the file's length. The tensors then take exactly the
// bytes of the file's data section, so a configuration that disagrees
// with its file (a table of 2,000,000,001 rows beside a file holding
// 100,001) is an error wrapping ErrFormat, never an allocation. Bound the
// memory of a configuration that agrees with its file with SizeOf first.
func NewFromSafetensors(cfg Config, layout features.Layout, heads []string, r io.Reader) (*Model, error) {
	return NewFromSafetensorsInto(cfg, layout, heads, r, nil)
}

// NewFromSafetensorsInto is NewFromSafetensors, reading the weights into
// the storage of old, a model nobody uses any more, when old's tensors
// take exactly the new model's sizes (Fits); otherwise, or when old is
// nil, into new memory. Whatever happens, old must not be used after the
// call: on success its storage is the new model's, on an error it may
// hold part of the file.
//
// Why: a server that replaces its model with a retrained one of the same
// shape would otherwise make, and fault in page by page, as much new
// memory as the model takes, while it serves: on a virtual machine that
// backs fresh pages lazily this is most of a load's time (0.7 of 0.8 s
// for the 171 MB std model, docs/serving.md).
func NewFromSafetensorsInto(cfg Config, layout features.Layout, heads []string, r io.Reader, old *Model) (*Model, error) {
	fp, err := SizeOf(cfg, layout, heads)
	if err != nil {
		return nil, err
	}
	f, err := readSafetensors(r)
	if err != nil {
		return nil, err
	}
	// Planning the model takes memory in proportion to its number of
	// tensors: no more than a few times what the header held.
	if fp.Tensors > 2*int64(len(f.es))+64 {
		return nil, formatErr(nil, "the file holds %d tensors, the model configuration has %d", len(f.es), fp.Tensors)
	}
	m, err := planModel(cfg, layout, heads)
	if err != nil {
		return nil, err
	}
	found, _, err := m.match(f.es, true)
	if err != nil {
		return nil, err
	}
	if old != nil && old.fits(m) {
		m.arena, m.emb = old.arena, old.emb
	} else {
		m.allocate()
	}
	if _, err := m.readData(f, found); err != nil {
		return nil, err
	}
	return m, nil
}

// Fits reports whether a model of cfg, layout and heads would take
// exactly m's storage: the same size of dense parameters and the same
// rows and width of every embedding table (NewFromSafetensorsInto then
// reads into it).
func (m *Model) Fits(cfg Config, layout features.Layout, heads []string) bool {
	p, err := planModel(cfg, layout, heads)
	return err == nil && m.fits(p)
}

// fits is Fits for a planned model p.
func (m *Model) fits(p *Model) bool {
	if m.arenaLen != p.arenaLen || len(m.arena) != m.arenaLen || len(m.emb) != len(p.layout.Sparse) {
		return false
	}
	for i, f := range p.layout.Sparse {
		if len(m.emb[i]) != f.Cardinality*p.dim {
			return false
		}
	}
	return true
}

// Spare returns a model of m's configuration, layout and heads whose
// weights are zero and whose memory is resident: every page of it has
// been written once. It is storage for the next NewFromSafetensorsInto
// of a model m's size, reserved ahead of time: the pages are faulted in
// here, when the caller chooses, rather than while that read runs. It
// stops with ctx's error when ctx ends.
func (m *Model) Spare(ctx context.Context) (*Model, error) {
	c, err := newModel(m.cfg, m.layout, m.heads)
	if err != nil {
		return nil, err
	}
	// A float32 per page: writing a page of a new mapping makes the
	// kernel back it (a read would map the shared zero page instead).
	step := os.Getpagesize() / 4
	touch := func(d []float32) error {
		for i := 0; i < len(d); i += step {
			if i%(4<<20) == 0 && ctx.Err() != nil {
				return fmt.Errorf("mmoe: spare: %w", ctx.Err())
			}
			d[i] = 0
		}
		return nil
	}
	if err := touch(c.arena); err != nil {
		return nil, err
	}
	for _, e := range c.emb {
		if err := touch(e); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// newModel is New without the weights' initialisation (they are zero).
func newModel(cfg Config, layout features.Layout, heads []string) (*Model, error) {
	m, err := planModel(cfg, layout, heads)
	if err != nil {
		return nil, err
	}
	m.allocate()
	return m, nil
}

// planModel is newModel without the storage: every tensor's name, shape
// and place is known, nothing is allocated for their values.
func planModel(cfg Config, layout features.Layout, heads []string) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if err := checkLayout(layout); err != nil {
		return nil, err
	}
	if err := checkHeads(cfg, heads); err != nil {
		return nil, err
	}
	act, _ := parseActivation(cfg.Activation)
	m := &Model{
		cfg:    cfg,
		layout: cloneLayout(layout),
		heads:  slices.Clone(heads),
		act:    act,
		dim:    cfg.EmbeddingDim,
		hidden: cfg.ExpertHidden[len(cfg.ExpertHidden)-1],
	}
	m.embWidth = len(layout.Sparse) * m.dim
	m.inWidth = m.embWidth + len(layout.Dense)
	m.build()
	return m, nil
}

func checkLayout(l features.Layout) error {
	if len(l.Sparse)+len(l.Dense) == 0 {
		return configErr("layout: no sparse and no dense fields")
	}
	seen := map[string]bool{}
	for i, f := range l.Sparse {
		if f.Name == "" || strings.ContainsAny(f.Name, ". ") {
			return configErr("layout: sparse field %d: name %q must be non-empty without dots or spaces", i, f.Name)
		}
		if seen[f.Name] {
			return configErr("layout: sparse field %q appears twice", f.Name)
		}
		seen[f.Name] = true
		if f.Cardinality < 1 || f.Cardinality > math.MaxInt32 {
			return configErr("layout: sparse field %q: cardinality %d: want 1..%d", f.Name, f.Cardinality, math.MaxInt32)
		}
		if f.Pooling > features.PoolSum {
			return configErr("layout: sparse field %q: unknown pooling %d", f.Name, f.Pooling)
		}
	}
	return nil
}

func checkHeads(cfg Config, heads []string) error {
	if len(heads) == 0 {
		return configErr("heads: want at least one")
	}
	for i, h := range heads {
		if h == "" || h == "shared" || strings.ContainsAny(h, ". ") {
			return configErr("heads[%d] = %q: want a non-empty name without dots or spaces, other than \"shared\"", i, h)
		}
		if slices.Contains(heads[:i], h) {
			return configErr("heads: %q appears twice", h)
		}
	}
	return cfg.validateArchHeads(heads)
}

func cloneLayout(l features.Layout) features.Layout {
	return features.Layout{
		Sparse: slices.Clone(l.Sparse),
		Dense:  slices.Clone(l.Dense),
		Labels: slices.Clone(l.Labels),
	}
}

// builder plans the arena.
type builder struct {
	m *Model
	n int
}

func (b *builder) alloc(name string, init initKind, fanIn, fanOut int, shape ...int) int {
	size := 1
	for _, s := range shape {
		size *= s
	}
	off := b.n
	b.n += size
	b.m.params = append(b.m.params, paramInfo{name: name, shape: shape, off: off, init: init, fanIn: fanIn, fanOu: fanOut})
	return off
}

// consumer is one expert or gate reading a group's input.
type consumer struct {
	prefix string // "experts.3" or "gates.ctr"
	out    int
	expert int // index in level.experts, or -1
	gate   int // index in level.gates, or -1
}

func (m *Model) hiddenInit() initKind {
	if m.act == actTanh {
		return initXavier
	}
	return initHe
}

// build plans the parameters of the model's topology (newTopology) in the
// arena (allocate makes it), in storage order: level by level, the fused first layers of
// each input stream (the weights of its experts and gates stacked by rows,
// then their biases), then the experts' deeper layers; then each task's
// tower and head. This order is the safetensors layout of saved models.
func (m *Model) build() {
	tp := newTopology(m.cfg, m.heads)
	b := &builder{m: m}
	in := m.inWidth
	for _, lt := range tp.levels {
		m.levels = append(m.levels, m.allocLevel(b, lt, in))
		in = m.hidden
	}
	m.towerSrc = tp.towers
	for _, h := range m.heads {
		in := m.hidden
		var tw []layer
		for l, out := range m.cfg.Tower {
			w := b.alloc(fmt.Sprintf("towers.%s.layers.%d.weight", h, l), m.hiddenInit(), in, out, out, in)
			bb := b.alloc(fmt.Sprintf("towers.%s.layers.%d.bias", h, l), initZero, 0, 0, out)
			tw = append(tw, layer{in: in, out: out, w: w, b: bb, act: m.act})
			in = out
		}
		m.towers = append(m.towers, tw)
		w := b.alloc(fmt.Sprintf("heads.%s.weight", h), initXavier, in, 1, 1, in)
		bb := b.alloc(fmt.Sprintf("heads.%s.bias", h), initZero, 0, 0, 1)
		m.headL = append(m.headL, layer{in: in, out: 1, w: w, b: bb, act: actNone})
	}
	// The last layer of the last level's shared experts, in storage order.
	last := map[string]bool{}
	for _, e := range tp.levels[len(tp.levels)-1].experts {
		if e.task < 0 {
			l := len(m.cfg.ExpertHidden) - 1
			last[fmt.Sprintf("%s.layers.%d.weight", e.name, l)] = true
			last[fmt.Sprintf("%s.layers.%d.bias", e.name, l)] = true
		}
	}
	for i, p := range m.params {
		if last[p.name] {
			m.lastShared = append(m.lastShared, i)
		}
	}
	if m.cfg.AIT {
		m.allocAIT(b)
	}
	m.arenaLen = b.n
}

// allocate makes the storage build planned: the dense arena and the
// embedding tables (zero).
func (m *Model) allocate() {
	m.arena = make([]float32, m.arenaLen)
	for _, f := range m.layout.Sparse {
		m.emb = append(m.emb, make([]float32, f.Cardinality*m.dim))
	}
}

// allocLevel allocates the parameters of one level whose streams are
// inWidth wide.
func (m *Model) allocLevel(b *builder, lt levelTopo, inWidth int) level {
	cfg := m.cfg
	lv := level{experts: make([]expert, len(lt.experts)), gates: make([]gate, len(lt.gates))}
	// Group the consumers by input stream, in order of first use:
	// experts first, then the gates that have parameters.
	var srcs []int
	cons := map[int][]consumer{}
	addCons := func(src int, c consumer) {
		if _, ok := cons[src]; !ok {
			srcs = append(srcs, src)
		}
		cons[src] = append(cons[src], c)
	}
	for i, e := range lt.experts {
		addCons(e.input, consumer{prefix: e.name, out: cfg.ExpertHidden[0], expert: i, gate: -1})
	}
	for i, g := range lt.gates {
		lv.gates[i] = gate{cands: g.cands, grp: -1}
		if len(g.cands) > 1 {
			addCons(g.input, consumer{prefix: g.name, out: len(g.cands), expert: -1, gate: i})
		}
		m.maxCands = max(m.maxCands, len(g.cands))
	}
	for gi, src := range srcs {
		in := inWidth
		grp := group{src: src, in: in}
		// Weights of all consumers, stacked by rows, then their biases.
		col := 0
		for _, c := range cons[src] {
			init, fo := m.hiddenInit(), c.out
			if c.gate >= 0 {
				init = initXavier
			}
			name := c.prefix + ".layers.0.weight"
			if c.gate >= 0 {
				name = c.prefix + ".weight"
			}
			off := b.alloc(name, init, in, fo, c.out, in)
			if col == 0 {
				grp.w = off
			}
			if c.expert >= 0 {
				lv.experts[c.expert] = expert{grp: gi, col: col, layers: []layer{{in: in, out: c.out, w: off, act: m.act}}}
			} else {
				lv.gates[c.gate].grp, lv.gates[c.gate].col = gi, col
			}
			col += c.out
		}
		grp.out = col
		col = 0
		for _, c := range cons[src] {
			name := c.prefix + ".layers.0.bias"
			if c.gate >= 0 {
				name = c.prefix + ".bias"
			}
			off := b.alloc(name, initZero, 0, 0, c.out)
			if col == 0 {
				grp.b = off
			}
			if c.expert >= 0 {
				lv.experts[c.expert].layers[0].b = off
			}
			col += c.out
		}
		lv.groups = append(lv.groups, grp)
	}
	// Deeper expert layers.
	for i := range lv.experts {
		e := &lv.experts[i]
		for l := 1; l < len(cfg.ExpertHidden); l++ {
			in, out := cfg.ExpertHidden[l-1], cfg.ExpertHidden[l]
			w := b.alloc(fmt.Sprintf("%s.layers.%d.weight", lt.experts[i].name, l), m.hiddenInit(), in, out, out, in)
			bb := b.alloc(fmt.Sprintf("%s.layers.%d.bias", lt.experts[i].name, l), initZero, 0, 0, out)
			e.layers = append(e.layers, layer{in: in, out: out, w: w, b: bb, act: m.act})
		}
	}
	return lv
}

func (m *Model) initWeights() {
	rng := rand.New(rand.NewPCG(m.cfg.Seed, m.cfg.Seed))
	uniform := func(dst []float32, bound float64) {
		for i := range dst {
			dst[i] = float32((2*rng.Float64() - 1) * bound)
		}
	}
	for _, p := range m.params {
		d := m.paramData(p)
		switch p.init {
		case initZero:
			clear(d)
		case initHe:
			uniform(d, math.Sqrt(6/float64(p.fanIn)))
		case initXavier:
			uniform(d, math.Sqrt(6/float64(p.fanIn+p.fanOu)))
		}
	}
	for _, e := range m.emb {
		uniform(e, embeddingInitBound)
	}
}

func (m *Model) paramData(p paramInfo) []float32 {
	n := 1
	for _, s := range p.shape {
		n *= s
	}
	return m.arena[p.off : p.off+n : p.off+n]
}

// Config returns the effective configuration (defaults applied).
func (m *Model) Config() Config { return m.cfg.WithDefaults() }

// Layout returns a copy of the layout the model was built for.
func (m *Model) Layout() features.Layout { return cloneLayout(m.layout) }

// Heads returns the head names, in the order of the logits.
func (m *Model) Heads() []string { return slices.Clone(m.heads) }

// Arch returns the architecture, Config().Arch.
func (m *Model) Arch() string { return m.cfg.Arch }

// InputWidth is the width of the first-layer input x:
// len(Sparse)*EmbeddingDim + len(Dense).
func (m *Model) InputWidth() int { return m.inWidth }

// Params returns the dense parameters in a stable order (the storage order).
// Data slices alias the model.
func (m *Model) Params() []Param {
	ps := make([]Param, len(m.params))
	for i, p := range m.params {
		ps[i] = Param{Name: p.name, Shape: slices.Clone(p.shape), Data: m.paramData(p)}
	}
	return ps
}

// Embeddings returns the embedding tables in Layout.Sparse order. Data slices
// alias the model.
func (m *Model) Embeddings() []Embedding {
	es := make([]Embedding, len(m.emb))
	for i, f := range m.layout.Sparse {
		es[i] = Embedding{Name: "embeddings." + f.Name + ".weight", Field: i, Rows: f.Cardinality, Dim: m.dim, Data: m.emb[i]}
	}
	return es
}

// DenseParams returns the names and values of the dense parameters, as
// Params does without the shapes: one slice of each per tensor.
func (m *Model) DenseParams() (names []string, values [][]float32) {
	for _, p := range m.params {
		names = append(names, p.name)
		values = append(values, m.paramData(p))
	}
	return names, values
}

// EmbeddingTables returns the names, values and row widths of the
// embedding tables, as Embeddings does: one of each per table.
func (m *Model) EmbeddingTables() (names []string, values [][]float32, dims []int) {
	for _, e := range m.Embeddings() {
		names, values, dims = append(names, e.Name), append(values, e.Data), append(dims, e.Dim)
	}
	return names, values, dims
}

// NumParams is the number of scalar parameters, dense and embedding.
func (m *Model) NumParams() int {
	n := len(m.arena)
	for _, e := range m.emb {
		n += len(e)
	}
	return n
}

// NumDenseParams is the number of scalar dense (non-embedding) parameters.
func (m *Model) NumDenseParams() int { return len(m.arena) }

// MatchingLayers returns groups of indices into Params() whose tensors
// correspond across tasks and have equal shapes: the task-specific experts
// (same level, same index k, same layer, weight and bias separately), the
// task gates of cgc and ple, the towers (layer by layer) and the heads. Each
// group has one entry per task, in head order. With one task it is empty.
// Soft parameter sharing penalises λ Σ_{t≠t'} ‖θ_t − θ_t'‖² over each group.
func (m *Model) MatchingLayers() [][]int {
	if len(m.heads) < 2 {
		return nil
	}
	idx := map[string]int{}
	for i, p := range m.params {
		idx[p.name] = i
	}
	groups := map[string][]int{}
	var order []string
	for _, p := range m.params {
		key, t := m.taskKey(p.name)
		if t < 0 {
			continue
		}
		g, ok := groups[key]
		if !ok {
			g = make([]int, len(m.heads))
			for i := range g {
				g[i] = -1
			}
			order = append(order, key)
		}
		g[t] = idx[p.name]
		groups[key] = g
	}
	var out [][]int
	for _, k := range order {
		if !slices.Contains(groups[k], -1) {
			out = append(out, groups[k])
		}
	}
	return out
}

// taskKey finds the task a parameter name belongs to (-1: shared) and the
// name with the task replaced by a placeholder: names with equal keys
// correspond across tasks.
func (m *Model) taskKey(name string) (key string, task int) {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		if i == 0 || !(parts[i-1] == "task_experts" || parts[i-1] == "gates" || parts[i-1] == "towers" || parts[i-1] == "heads" || parts[i-1] == "ait") {
			continue
		}
		if t := slices.Index(m.heads, p); t >= 0 {
			parts[i] = "\x00"
			return strings.Join(parts, "."), t
		}
	}
	return "", -1
}

// TaskOf returns the task (head index) that dense parameter i (an index into
// Params()) belongs to, or -1 for a parameter shared by all tasks (shared
// experts, omoe's gate and ple's shared gates). Embeddings are all shared.
// Freezing the shared part when warm-starting means freezing the -1s and the
// embeddings.
func (m *Model) TaskOf(i int) int {
	_, t := m.taskKey(m.params[i].name)
	return t
}

// LastSharedLayer returns the indices into Params() of the weights and
// biases of the last layer of every shared expert of the last level: the
// layer GradNorm (Chen et al. 2018) takes per-task gradient norms on. It is
// empty for single and soft, which share nothing.
func (m *Model) LastSharedLayer() []int { return slices.Clone(m.lastShared) }
