package features

// The transform of exact fields: each id's map key (the field-seeded
// XXH64 of its canonical text, cut at max_id_bytes) and the row the
// field's IDTable finds for it. Read-only on the table.

import "github.com/apache/arrow-go/v18/arrow/array"

// key returns the map key of value r of c, which is not null.
func (p *sparsePlan) key(c *textCol, r int) uint64 {
	switch c.kind {
	case tString, tLargeString, tDictString, tDictLargeString:
		s, _ := c.text(r, nil)
		return p.textKey(s)
	}
	return c.hash(r, p.seed)
}

// textKey is the map key of s (IDTable.Key), counting a cut.
func (p *sparsePlan) textKey(s string) uint64 {
	k, cut := p.exact.cutKey(s)
	if cut {
		p.exact.truncated.Add(1)
	}
	return k
}

// exactIDs fills the keys and rows of an exact categorical column; when
// groups is not nil it also receives the keys (the group key is this
// column). Null rows get id 0 and key 0.
//
// It works as IDTable.rowsTo, with the hashing in the same loop: it
// hashes a group of prefetchAhead rows and prefetches the home lines of
// their keys, finishes the keys spilled past their home lines two groups
// before, then probes the group before. The probes' cache misses
// overlap with each other and with the hashing of the next group,
// instead of a loop waiting for each miss in turn (or hashing everything
// first and then waiting for the misses of the probes with nothing else
// to do).
func (p *sparsePlan) exactIDs(ids []int32, keys []uint64, c *textCol, groups []uint64) {
	t := p.exact
	n := len(ids)
	keys = keys[:n]
	var null []byte
	if c.nulls {
		null = c.arr.NullBitmapBytes()
	}
	off := c.arr.Data().Offset()
	var cuts int64
	var spilled uint64 // of the group at spillLo (IDTable.rowsTo)
	spillLo := 0
	for lo := 0; lo < n+prefetchAhead; lo += prefetchAhead {
		if lo < n {
			hi := min(lo+prefetchAhead, n)
			cuts += p.exactKeys(ids[lo:hi], keys[lo:hi], c, lo, null, off)
			t.prefetchHomes(keys[lo:hi])
		}
		t.finishSpilled(ids[spillLo:], keys[spillLo:], spilled)
		spilled = 0
		if prev := lo - prefetchAhead; prev >= 0 && prev < n {
			hi := min(lo, n)
			spilled, spillLo = t.probeGroup(ids[prev:hi], keys[prev:hi]), prev
		}
	}
	t.finishSpilled(ids[spillLo:], keys[spillLo:], spilled)
	if cuts > 0 {
		t.truncated.Add(cuts)
	}
	if groups != nil {
		copy(groups, keys)
	}
}

// exactKeys sets keys[i] to the map key of row lo+i of c and ids[i] to 1,
// or both to 0 for a null row (null is c's validity bitmap, nil without
// nulls, and off its offset). It returns the number of values cut at
// MaxIDBytes.
func (p *sparsePlan) exactKeys(ids []int32, keys []uint64, c *textCol, lo int, null []byte, off int) (cuts int64) {
	t, seed := p.exact, p.seed
	keys = keys[:len(ids)]
	off += lo
	isNull := func(i int) bool {
		return null != nil && null[(off+i)>>3]&(1<<uint((off+i)&7)) == 0
	}
	switch c.kind {
	case tString:
		offs := c.soffs[lo : lo+len(ids)+1]
		data, base := c.sdata, c.sbase
		for i := range ids {
			if isNull(i) {
				ids[i], keys[i] = 0, 0
				continue
			}
			s, cut := t.cut(data[offs[i]-base : offs[i+1]-base])
			if cut {
				cuts++
			}
			ids[i], keys[i] = 1, xxh64(s, seed)
		}
	case tInt64:
		for i, v := range c.i64[lo : lo+len(ids)] {
			if isNull(i) {
				ids[i], keys[i] = 0, 0
			} else {
				ids[i], keys[i] = 1, hashInt(v, seed)
			}
		}
	case tInt32:
		for i, v := range c.i32[lo : lo+len(ids)] {
			if isNull(i) {
				ids[i], keys[i] = 0, 0
			} else {
				ids[i], keys[i] = 1, hashInt(int64(v), seed)
			}
		}
	default:
		for i := range ids {
			if c.isNull(lo + i) {
				ids[i], keys[i] = 0, 0
			} else {
				ids[i], keys[i] = 1, p.key(c, lo+i)
			}
		}
	}
	return cuts
}

// exactListIDs fills the keys, rows and offsets of an exact
// multi-categorical column of n rows and returns the number of ids. Null
// items are dropped, as in the other modes.
func (p *sparsePlan) exactListIDs(ids []int32, keys []uint64, offs []int32, c *listCol, n int) int {
	t := p.exact
	ch := &c.child
	k := 0
	offs[0] = 0
	for r := 0; r < n; r++ {
		lo, hi := c.span(r)
		if ch.kind == tString && !ch.nulls {
			for j := lo; j < hi; j++ {
				keys[k], ids[k] = p.textKey(ch.sval(j)), 1
				k++
			}
		} else {
			for j := lo; j < hi; j++ {
				if ch.isNull(j) {
					continue
				}
				keys[k], ids[k] = p.key(ch, j), 1
				k++
			}
		}
		offs[r+1] = int32(k)
	}
	t.rowsTo(ids[:k], keys[:k])
	return k
}

// exactDictIDs is exactIDs for a column of dictionary-encoded strings
// (tDictString): each dictionary value is cut, hashed and looked up once
// (rowsTo, for a dictionary larger than the caches' share of the map),
// then every row takes its value's key and row. A cut is counted once per
// row, as on the other paths.
func (p *sparsePlan) exactDictIDs(ids []int32, keys []uint64, c *textCol, groups []uint64, sc *dictScratch) {
	t := p.exact
	keys = keys[:len(ids)]
	d := c.str
	nd := d.Len()
	sc.ids = growInt32(sc.ids, nd)
	sc.hashes = growUint64(sc.hashes, nd)
	sc.cut = growBool(sc.cut, nd)
	for i := range nd {
		var s string
		s, sc.cut[i] = t.cut(d.Value(i))
		sc.hashes[i], sc.ids[i] = xxh64(s, p.seed), 1
	}
	t.rowsTo(sc.ids, sc.hashes)
	var null []byte
	if c.nulls {
		null = c.arr.NullBitmapBytes()
	}
	off := c.arr.Data().Offset()
	idx32, _ := c.dict.Indices().(*array.Int32)
	var cuts int64
	for r := range ids {
		if null != nil && null[(off+r)>>3]&(1<<uint((off+r)&7)) == 0 {
			ids[r], keys[r] = 0, 0
			continue
		}
		var k int
		if idx32 != nil {
			k = int(idx32.Value(r))
		} else {
			k = c.dict.GetValueIndex(r)
		}
		ids[r], keys[r] = sc.ids[k], sc.hashes[k]
		if sc.cut[k] {
			cuts++
		}
	}
	if cuts > 0 {
		t.truncated.Add(cuts)
	}
	if groups != nil {
		copy(groups, keys)
	}
}

func growBool(s []bool, n int) []bool {
	if cap(s) < n {
		return make([]bool, n, n+n/4)
	}
	return s[:n]
}
