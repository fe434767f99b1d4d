package features

import (
	"errors"
	"math"
	"slices"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
)

// JSONRows decodes JSON events straight into a Batch: the serving path,
// without the Arrow arrays of JSONDecoder + Transformer.TransformTo. It
// reads events with JSONDecoder's parser (the same rules: conversions,
// errors, unknown keys, limits) and transforms each value with the
// Transformer's rules for the Arrow column JSONDecoder would have built,
// so a row gives the same Batch, bit for bit, either way: the ids (exact
// ids' keys and rows), offsets and dense values. The tests compare the
// two paths.
//
// A serving Transformer only (no labels, sample weight or group key). Its
// fields must have the types of Spec.Schema(false) in the schema: utf8
// for categorical, list<utf8> for multi_categorical, float64 for numeric,
// list<float64> for vector fields; other columns are parsed and ignored.
//
// A row fault (a vector of another length than its dim) does not stop
// decoding: the row gets a missing vector and Fault reports the first.
// Rows whose value of a column is null or absent can take another row's
// (a request's context) with Merge.
//
// A JSONRows is not safe for concurrent use; its Transformer is shared.
type JSONRows struct {
	t   *Transformer
	dec *JSONDecoder // parser only, no builders
	// planOf is the plan that reads each column.
	planOf []planRef
	dst    *Batch
	rows   int
	// nulls are, by column, the rows whose value is null or absent.
	nulls [][]int32
	// filled is, by column, the rows given a value or a default so far
	// (see Append; all of them after Finish).
	filled []int32
	// defRow is the dense part of a row whose events lack every field.
	defRow []float32
	// fault is, by vector plan, its first row of a wrong length.
	fault []rowFault
	// cuts counts, by sparse plan, the exact ids cut at MaxIDBytes.
	cuts []int64
	// Merge's scratch for pooled fields (swapped with the batch's).
	ids  []int32
	keys []uint64
	offs []int32
}

type planKind uint8

const (
	planNone planKind = iota
	planSparse
	planDense
	planVector
)

type planRef struct {
	kind planKind
	i    int
}

// rowFault is the first row of a vector plan with a wrong length.
type rowFault struct {
	row, length int  // row -1: none
	fromContext bool // the value came from Merge's context row
}

// NewJSONRows returns a decoder of events in schema into batches of t.
// cfg is as for NewJSONDecoder (its Allocator is not used).
func NewJSONRows(t *Transformer, schema *arrow.Schema, cfg JSONConfig) (*JSONRows, error) {
	if t == nil {
		return nil, errors.New("features: NewJSONRows: nil Transformer")
	}
	if t.labels != nil || t.weight != "" || t.group != "" {
		return nil, errorf(ErrSchema, "features: NewJSONRows: the transform reads labels, a sample weight or a group key: JSONRows makes serving batches")
	}
	dec, err := newJSONParser(schema, cfg)
	if err != nil {
		return nil, err
	}
	j := &JSONRows{
		t:      t,
		dec:    dec,
		planOf: make([]planRef, len(dec.cols)),
		nulls:  make([][]int32, len(dec.cols)),
		filled: make([]int32, len(dec.cols)),
		fault:  make([]rowFault, len(t.vectors)),
		cuts:   make([]int64, len(t.sparse)),
	}
	col := func(name string, want colKind, wantName string, ref planRef) error {
		c, ok := dec.byName[name]
		if !ok || c < 0 {
			return errorf(ErrSchema, "features: column %q: missing from the schema", name)
		}
		if dec.cols[c].kind != want {
			return errorf(ErrSchema, "features: column %q: JSONRows wants %s, found %s", name, wantName, schema.Field(c).Type)
		}
		j.planOf[c] = ref
		return nil
	}
	for i := range t.sparse {
		p := &t.sparse[i]
		want, name := colString, "utf8"
		switch p.kind {
		case Numeric:
			want, name = colFloat64, "float64"
		case MultiCategorical:
			want, name = colStringList, "list<utf8>"
		}
		if err := col(p.col, want, name, planRef{planSparse, i}); err != nil {
			return nil, err
		}
	}
	for i := range t.dense {
		if err := col(t.dense[i].col, colFloat64, "float64", planRef{planDense, i}); err != nil {
			return nil, err
		}
	}
	for i := range t.vectors {
		if err := col(t.vectors[i].col, colFloat64List, "list<float64>", planRef{planVector, i}); err != nil {
			return nil, err
		}
	}
	j.defRow = make([]float32, len(t.layout.Dense))
	for i := range t.dense {
		_ = t.dense[i].fillRow(j.defRow, 0, 0, false, false)
	}
	for i := range t.vectors {
		if p := &t.vectors[i]; p.missing >= 0 {
			j.defRow[p.missing] = 1
		}
	}
	return j, nil
}

