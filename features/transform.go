package features

import (
	"math"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// TransformerConfig configures a Transformer.
type TransformerConfig struct {
	// Labels makes TransformTo read the task label columns into
	// Batch.Labels (training and evaluation), and makes it strict: a
	// number of a dense field that is finite in the record but not as a
	// float32, before or after the field's transform, is an error
	// (FaultRange) as a bad label or weight is. Without Labels (serving)
	// such a value gets the field's default and missing indicator, as NaN
	// and infinities do. Default: false (serving: no labels).
	Labels bool
	// IDs are the exact tables the transform looks the rows of exact
	// fields up in (see IDTables), made by NewIDTables for the same spec.
	// Default: nil, new empty tables (Transformer.IDs returns them).
	IDs *IDTables
}

// Validate reports whether the configuration is usable (every value is).
func (c TransformerConfig) Validate() error { return nil }

// Transformer turns raw records into model batches, the same way in
// training and in serving. It is immutable after construction and safe for
// concurrent use, provided each goroutine passes its own *Batch.
type Transformer struct {
	layout    Layout
	ids       *IDTables
	sparse    []sparsePlan
	dense     []densePlan
	vectors   []vectorPlan
	labels    []labelPlan
	weight    string
	group     string
	groupSeed uint64
	// groupField is the sparse plan whose hashes are the group keys (the
	// group column is a hash-mode categorical field), or -1.
	groupField int
	// strict (training, with labels): a FaultRange value is an error, not
	// a missing value.
	strict bool
	check  *Checker
}

type sparsePlan struct {
	col     string
	kind    Kind
	seed    uint64
	buckets uint64
	vocab   *vocabTable // vocabulary mode; nil in hash mode
	exact   *IDTable    // exact mode; nil otherwise
	bounds  []float64   // bucketized numeric
}

type densePlan struct {
	col       string
	tr        Transform
	mean, inv float64 // standardize: (x-mean)*inv
	def       float32
	at        int // column of the value in the dense block
	missing   int // column of the missing indicator, or -1
}

type labelPlan struct {
	col  string
	kind TaskKind
	mask bool // a mask column: 1 where non-zero, 0 where zero, null or NaN
}

// NewTransformer builds the transform of a spec. stats may be nil when no
// field needs fitted statistics (hash-mode categoricals, numeric fields
// with transform none or log1p); otherwise a field whose statistics are
// missing is an error wrapping ErrStats.
func NewTransformer(spec *Spec, stats *Stats, cfg TransformerConfig) (*Transformer, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Transformer{weight: spec.SampleWeight, group: spec.GroupKey, groupField: -1, strict: cfg.Labels, ids: cfg.IDs}
	if t.ids == nil {
		var err error
		if t.ids, err = NewIDTables(spec); err != nil {
			return nil, err
		}
	}
	nexact := 0
	for i := range spec.Fields {
		if spec.Fields[i].Exact != nil {
			nexact++
		}
	}
	if t.ids.Len() != nexact {
		return nil, errorf(ErrSpec, "features: %d exact tables given for %d exact fields", t.ids.Len(), nexact)
	}
	if spec.GroupKey != "" {
		t.groupSeed = FieldSeed(spec.GroupKey)
	}
	fstats := func(f *Field, need string) (*FieldStats, error) {
		var fs *FieldStats
		if stats != nil {
			fs = stats.Fields[f.Name]
		}
		if fs == nil {
			return nil, errorf(ErrStats, "features: field %q: %s needs fitted stats (run onestone fit), found none", f.Name, need)
		}
		if fs.Kind != f.Kind {
			return nil, errorf(ErrStats, "features: field %q: stats are for a %s field, spec says %s", f.Name, fs.Kind, f.Kind)
		}
		return fs, nil
	}
	for i := range spec.Fields {
		f := &spec.Fields[i]
		if !f.Sparse() {
			continue
		}
		p := sparsePlan{col: f.Name, kind: f.Kind, seed: FieldSeed(f.Name)}
		sf := SparseField{Name: f.Name, Side: f.Side, Pooling: f.Pooling}
		switch {
		case f.Kind == Numeric: // bucketize
			fs, err := fstats(f, "bucketize")
			if err != nil {
				return nil, err
			}
			if fs.Boundaries == nil {
				return nil, errorf(ErrStats, "features: field %q: bucketize needs fitted boundaries, found none", f.Name)
			}
			if len(fs.Boundaries) >= f.Buckets {
				return nil, errorf(ErrStats, "features: field %q: %d boundaries for %d buckets", f.Name, len(fs.Boundaries), f.Buckets)
			}
			p.bounds = fs.Boundaries
			sf.Cardinality = f.Buckets + 1
		case f.Vocab != nil:
			fs, err := fstats(f, "a vocabulary")
			if err != nil {
				return nil, err
			}
			if fs.Vocab == nil {
				return nil, errorf(ErrStats, "features: field %q: vocabulary mode needs a fitted vocabulary, found none", f.Name)
			}
			var ok bool
			if p.vocab, ok = newVocabTable(fs.Vocab.Values); !ok {
				return nil, errorf(ErrStats, "features: field %q: a vocabulary value appears twice", f.Name)
			}
			sf.Cardinality = len(fs.Vocab.Values) + 1
		case f.Exact != nil:
			p.exact = t.ids.table(f.Name)
			if p.exact == nil || p.exact.cfg != f.Exact.WithDefaults() || p.exact.sparse != len(t.sparse) {
				return nil, errorf(ErrSpec, "features: field %q: the exact tables given are not this spec's", f.Name)
			}
			sf.Cardinality = f.Exact.Rows()
		default:
			p.buckets = uint64(f.Buckets)
			sf.Cardinality = f.Buckets + 1
		}
		if f.Name == spec.GroupKey && f.Kind == Categorical && f.Vocab == nil {
			// Same column, same seed: the field's hashes (an exact
			// field's map keys) are the group keys.
			t.groupField = len(t.sparse)
		}
		t.sparse = append(t.sparse, p)
		t.layout.Sparse = append(t.layout.Sparse, sf)
	}
	for i := range spec.Fields {
		f := &spec.Fields[i]
		if f.Sparse() {
			continue
		}
		if f.Kind == Vector {
			var fs *FieldStats
			if f.Normalize == NormalizePerDim || f.Normalize == NormalizeGlobal {
				var err error
				if fs, err = fstats(f, "normalize: "+string(f.Normalize)); err != nil {
					return nil, err
				}
			}
			if err := t.addVector(f, fs); err != nil {
				return nil, err
			}
			continue
		}
		p := densePlan{col: f.Name, tr: f.Transform, def: float32(f.Default), missing: -1, inv: 1}
		if f.Transform == TransformStandardize {
			fs, err := fstats(f, "standardize")
			if err != nil {
				return nil, err
			}
			if fs.Numeric == nil {
				return nil, errorf(ErrStats, "features: field %q: standardize needs a fitted mean and std, found none", f.Name)
			}
			p.mean = fs.Numeric.Mean
			if fs.Numeric.Std > 0 {
				p.inv = 1 / fs.Numeric.Std
			}
		}
		p.at = len(t.layout.Dense)
		t.layout.Dense = append(t.layout.Dense, DenseField{Name: f.Name, Side: f.Side})
		if f.MissingIndicator {
			p.missing = len(t.layout.Dense)
			t.layout.Dense = append(t.layout.Dense, DenseField{Name: f.Name + ".missing", Side: f.Side})
		}
		t.dense = append(t.dense, p)
	}
	if cfg.Labels {
		t.layout.Labels = []string{}
		for _, task := range spec.Tasks {
			t.labels = append(t.labels, labelPlan{col: task.Label, kind: task.Kind})
			t.layout.Labels = append(t.layout.Labels, task.Label)
		}
		for _, c := range spec.MaskColumns() {
			t.labels = append(t.labels, labelPlan{col: c, mask: true})
			t.layout.Labels = append(t.layout.Labels, c)
		}
	}
	t.check = &Checker{labels: t.labels, weight: t.weight, vectors: t.vectors, vectorRanges: t.strict}
	for _, p := range t.dense {
		if t.strict {
			t.check.dense = append(t.check.dense, p)
		}
	}
	return t, nil
}

// Layout returns what TransformTo produces. The caller must not modify it.
func (t *Transformer) Layout() Layout { return t.layout }

// Checker returns the row checks of TransformTo: with Labels, the rows it
// would refuse (a source can drop them first, see Checker); without, only
// the sample weight's.
func (t *Transformer) Checker() *Checker { return t.check }

// IDs returns the exact tables the transform looks rows up in.
func (t *Transformer) IDs() *IDTables { return t.ids }

func growInt32(s []int32, n int) []int32 {
	if cap(s) < n {
		return make([]int32, n, n+n/4)
	}
	return s[:n]
}

func growUint64(s []uint64, n int) []uint64 {
	if cap(s) < n {
		return make([]uint64, n, n+n/4)
	}
	return s[:n]
}

func growFloat32(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n, n+n/4)
	}
	return s[:n]
}

