package mmoe

import "math/bits"

// rowIndex maps the embedding rows one batch touches in one field to
// their position in the field's SparseGrad.Rows. It is an open-addressing
// hash of a power of two entries, at least twice the ids it will hold: a
// few kilobytes for a batch, which stay in the L1 cache, where a slot per
// table row (400 KB per std field) missed the caches on most lookups.
type rowIndex struct {
	keys  []int32 // id+1, 0 for an empty entry
	vals  []int32
	shift uint8 // 32 - log2(len(keys))
}

// reset empties the index and sizes it for up to n ids. It allocates only
// when n is larger than any before.
func (x *rowIndex) reset(n int) {
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

// find returns the position of id, or, if id is not in the index yet,
// stores next as its position and returns next with added true. id must
// be non-negative, and the index must not hold more ids than reset's n.
func (x *rowIndex) find(id, next int32) (pos int32, added bool) {
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
