package mtl

import "math/bits"

// TouchedRows records which rows of each embedding table the sparse
// optimizer updated since the last Reset, and those an exact table gave
// to a new id (reset to the id's shared row): one bit per row, set where
// the trainer already visits the rows, so that tracking costs a few
// instructions per row and allocates nothing. A stream publishes the rows
// it records as a delta (bundle.WriteDelta). Not safe for concurrent use
// on one table; the Trainer marks each table from one goroutine.
type TouchedRows struct {
	bits  [][]uint64
	sizes []int
}

// newTouchedRows returns an empty record for tables of the given row
// counts.
func newTouchedRows(rows []int) *TouchedRows {
	t := &TouchedRows{bits: make([][]uint64, len(rows)), sizes: append([]int(nil), rows...)}
	for i, n := range rows {
		t.bits[i] = make([]uint64, (n+63)/64)
	}
	return t
}

// mark records rows of table f (rows within the table, as the optimizer
// checked them).
func (t *TouchedRows) mark(f int, rows []int32) {
	b := t.bits[f]
	for _, r := range rows {
		b[uint32(r)>>6] |= 1 << (uint32(r) & 63)
	}
}

// markRow records row r of table f.
func (t *TouchedRows) markRow(f int, r int32) {
	t.bits[f][uint32(r)>>6] |= 1 << (uint32(r) & 63)
}

// Tables is the number of tables.
func (t *TouchedRows) Tables() int { return len(t.bits) }

// Count is the number of rows of table f recorded.
func (t *TouchedRows) Count(f int) int {
	n := 0
	for _, w := range t.bits[f] {
		n += bits.OnesCount64(w)
	}
	return n
}

// Total is the number of rows recorded in all tables, and the number of
// rows of all tables.
func (t *TouchedRows) Total() (touched, rows int64) {
	for f := range t.bits {
		touched += int64(t.Count(f))
		rows += int64(t.sizes[f])
	}
	return touched, rows
}

// Rows appends the recorded rows of table f to dst, in increasing order,
// and returns it.
func (t *TouchedRows) Rows(f int, dst []int32) []int32 {
	for i, w := range t.bits[f] {
		for w != 0 {
			dst = append(dst, int32(i*64+bits.TrailingZeros64(w)))
			w &= w - 1
		}
	}
	return dst
}

// Reset forgets every recorded row.
func (t *TouchedRows) Reset() {
	for _, b := range t.bits {
		clear(b)
	}
}
