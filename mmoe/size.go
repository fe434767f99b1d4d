package mmoe

import (
	"math"

	"github.com/onestone/onestone/features"
)

// Footprint is the size of a model: how many tensors it has and how many
// float32 values they hold (dense parameters and embedding tables). A
// count that would overflow int64 is math.MaxInt64.
type Footprint struct {
	Tensors int64
	Floats  int64
}

// Bytes is the memory the model's tensors take: 4 bytes a value
// (math.MaxInt64 when that overflows).
func (f Footprint) Bytes() int64 { return mulSat(f.Floats, 4) }

// maxWiring bounds the size of a topology SizeOf builds: the experts of
// all levels plus the candidates of all gates. Real models have a few
// hundred; a configuration beyond it is refused rather than wired.
const maxWiring = 1 << 22

// SizeOf returns the footprint of the model New(cfg, layout, heads) would
// build, without allocating its tensors: from the architecture's wiring
// (newTopology) and the widths, so a loader can refuse a configuration
// that would not fit before allocating anything (a manifest saying
// buckets: 2000000000). It checks cfg, layout and heads as New does, and
// refuses a wiring of more than 4 Mi experts and gate candidates.
func SizeOf(cfg Config, layout features.Layout, heads []string) (Footprint, error) {
	if err := cfg.Validate(); err != nil {
		return Footprint{}, err
	}
	cfg = cfg.WithDefaults()
	if err := checkLayout(layout); err != nil {
		return Footprint{}, err
	}
	if err := checkHeads(cfg, heads); err != nil {
		return Footprint{}, err
	}
	// The wiring's size, bounded above before it is built: every level has
	// S + T·K experts and at most T + 1 gates of at most S + T·K
	// candidates.
	T, S, K := int64(len(heads)), int64(cfg.Experts), int64(cfg.TaskExperts)
	experts := addSat(S, mulSat(T, K))
	if w := mulSat(int64(cfg.Levels), mulSat(experts, T+2)); w > maxWiring {
		return Footprint{}, configErr("%d levels of %d experts for %d tasks: more than %d experts and gate candidates", cfg.Levels, experts, T, maxWiring)
	}
	var fp Footprint
	add := func(tensors, floats int64) {
		fp.Tensors = addSat(fp.Tensors, tensors)
		fp.Floats = addSat(fp.Floats, floats)
	}
	// linear adds a Linear layer's weight [out, in] and bias [out].
	linear := func(in, out int64) { add(2, addSat(mulSat(out, in), out)) }
	dim := int64(cfg.EmbeddingDim)
	in := addSat(mulSat(int64(len(layout.Sparse)), dim), int64(len(layout.Dense)))
	hidden := int64(cfg.ExpertHidden[len(cfg.ExpertHidden)-1])
	for _, lt := range newTopology(cfg, heads).levels {
		// Every expert of a level has the same layers.
		var e Footprint
		prev := in
		for _, h := range cfg.ExpertHidden {
			e.Tensors += 2
			e.Floats = addSat(e.Floats, addSat(mulSat(int64(h), prev), int64(h)))
			prev = int64(h)
		}
		n := int64(len(lt.experts))
		add(mulSat(e.Tensors, n), mulSat(e.Floats, n))
		for _, g := range lt.gates {
			if len(g.cands) > 1 { // a gate over one expert has no parameters
				linear(in, int64(len(g.cands)))
			}
		}
		in = hidden // later levels read the previous level's gates
	}
	for range heads {
		prev := hidden
		for _, h := range cfg.Tower {
			linear(prev, int64(h))
			prev = int64(h)
		}
		linear(prev, 1) // the head
	}
	if cfg.AIT { // ait.go: info [D, D] + bias, query, key, value [D, D]
		D := hidden
		if n := len(cfg.Tower); n > 0 {
			D = int64(cfg.Tower[n-1])
		}
		for _, h := range heads {
			if _, ok := cfg.Transfer[h]; ok {
				linear(D, D)
				add(3, mulSat(3, mulSat(D, D)))
			}
		}
	}
	for _, f := range layout.Sparse {
		add(1, mulSat(int64(f.Cardinality), dim))
	}
	return fp, nil
}

// addSat and mulSat are + and × on non-negative int64s, saturating at
// math.MaxInt64.
func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func mulSat(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}
