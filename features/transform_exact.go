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

// textKey hashes at most MaxIDBytes bytes of s, counting a cut.
func (p *sparsePlan) textKey(s string) uint64 {
	t := p.exact
	if len(s) > t.cfg.MaxIDBytes {
		s = s[:t.cfg.MaxIDBytes]
		t.truncated.Add(1)
	}
	return xxh64(s, p.seed)
}

// exactIDs fills the keys and rows of an exact categorical column; when
// groups is not nil it also receives the keys (the group key is this
// column). Null rows get id 0 and key 0.
//
// It hashes every value first and probes the map in a second loop: the
// probes of that short loop are independent, so the processor keeps many
// of their cache misses in flight at once, where a loop that also hashed
// would wait for them one after another.
func (p *sparsePlan) exactIDs(ids []int32, keys []uint64, c *textCol, groups []uint64) {
	seed := p.seed
	keys = keys[:len(ids)]
	var null []byte
	if c.nulls {
		null = c.arr.NullBitmapBytes()
	}
	off := c.arr.Data().Offset()
	isNull := func(r int) bool {
		return null != nil && null[(off+r)>>3]&(1<<uint((off+r)&7)) == 0
	}
	// ids[r] is 0 for null and 1 otherwise until the probes.
	switch c.kind {
	case tString:
		for r := range ids {
			if isNull(r) {
				ids[r], keys[r] = 0, 0
			} else {
				ids[r], keys[r] = 1, p.textKey(c.sval(r))
			}
		}
	case tInt64:
		for r, v := range c.i64[:len(ids)] {
			if isNull(r) {
				ids[r], keys[r] = 0, 0
			} else {
				ids[r], keys[r] = 1, hashInt(v, seed)
			}
		}
	case tInt32:
		for r, v := range c.i32[:len(ids)] {
			if isNull(r) {
				ids[r], keys[r] = 0, 0
			} else {
				ids[r], keys[r] = 1, hashInt(int64(v), seed)
			}
		}
	default:
		for r := range ids {
			if c.isNull(r) {
				ids[r], keys[r] = 0, 0
			} else {
				ids[r], keys[r] = 1, p.key(c, r)
			}
		}
	}
	p.exact.rowsTo(ids, keys)
	if groups != nil {
		copy(groups, keys)
	}
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
// (tDictString): each dictionary value is cut, hashed and looked up once,
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
		s := d.Value(i)
		sc.cut[i] = len(s) > t.cfg.MaxIDBytes
		if sc.cut[i] {
			s = s[:t.cfg.MaxIDBytes]
		}
		k := xxh64(s, p.seed)
		sc.hashes[i], sc.ids[i] = k, t.Row(k)
	}
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