// TransformTo transforms a record into dst, reusing dst's slices: once dst
// has grown to the largest record, a call allocates nothing. The record
// must hold the columns of spec.Columns(cfg.Labels); extra columns are
// ignored. Errors name the column (and row for invalid values) and wrap
// ErrSchema or ErrValue; after an error dst's contents are unspecified.
func (t *Transformer) TransformTo(dst *Batch, rec arrow.RecordBatch) error {
	n := int(rec.NumRows())
	dst.Rows = n
	if cap(dst.Sparse) < len(t.sparse) {
		dst.Sparse = make([]SparseColumn, len(t.sparse))
	}
	dst.Sparse = dst.Sparse[:len(t.sparse)]
	var groups []uint64
	if t.group != "" {
		if cap(dst.Groups) < n {
			dst.Groups = make([]uint64, n, n+n/4)
		}
		dst.Groups = dst.Groups[:n]
		groups = dst.Groups
	} else {
		dst.Groups = nil
	}
	for i := range t.sparse {
		var g []uint64
		if i == t.groupField {
			g = groups
		}
		if err := t.sparse[i].fill(&dst.Sparse[i], rec, n, g, &dst.dict); err != nil {
			return err
		}
	}
	w := len(t.layout.Dense)
	dst.DenseWidth = w
	dst.Dense = growFloat32(dst.Dense, n*w)
	for i := range t.dense {
		if err := t.dense[i].fill(dst.Dense, w, rec, n, t.strict); err != nil {
			return err
		}
	}
	for i := range t.vectors {
		if err := t.vectors[i].fill(dst.Dense, w, rec, n, t.strict); err != nil {
			return err
		}
	}
	if t.labels == nil {
		dst.Labels = nil
	} else {
		if cap(dst.Labels) < len(t.labels) {
			dst.Labels = make([][]float32, len(t.labels))
		}
		dst.Labels = dst.Labels[:len(t.labels)]
		for i, l := range t.labels {
			a, err := recordColumn(rec, l.col)
			if err != nil {
				return err
			}
			c, ok := makeNumCol(a)
			if !ok {
				return typeErr(l.col, "label "+wantNumeric, a.DataType())
			}
			out := growFloat32(dst.Labels[i], n)
			dst.Labels[i] = out
			if err := fillLabels(out, &c, l); err != nil {
				return err
			}
		}
	}
	if t.weight == "" {
		dst.Weights = nil
	} else {
		a, err := recordColumn(rec, t.weight)
		if err != nil {
			return err
		}
		c, ok := makeNumCol(a)
		if !ok {
			return typeErr(t.weight, "sample weight "+wantNumeric, a.DataType())
		}
		dst.Weights = growFloat32(dst.Weights, n)
		for r := range dst.Weights {
			v, err := weightValue(&c, r, t.weight)
			if err != nil {
				return err
			}
			dst.Weights[r] = v
		}
	}
	if t.group != "" && t.groupField < 0 {
		a, err := recordColumn(rec, t.group)
		if err != nil {
			return err
		}
		c, ok := makeTextCol(a, true)
		if !ok {
			return typeErr(t.group, "group key "+wantCategorical, a.DataType())
		}
		for r := range dst.Groups {
			if c.isNull(r) {
				dst.Groups[r] = 0
			} else {
				dst.Groups[r] = c.hash(r, t.groupSeed)
			}
		}
	}
	return nil
}

