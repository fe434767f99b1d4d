package mmoe

import (
	"fmt"
	"math/rand/v2"

	"github.com/onestone/onestone/features"
)

// withExperts gives cfg 3 experts when its architecture mixes experts
// (MMoE, OMoE, CGC, PLE); the others take none.
func withExperts(cfg Config) Config {
	switch cfg.Arch {
	case ArchMMoE, ArchOMoE, ArchCGC, ArchPLE:
		cfg.Experts = 3
	}
	return cfg
}

// smallLayout has one single-id, one mean-pooled and one sum-pooled field
// and three dense columns.
func smallLayout() features.Layout {
	return features.Layout{
		Sparse: []features.SparseField{
			{Name: "user", Cardinality: 7, Pooling: features.PoolNone, Side: features.SideContext},
			{Name: "tags", Cardinality: 5, Pooling: features.PoolMean, Side: features.SideContext},
			{Name: "cats", Cardinality: 6, Pooling: features.PoolSum, Side: features.SideCandidate},
		},
		Dense: []features.DenseField{{Name: "a"}, {Name: "b"}, {Name: "c", Side: features.SideCandidate}},
	}
}

// randomBatch fills a batch for layout with random ids (pooled lists of 0..3
// ids, so some are empty) and dense values in [-1, 1).
func randomBatch(l features.Layout, rows int, rng *rand.Rand) *features.Batch {
	b := &features.Batch{Rows: rows, DenseWidth: len(l.Dense)}
	for _, f := range l.Sparse {
		var col features.SparseColumn
		if f.Pooling == features.PoolNone {
			for r := 0; r < rows; r++ {
				col.IDs = append(col.IDs, int32(rng.IntN(f.Cardinality)))
			}
		} else {
			col.Offsets = []int32{0}
			for r := 0; r < rows; r++ {
				n := rng.IntN(4)
				if r == 0 {
					n = 0 // always one empty list
				}
				for k := 0; k < n; k++ {
					col.IDs = append(col.IDs, int32(rng.IntN(f.Cardinality)))
				}
				col.Offsets = append(col.Offsets, int32(len(col.IDs)))
			}
		}
		b.Sparse = append(b.Sparse, col)
	}
	for i := 0; i < rows*len(l.Dense); i++ {
		b.Dense = append(b.Dense, float32(2*rng.Float64()-1))
	}
	return b
}

// stdLayout is the standard workload of docs/benchmarks.md: 26 single-id fields
// of 100,000 rows (0-12 context, 13-25 candidate), 13 dense context columns.
func stdLayout() features.Layout {
	var l features.Layout
	for i := 0; i < 26; i++ {
		side := features.SideContext
		if i >= 13 {
			side = features.SideCandidate
		}
		l.Sparse = append(l.Sparse, features.SparseField{Name: fmt.Sprintf("C%d", i+1), Cardinality: 100_000, Side: side})
	}
	for i := 0; i < 13; i++ {
		l.Dense = append(l.Dense, features.DenseField{Name: fmt.Sprintf("I%d", i+1)})
	}
	return l
}

// chained gives an AIT configuration (arch aitm, or ait) without a
// transfer the chain heads[0] -> heads[1] -> ...
func chained(c Config, heads []string) Config {
	if (c.Arch == ArchAITM || c.AIT) && c.Transfer == nil {
		c.Transfer = map[string]string{}
		for i := 1; i < len(heads); i++ {
			c.Transfer[heads[i]] = heads[i-1]
		}
	}
	return c
}