// Reset starts a batch in dst: the rows appended next are dst's, from
// row 0. dst's slices are reused: once they have grown to the largest
// batch, Append allocates nothing.
func (j *JSONRows) Reset(dst *Batch) {
	t := j.t
	j.dst, j.rows = dst, 0
	dst.Rows = 0
	if cap(dst.Sparse) < len(t.sparse) {
		dst.Sparse = make([]SparseColumn, len(t.sparse))
	}
	dst.Sparse = dst.Sparse[:len(t.sparse)]
	for i := range t.sparse {
		p, sc := &t.sparse[i], &dst.Sparse[i]
		sc.IDs = sc.IDs[:0]
		if p.kind == MultiCategorical {
			sc.Offsets = append(sc.Offsets[:0], 0)
		} else {
			sc.Offsets = nil
		}
		if p.exact != nil {
			sc.Keys = sc.Keys[:0]
		} else {
			sc.Keys = nil
		}
	}
	dst.DenseWidth = len(t.layout.Dense)
	dst.Dense = dst.Dense[:0]
	dst.Labels, dst.Weights, dst.Groups = nil, nil, nil
	for c := range j.nulls {
		j.nulls[c] = j.nulls[c][:0]
	}
	clear(j.filled)
	for i := range j.fault {
		j.fault[i] = rowFault{row: -1}
	}
	clear(j.cuts)
}

// Append decodes one event and appends it to the batch as its next row.
// A rejected event (the errors of JSONDecoder.Append) appends nothing.
//
// It visits only the event's own keys: the row's dense part starts as a
// copy of the default row (every dense field's default, its missing
// indicator set, zero vectors), and a column the event lacks gets its
// default (and its row in Nulls) only when a later row has a value or at
// Finish, for all such rows at once. An event that sets a few of many
// fields (a candidate, whose context fields are absent) costs its fields.
func (j *JSONRows) Append(event []byte) error {
	d := j.dec
	if err := d.parseEvent(event); err != nil {
		return err
	}
	t, dst := j.t, j.dst
	r := j.rows
	j.rows++
	w := dst.DenseWidth
	dst.Dense = slices.Grow(dst.Dense, w)
	dst.Dense = dst.Dense[:r*w+w]
	row := dst.Dense[r*w : r*w+w]
	copy(row, j.defRow)
	for _, c := range d.seen {
		s := &d.slots[c]
		if s.kind == valNull || int(j.filled[c]) > r {
			continue // null, as absent; or a duplicate key, its last value taken
		}
		j.pad(int(c), r)
		j.filled[c] = int32(r + 1)
		ref := j.planOf[c]
		switch ref.kind {
		case planSparse:
			j.sparseValue(ref.i, s)
		case planDense:
			// Without labels (NewJSONRows) the transform is not strict:
			// fillRow returns no error.
			_ = t.dense[ref.i].fillRow(row, r, s.f, true, false)
		case planVector:
			p := &t.vectors[ref.i]
			out := row[p.at : p.at+p.dim]
			if j.vector(ref.i, p, out, d.nums[s.lo:s.hi], r) == vecOK {
				if p.missing >= 0 {
					row[p.missing] = 0
				}
			} else {
				clear(out) // missing: the default row's zeros and indicator
			}
		}
	}
	return nil
}

// sparseValue appends the id(s) of sparse plan i for a present value s,
// as sparsePlan.fill does.
func (j *JSONRows) sparseValue(i int, s *slot) {
	p, sc := &j.t.sparse[i], &j.dst.Sparse[i]
	switch p.kind {
	case Numeric: // bucketized, as sparsePlan.fill
		id := int32(0)
		if !math.IsNaN(s.f) {
			id = bucketOf(p.bounds, s.f)
		}
		sc.IDs = append(sc.IDs, id)
	case Categorical:
		j.appendText(i, p, sc, s.text)
	case MultiCategorical:
		for _, it := range j.dec.items[s.lo:s.hi] {
			if !it.null { // null items are dropped
				j.appendText(i, p, sc, it.text)
			}
		}
		sc.Offsets = append(sc.Offsets, int32(len(sc.IDs)))
	}
}