func fillLabels(out []float32, c *numCol, l labelPlan) error {
	if l.mask {
		for r := range out {
			out[r] = 0
			if v, ok := c.value(r); ok && v != 0 && !math.IsNaN(v) {
				out[r] = 1
			}
		}
		return nil
	}
	if !c.nulls && l.kind != TaskRegression {
		// Fast paths for the common 0/1 encodings.
		switch c.kind {
		case nBool:
			for r := range out {
				if c.b.Value(r) {
					out[r] = 1
				} else {
					out[r] = 0
				}
			}
			return nil
		case nInt64:
			for r, v := range c.i64[:len(out)] {
				if uint64(v) > 1 {
					return rowErr(l.col, r, FaultLabel, "binary label must be 0 or 1, found %d", v)
				}
				out[r] = float32(v)
			}
			return nil
		case nInt32:
			for r, v := range c.i32[:len(out)] {
				if uint32(v) > 1 {
					return rowErr(l.col, r, FaultLabel, "binary label must be 0 or 1, found %d", v)
				}
				out[r] = float32(v)
			}
			return nil
		}
	}
	for r := range out {
		v, err := labelValue(c, r, l.col, l.kind)
		if err != nil {
			return err
		}
		out[r] = v
	}
	return nil
}

// bucketOf returns 1 + the number of boundaries <= x (sorted ascending).
// The search halves the range without branches (SETcc), which values in
// random order would mispredict at every step.
func bucketOf(bounds []float64, x float64) int32 {
	n := len(bounds)
	if n == 0 {
		return 1
	}
	base := 0
	for n > 1 {
		half := n >> 1
		// le*half, not an if around base += half: the compiler turns a
		// float comparison into a branch, but a 0/1 value into SETcc.
		le := 0
		if bounds[base+half] <= x {
			le = 1
		}
		base += le * half
		n -= half
	}
	le := 0
	if bounds[base] <= x {
		le = 1
	}
	return int32(base + le + 1)
}

