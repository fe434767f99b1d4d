package features

// Side says which part of a scoring request a field comes from. In training
// every row carries both sides; in serving one context row is shared by all
// candidates, so the model can compute the context's contribution once.
type Side uint8

const (
	// SideContext marks user and request fields (one value per request).
	SideContext Side = iota
	// SideCandidate marks item fields (one value per candidate).
	SideCandidate
)

// Pooling says how the embeddings of one row of a sparse field are combined.
type Pooling uint8

const (
	// PoolNone: the field has exactly one id per row (categorical, bucketized numeric).
	PoolNone Pooling = iota
	// PoolMean: mean of the row's embeddings (an empty list gives zeros).
	PoolMean
	// PoolSum: sum of the row's embeddings.
	PoolSum
)

// SparseField describes one embedding-table input produced by the Transformer.
type SparseField struct {
	Name        string
	Cardinality int // rows of the field's embedding table; every id is in [0, Cardinality)
	Pooling     Pooling
	Side        Side
}

// DenseField describes one column of the dense block.
type DenseField struct {
	Name string // e.g. "price" or "age.missing" for a missing-indicator
	Side Side
}

// Layout is what a Transformer produces, in order. The model is sized from it.
type Layout struct {
	Sparse []SparseField
	Dense  []DenseField
	Labels []string // label column names, in the order of Batch.Labels
}

// SparseColumn holds the ids of one sparse field for a batch.
type SparseColumn struct {
	// IDs are embedding-table rows. For a PoolNone field len(IDs) == Rows.
	IDs []int32
	// Offsets is nil for PoolNone fields. Otherwise len(Offsets) == Rows+1 and
	// the ids of row i are IDs[Offsets[i]:Offsets[i+1]].
	Offsets []int32
	// Keys are, for an exact field (Field.Exact), the map key of each id
	// (IDTable), parallel to IDs (0 where the id is null); nil otherwise.
	// Training's IDTables.Admit reads them.
	Keys []uint64
}

// Batch is a block of transformed examples, ready for the model. Its slices
// are owned by the Batch and reused by TransformTo; a caller that keeps data
// past the next TransformTo must copy it. A Batch is not safe for concurrent
// mutation.
type Batch struct {
	Rows   int
	Sparse []SparseColumn // one per Layout.Sparse, same order
	// Dense is row-major: Rows x DenseWidth, DenseWidth == len(Layout.Dense).
	Dense      []float32
	DenseWidth int
	// Labels holds one slice of length Rows per Layout.Labels entry (nil in
	// serving, where there are no labels).
	Labels [][]float32
	// Weights are per-row sample weights, or nil when the spec has none (all 1).
	Weights []float32
	// Groups are per-row group keys (hash of the spec's group column, e.g. user
	// id) for GAUC, or nil when the spec has none.
	Groups []uint64

	// dict is Transformer.TransformTo's scratch for dictionary columns.
	dict dictScratch
}

// SliceTo makes dst a view of rows [lo, hi) of b without copying: dst's
// slices alias b's. Pooled fields keep b's full IDs with the sub-range of
// Offsets, which index IDs absolutely. dst's Sparse and Labels headers are
// reused when large enough, so a steady-state call allocates nothing.
func (b *Batch) SliceTo(dst *Batch, lo, hi int) {
	if lo < 0 || hi > b.Rows || lo > hi {
		panic("features: SliceTo range out of bounds")
	}
	dst.Rows = hi - lo
	dst.DenseWidth = b.DenseWidth
	if cap(dst.Sparse) < len(b.Sparse) {
		dst.Sparse = make([]SparseColumn, len(b.Sparse))
	}
	dst.Sparse = dst.Sparse[:len(b.Sparse)]
	for i, s := range b.Sparse {
		if s.Offsets == nil {
			dst.Sparse[i] = SparseColumn{IDs: s.IDs[lo:hi], Keys: sliceOrNil(s.Keys, lo, hi)}
		} else {
			dst.Sparse[i] = SparseColumn{IDs: s.IDs, Offsets: s.Offsets[lo : hi+1], Keys: s.Keys}
		}
	}
	dst.Dense = b.Dense[lo*b.DenseWidth : hi*b.DenseWidth]
	if b.Labels == nil {
		dst.Labels = nil
	} else {
		if cap(dst.Labels) < len(b.Labels) {
			dst.Labels = make([][]float32, len(b.Labels))
		}
		dst.Labels = dst.Labels[:len(b.Labels)]
		for i, l := range b.Labels {
			dst.Labels[i] = l[lo:hi]
		}
	}
	dst.Weights = sliceOrNil(b.Weights, lo, hi)
	dst.Groups = sliceOrNil(b.Groups, lo, hi)
}

func sliceOrNil[T any](s []T, lo, hi int) []T {
	if s == nil {
		return nil
	}
	return s[lo:hi]
}