// pad gives column c its default in rows filled[c] to r-1, whose events
// lack it, and records them in Nulls: the ids of a sparse field (id 0,
// key 0; no id of a pooled field); a dense or vector field's default is
// in the row already (Append's default row).
func (j *JSONRows) pad(c, r int) {
	f := int(j.filled[c])
	if f >= r {
		return
	}
	j.filled[c] = int32(r)
	nulls := slices.Grow(j.nulls[c], r-f)
	for k := f; k < r; k++ {
		nulls = append(nulls, int32(k))
	}
	j.nulls[c] = nulls
	ref := j.planOf[c]
	if ref.kind != planSparse {
		return
	}
	p, sc := &j.t.sparse[ref.i], &j.dst.Sparse[ref.i]
	if p.kind == MultiCategorical {
		sc.Offsets = slices.Grow(sc.Offsets, r-f)
		n := int32(len(sc.IDs))
		for k := f; k < r; k++ {
			sc.Offsets = append(sc.Offsets, n)
		}
		return
	}
	sc.IDs = appendZeros(sc.IDs, r-f)
	if p.exact != nil {
		sc.Keys = appendZeros(sc.Keys, r-f)
	}
}

// appendZeros appends n zero values to s.
func appendZeros[T int32 | uint64](s []T, n int) []T {
	s = slices.Grow(s, n)
	m := len(s)
	s = s[:m+n]
	clear(s[m:])
	return s
}

// appendText appends the id (and for an exact field the key, its row
// found by Finish) of a categorical value's text b: sparsePlan.fill's
// rules for a utf8 column.
func (j *JSONRows) appendText(i int, p *sparsePlan, sc *SparseColumn, b []byte) {
	s := unsafe.String(unsafe.SliceData(b), len(b)) // read-only view of the parser's bytes
	switch {
	case p.exact != nil:
		k, cut := p.exact.cutKey(s)
		if cut {
			j.cuts[i]++
		}
		sc.IDs = append(sc.IDs, 1)
		sc.Keys = append(sc.Keys, k)
	case p.vocab != nil:
		sc.IDs = append(sc.IDs, p.vocab.lookupText(s))
	default:
		sc.IDs = append(sc.IDs, p.hashedID(xxh64(s, p.seed)))
	}
}

// vector transforms the items of vector plan i in row r into out, as
// vectorPlan.fill does a list<float64> row: a wrong length is a fault
// (the row's vector missing), a null or non-finite item a missing vector,
// an item beyond float32's range too (not strict).
func (j *JSONRows) vector(i int, p *vectorPlan, out []float32, items []num, r int) vecState {
	if len(items) != p.dim {
		if j.fault[i].row < 0 {
			j.fault[i] = rowFault{row: r, length: len(items)}
		}
		return vecMissing
	}
	for k, it := range items {
		if it.null || !finite(it.f) {
			return vecMissing
		}
		x, st := p.item64(k, it.f)
		if st != vecOK {
			return st
		}
		out[k] = x
	}
	return vecOK
}

// Finish completes the batch: it gives the columns their defaults in the
// rows that lack them (Append), finds the rows of the exact fields' ids
// and sets dst.Rows. Call it once after the last Append, before Merge.
func (j *JSONRows) Finish() {
	t, dst := j.t, j.dst
	for c := range j.filled {
		j.pad(c, j.rows)
	}
	for i := range t.sparse {
		p := &t.sparse[i]
		if p.exact == nil {
			continue
		}
		sc := &dst.Sparse[i]
		p.exact.rowsTo(sc.IDs, sc.Keys)
		if j.cuts[i] > 0 {
			p.exact.truncated.Add(j.cuts[i])
			j.cuts[i] = 0
		}
	}
	dst.Rows = j.rows
}

// Rows returns the number of rows appended since Reset.
func (j *JSONRows) Rows() int { return j.rows }

// Nulls returns the rows whose value of column col (of the schema) is
// null or absent, in order. The slice is valid until the next Reset.
func (j *JSONRows) Nulls(col int) []int32 { return j.nulls[col] }

