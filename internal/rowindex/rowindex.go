// Package rowindex maps the embedding-table rows one batch touches to
// their position in the batch's list of distinct rows, for the code that
// sums per-row gradients (mmoe's scatter, mtl's merge of the workers'
// sparse gradients).
//
// An Index is an open-addressing hash of a power of two entries, at least
// twice the ids it will hold: a few kilobytes for a batch, which stay in
// the L1 cache. A slot per table row (400 KB for a 100,000-row table),
// read at the batch's random rows, missed the caches on most lookups.
package rowindex

import "math/bits"

// Index maps ids to positions. The zero value is an empty index of no
// capacity: Reset it before use. An Index is for one goroutine at a time.
type Index struct {
	keys  []int32 // id+1, 0 for an empty entry
	vals  []int32
	shift uint8 // 32 - log2(len(keys))
}

// Reset empties the index and sizes it for up to n ids. It allocates only
// when n is larger than any before.
func (x *Index) Reset(n int) {
	size := 16
	if n > 4 {
		size = max(size, 1<<bits.Len(uint(2*n-1)))
	}
	if cap(x.keys) < size {
		x.keys, x.vals = make([]int32, size), make([]int32, size)
	}
	x.keys, x.vals = x.keys[:size], x.vals[:size]
	clear(x.keys)
	x.shift = uint8(32 - bits.TrailingZeros(uint(size)))
}

// Find returns the position of id, or, if id is not in the index yet,
// stores next as its position and returns next with added true. id must
// be non-negative, and the index must not hold more ids than Reset's n.
func (x *Index) Find(id, next int32) (pos int32, added bool) {
	mask := uint32(len(x.keys) - 1)
	h := (uint32(id) * 0x9e3779b1) >> x.shift
	for {
		k := x.keys[h&mask]
		if k == id+1 {
			return x.vals[h&mask], false
		}
		if k == 0 {
			x.keys[h&mask], x.vals[h&mask] = id+1, next
			return next, true
		}
		h++
	}
}