// hashedID is the id of a hashed value whose hash is h: 1 + h mod buckets
// (0 is null's).
func (p *sparsePlan) hashedID(h uint64) int32 { return int32(1 + h%p.buckets) }

func (p *sparsePlan) id(c *textCol, r int) int32 {
	if p.vocab == nil {
		return p.hashedID(c.hash(r, p.seed))
	}
	return p.vocab.id(c, r) // 0 when out of vocabulary
}

// hashIDs fills the ids of a hash-mode categorical column; when groups is
// not nil it also receives the full hashes (the group key is this column).
func (p *sparsePlan) hashIDs(ids []int32, c *textCol, groups []uint64) {
	seed, m := p.seed, p.buckets
	var null []byte
	if c.nulls {
		null = c.arr.NullBitmapBytes()
	}
	off := c.arr.Data().Offset()
	isNull := func(r int) bool {
		return null != nil && null[(off+r)>>3]&(1<<uint((off+r)&7)) == 0
	}
	switch c.kind {
	case tString:
		for r := range ids {
			var h uint64
			if !isNull(r) {
				h = xxh64(c.sval(r), seed)
				ids[r] = int32(1 + h%m)
			} else {
				ids[r] = 0
			}
			if groups != nil {
				groups[r] = h
			}
		}
	case tInt64:
		for r, v := range c.i64[:len(ids)] {
			var h uint64
			if !isNull(r) {
				h = hashInt(v, seed)
				ids[r] = int32(1 + h%m)
			} else {
				ids[r] = 0
			}
			if groups != nil {
				groups[r] = h
			}
		}
	case tInt32:
		for r, v := range c.i32[:len(ids)] {
			var h uint64
			if !isNull(r) {
				h = hashInt(int64(v), seed)
				ids[r] = int32(1 + h%m)
			} else {
				ids[r] = 0
			}
			if groups != nil {
				groups[r] = h
			}
		}
	default:
		for r := range ids {
			var h uint64
			if !c.isNull(r) {
				h = c.hash(r, seed)
				ids[r] = int32(1 + h%m)
			} else {
				ids[r] = 0
			}
			if groups != nil {
				groups[r] = h
			}
		}
	}
}