// Faulty reports whether a row's value of column col is a fault (a vector
// of a wrong length).
func (j *JSONRows) Faulty(col int) bool {
	ref := j.planOf[col]
	return ref.kind == planVector && j.fault[ref.i].row >= 0
}

// Fault returns the first row fault, as Transformer.TransformTo would
// (the first vector field's, in spec order, with one, then the first
// row), or nil. fromContext is set when its value is the one Merge copied
// from the context row (Merge's ctxFault).
func (j *JSONRows) Fault() (err *RowError, fromContext bool) {
	for i, f := range j.fault {
		if f.row >= 0 {
			return j.t.vectors[i].lengthErr(f.row, f.length), f.fromContext
		}
	}
	return nil, false
}

// TakeUnknown is JSONDecoder.TakeUnknown.
func (j *JSONRows) TakeUnknown() int { return j.dec.TakeUnknown() }

// Merge sets the values of column col in the rows where it is null or
// absent (Nulls) to those of row 0 of ctx, a batch of the same
// Transformer (a request's context, made by a JSONRows with Finish
// called): the batch is then what the transform of the merged rows would
// give. ctxFault says ctx's value of the column is a row fault: Fault
// then reports it for the first merged row, unless the batch has an
// earlier fault of its own in the column. Call it after Finish.
func (j *JSONRows) Merge(col int, ctx *Batch, ctxFault bool) {
	rows := j.nulls[col]
	ref := j.planOf[col]
	if len(rows) == 0 || ref.kind == planNone {
		return
	}
	dst, w := j.dst, j.dst.DenseWidth
	switch ref.kind {
	case planSparse:
		sc, cx := &dst.Sparse[ref.i], &ctx.Sparse[ref.i]
		exact := j.t.sparse[ref.i].exact != nil
		if sc.Offsets == nil {
			id := cx.IDs[0]
			for _, r := range rows {
				sc.IDs[r] = id
			}
			if exact {
				k := cx.Keys[0]
				for _, r := range rows {
					sc.Keys[r] = k
				}
			}
			return
		}
		j.mergePooled(sc, cx, rows, exact)
	case planDense:
		p := &j.t.dense[ref.i]
		for _, r := range rows {
			dst.Dense[int(r)*w+p.at] = ctx.Dense[p.at]
			if p.missing >= 0 {
				dst.Dense[int(r)*w+p.missing] = ctx.Dense[p.missing]
			}
		}
	case planVector:
		p := &j.t.vectors[ref.i]
		for _, r := range rows {
			copy(dst.Dense[int(r)*w+p.at:int(r)*w+p.at+p.dim], ctx.Dense[p.at:p.at+p.dim])
			if p.missing >= 0 {
				dst.Dense[int(r)*w+p.missing] = ctx.Dense[p.missing]
			}
		}
		if f := &j.fault[ref.i]; ctxFault && (f.row < 0 || int(rows[0]) < f.row) {
			*f = rowFault{row: int(rows[0]), length: p.dim, fromContext: true}
		}
	}
}

// mergePooled is Merge for a pooled field: the ids are rebuilt, the
// merged rows taking ctx's list.
func (j *JSONRows) mergePooled(sc, cx *SparseColumn, rows []int32, exact bool) {
	xlo, xhi := cx.Offsets[0], cx.Offsets[1]
	xids := cx.IDs[xlo:xhi]
	var xkeys []uint64
	if exact {
		xkeys = cx.Keys[xlo:xhi]
	}
	ids, keys, offs := j.ids[:0], j.keys[:0], append(j.offs[:0], 0)
	next := 0
	for r := range j.rows {
		if next < len(rows) && int(rows[next]) == r {
			next++
			ids = append(ids, xids...)
			if exact {
				keys = append(keys, xkeys...)
			}
		} else {
			lo, hi := sc.Offsets[r], sc.Offsets[r+1]
			ids = append(ids, sc.IDs[lo:hi]...)
			if exact {
				keys = append(keys, sc.Keys[lo:hi]...)
			}
		}
		offs = append(offs, int32(len(ids)))
	}
	j.ids, sc.IDs = sc.IDs, ids
	j.offs, sc.Offsets = sc.Offsets, offs
	if exact {
		j.keys, sc.Keys = sc.Keys, keys
	}
}