// dictScratch holds the ids and hashes of a dictionary column's values
// (dictIDs; for exact fields the rows, keys and cut flags, exactDictIDs),
// kept in the Batch so that a Transformer stays safe for
// concurrent use and a steady-state call allocates nothing.
type dictScratch struct {
	ids    []int32
	hashes []uint64
	cut    []bool
}

// dictIDs fills the ids of a categorical column of dictionary-encoded
// strings (tDictString) the way the per-row paths do, but hashing or
// looking up each dictionary value once instead of once per row: a
// dictionary of a few hundred values serves a batch of thousands of rows.
// When groups is not nil it also receives the full hashes (hash mode).
func (p *sparsePlan) dictIDs(ids []int32, c *textCol, groups []uint64, sc *dictScratch) {
	hash := p.dictValueIDs(c.str, sc, groups != nil)
	if !hash {
		groups = nil // a vocabulary field is never the group key (groupField)
	}
	var null []byte
	if c.nulls {
		null = c.arr.NullBitmapBytes()
	}
	off := c.arr.Data().Offset()
	idx32, _ := c.dict.Indices().(*array.Int32)
	for r := range ids {
		if null != nil && null[(off+r)>>3]&(1<<uint((off+r)&7)) == 0 {
			ids[r] = 0
			if groups != nil {
				groups[r] = 0
			}
			continue
		}
		var k int
		if idx32 != nil {
			k = int(idx32.Value(r))
		} else {
			k = c.dict.GetValueIndex(r)
		}
		ids[r] = sc.ids[k]
		if groups != nil {
			groups[r] = sc.hashes[k]
		}
	}
}

// dictValueIDs fills sc.ids with the ids of the values of dictionary d,
// and sc.hashes with their hashes when wantHashes is set in hash mode; it
// reports whether the field is in hash mode.
func (p *sparsePlan) dictValueIDs(d *array.String, sc *dictScratch, wantHashes bool) (hash bool) {
	nd := d.Len()
	sc.ids = growInt32(sc.ids, nd)
	hash = p.vocab == nil
	if hash && wantHashes {
		if cap(sc.hashes) < nd {
			sc.hashes = make([]uint64, nd, nd+nd/4)
		}
		sc.hashes = sc.hashes[:nd]
	}
	offs := d.ValueOffsets()
	var data string
	if b := d.ValueBytes(); len(b) > 0 {
		data = unsafe.String(&b[0], len(b)) // read-only view, as d.Value
	}
	base := offs[0]
	for i := range nd {
		s := data[offs[i]-base : offs[i+1]-base]
		if hash {
			h := xxh64(s, p.seed)
			if wantHashes {
				sc.hashes[i] = h
			}
			sc.ids[i] = p.hashedID(h)
		} else {
			sc.ids[i] = p.vocab.lookupText(s)
		}
	}
	return hash
}

// dictListIDs fills the ids and offsets of a multi-categorical column of
// lists of dictionary-encoded strings, looking each dictionary value up
// once. Null lists are empty and null elements are dropped, as in the
// other paths. It returns the number of ids.
func (p *sparsePlan) dictListIDs(ids, offs []int32, c *listCol, n int, sc *dictScratch) int {
	ch := &c.child
	p.dictValueIDs(ch.str, sc, false)
	vids := sc.ids
	idx32, _ := ch.dict.Indices().(*array.Int32)
	var null []byte
	if ch.nulls {
		null = ch.arr.NullBitmapBytes()
	}
	coff := ch.arr.Data().Offset()
	var idx []int32
	if idx32 != nil {
		idx = idx32.Int32Values()
	}
	if o := c.off32; o != nil && !c.nulls && null == nil && idx != nil && n > 0 {
		// No null list or item: the ids are the items' in one run, the
		// offsets the list's, shifted to start at 0.
		o = o[c.base : c.base+n+1]
		first := o[0]
		out := ids[:o[n]-first]
		for j, x := range idx[first:o[n]] {
			out[j] = vids[x]
		}
		for r, x := range o {
			offs[r] = x - first
		}
		return len(out)
	}
	k := 0
	offs[0] = 0
	for r := 0; r < n; r++ {
		lo, hi := c.span(r)
		if null == nil && idx != nil {
			for _, x := range idx[lo:hi] {
				ids[k] = vids[x]
				k++
			}
		} else {
			for j := lo; j < hi; j++ {
				if null != nil && null[(coff+j)>>3]&(1<<uint((coff+j)&7)) == 0 {
					continue
				}
				ids[k] = vids[ch.dict.GetValueIndex(j)]
				k++
			}
		}
		offs[r+1] = int32(k)
	}
	return k
}

func (p *sparsePlan) fill(dst *SparseColumn, rec arrow.RecordBatch, n int, groups []uint64, sc *dictScratch) error {
	a, err := recordColumn(rec, p.col)
	if err != nil {
		return err
	}
	switch p.kind {
	case Numeric:
		c, ok := makeNumCol(a)
		if !ok {
			return typeErr(p.col, wantNumeric, a.DataType())
		}
		dst.Offsets, dst.Keys = nil, nil
		ids := growInt32(dst.IDs, n)
		dst.IDs = ids
		for r := range ids {
			v, ok := c.value(r)
			if !ok || math.IsNaN(v) {
				ids[r] = 0
			} else {
				ids[r] = bucketOf(p.bounds, v)
			}
		}
	case Categorical:
		c, ok := makeTextCol(a, false)
		if !ok {
			return typeErr(p.col, wantCategorical, a.DataType())
		}
		dst.Offsets = nil
		ids := growInt32(dst.IDs, n)
		dst.IDs = ids
		if p.exact != nil {
			keys := growUint64(dst.Keys, n)
			dst.Keys = keys
			if c.kind == tDictString {
				p.exactDictIDs(ids, keys, &c, groups, sc)
			} else {
				p.exactIDs(ids, keys, &c, groups)
			}
			return nil
		}
		dst.Keys = nil
		if c.kind == tDictString {
			p.dictIDs(ids, &c, groups, sc)
			return nil
		}
		if p.vocab == nil {
			p.hashIDs(ids, &c, groups)
			return nil
		}
		if v := p.vocab; !c.nulls {
			// Vocabulary fast paths for the common types.
			switch c.kind {
			case tString:
				for r := range ids {
					s := c.sval(r)
					ids[r] = v.lookupText(s)
				}
				return nil
			case tInt64:
				for r, x := range c.i64[:n] {
					ids[r] = v.lookupInt(x)
				}
				return nil
			case tInt32:
				for r, x := range c.i32[:n] {
					ids[r] = v.lookupInt(int64(x))
				}
				return nil
			}
		}
		for r := range ids {
			if c.isNull(r) {
				ids[r] = 0
			} else {
				ids[r] = p.id(&c, r)
			}
		}
	case MultiCategorical:
		c, ok := makeListCol(a)
		if !ok {
			return typeErr(p.col, wantMulti, a.DataType())
		}
		offs := growInt32(dst.Offsets, n+1)
		dst.Offsets = offs
		ids := growInt32(dst.IDs, c.total(n))
		if p.exact != nil {
			keys := growUint64(dst.Keys, len(ids))
			k := p.exactListIDs(ids, keys, offs, &c, n)
			dst.IDs, dst.Keys = ids[:k], keys[:k]
			return nil
		}
		dst.Keys = nil
		if c.child.kind == tDictString {
			dst.IDs = ids[:p.dictListIDs(ids, offs, &c, n, sc)]
			return nil
		}
		k := 0
		offs[0] = 0
		if ch := &c.child; ch.kind == tString && !ch.nulls {
			// Fast path: string items without nulls.
			for r := 0; r < n; r++ {
				lo, hi := c.span(r)
				if p.vocab != nil {
					for j := lo; j < hi; j++ {
						s := ch.sval(j)
						ids[k] = p.vocab.lookupText(s)
						k++
					}
				} else {
					for j := lo; j < hi; j++ {
						ids[k] = p.hashedID(xxh64(ch.sval(j), p.seed))
						k++
					}
				}
				offs[r+1] = int32(k)
			}
			dst.IDs = ids[:k]
			return nil
		}
		for r := 0; r < n; r++ {
			lo, hi := c.span(r)
			for j := lo; j < hi; j++ {
				if c.child.isNull(j) {
					continue // null items are dropped
				}
				ids[k] = p.id(&c.child, j)
				k++
			}
			offs[r+1] = int32(k)
		}
		dst.IDs = ids[:k]
	}
	return nil
}

func (p *densePlan) fill(dense []float32, w int, rec arrow.RecordBatch, n int, strict bool) error {
	a, err := recordColumn(rec, p.col)
	if err != nil {
		return err
	}
	c, ok := makeNumCol(a)
	if !ok {
		return typeErr(p.col, wantNumeric, a.DataType())
	}
	if c.kind == nFloat64 && !c.nulls {
		return p.fillFloat64(dense, w, c.f64[:n], strict)
	}
	for r := 0; r < n; r++ {
		v, ok := c.value(r)
		if err := p.fillRow(dense[r*w:r*w+w], r, v, ok, strict); err != nil {
			return err
		}
	}
	return nil
}

// fillRow writes row r's dense value (and missing indicator) of raw value
// v, present when ok.
func (p *densePlan) fillRow(row []float32, r int, v float64, ok, strict bool) error {
	var x float32
	if ok && finite(v) {
		if x, ok = p.transform(v); !ok && strict {
			return rangeErr(p, r, v)
		}
	} else {
		ok = false
	}
	if !ok {
		row[p.at] = p.def
		if p.missing >= 0 {
			row[p.missing] = 1
		}
		return nil
	}
	row[p.at] = x
	if p.missing >= 0 {
		row[p.missing] = 0
	}
	return nil
}

// fillFloat64 is fill of a float64 column without nulls: a value within
// float32's range whose transform is too (every value, in practice) is
// written by the loop itself, any other by fillRow, which decides
// exactly as for other columns. The values are transformed a block at a
// time, in a loop of their own (the transform chosen once, log1p's body
// in the loop), then stored.
func (p *densePlan) fillFloat64(dense []float32, w int, vals []float64, strict bool) error {
	const limit = math.MaxFloat32
	at, mi := p.at, p.missing
	if at >= w || mi >= w || len(dense) < len(vals)*w {
		panic("features: dense block too small") // a Transformer bug
	}
	mean, inv := p.mean, p.inv
	var buf [256]float64
	for lo := 0; lo < len(vals); lo += len(buf) {
		block := vals[lo:min(lo+len(buf), len(vals))]
		ys := buf[:len(block)]
		switch p.tr {
		case TransformLog1p:
			signedLog1pTo(ys, block)
		case TransformStandardize:
			for i, v := range block {
				ys[i] = (v - mean) * inv
			}
		default:
			copy(ys, block)
		}
		for i, v := range block {
			x := float32(ys[i])
			r := lo + i
			if math.Abs(v) <= limit && math.Abs(float64(x)) <= limit {
				dense[r*w+at] = x
				if mi >= 0 {
					dense[r*w+mi] = 0
				}
				continue
			}
			if err := p.fillRow(dense[r*w:r*w+w], r, v, true, strict); err != nil {
				return err
			}
		}
	}
	return nil
}
