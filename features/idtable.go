package features

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/onestone/onestone/internal/kernels"
)

// IDTable is the id → row map of one exact field (see Exact), with the
// state its admission and eviction keep: per admitted id its row, the
// number of times it was used and the training clock of its last use;
// the ids waiting for admission with their counts; the free rows.
//
// Keys. An id's map key is XXH64 of its canonical text (docs/spec.md,
// "Hashing") with the field's seed, the hash a hash-mode field reduces
// modulo its buckets; text longer than Exact.MaxIDBytes is cut there
// first (and counted). A key is 8 bytes whatever the id's length. Two
// distinct ids share a key with probability about n²/2⁶⁵ for n ids
// (3·10⁻⁴ for 10⁸ ids).
//
// Rows. Model row 0 is null, rows 1..Shared are the shared rows and
// own row r (0-based) is model row 1+Shared+r. Row returns an admitted
// id's own row, and for any other id its shared row 1 + key mod Shared.
//
// Training. Admit (through IDTables.Admit, called by the trainer before
// each step, on its single goroutine) counts every non-null id of a
// batch, admits the ids that reach AdmitAfter, frees rows by the TTL and
// the eviction policy, and rewrites the batch's ids to the rows they
// train. It returns the rows it gave out: their weights and optimizer
// state must be reset before the step. Everything depends only on the
// sequence of batches, never on time or map layout, so training is
// deterministic and a table restored by SetState continues exactly as the
// saved one would have.
//
// Concurrency. Row may be called concurrently with itself; Admit and
// SetState must not run concurrently with anything else on the table.
// Serving loads a table per bundle version, never changes it, and drops
// it with the version: a request never sees a row change under it.
type IDTable struct {
	name   string
	cfg    Exact // with defaults
	sparse int   // index of the field in Layout.Sparse
	seed   uint64
	shared uint64
	base   int32 // model row of own row 0

	lines  []idLine
	nlines uint64   // len(lines)
	n      uint64   // slots: nlines × slotsPerLine
	count  []uint32 // per own row, its id's uses (with evict lfu halved every 10 × capacity examples)
	last   []int64  // per own row, the clock of its id's last use
	used   int      // admitted ids
	next   int32    // own rows next..Capacity-1 were never used
	free   []int32

	wait waitSet

	clock     int64 // training examples admitted so far
	lastSweep int64 // clock of the last TTL sweep

	admissions, evictions, expired, rejected, forgotten int64
	truncated                                           atomic.Int64

	cands []evictCand // scratch of evictions and sweeps
	keys  []uint64
	rows  []int32

	lfu lfuState // evict: lfu only
}

// idLine is a 64-byte cache line of the open-addressing map (linear
// probing): slotsPerLine slots of 12 bytes, a key and its ref (own row +
// 1; 0 marks an empty slot, whose key is 0), keys first, so that a
// lookup reads one line. Slot j of the map is lines[j/slotsPerLine],
// index j%slotsPerLine. The counts of uses are per row (IDTable.count),
// not in the line: only admission reads them, and five slots fit a line
// where four of 16 bytes did.
type idLine struct {
	keys [slotsPerLine]uint64
	refs [slotsPerLine]int32
	_    uint32
}

// slotsPerLine is the number of slots of an idLine, the map's unit of
// homes. An idLine is a key line of kernels.ProbeKeyLines.
const slotsPerLine = kernels.KeyLineSlots

// The layout kernels.ProbeKeyLines reads.
var _ = [1]struct{}{}[unsafe.Sizeof(idLine{})-8*kernels.KeyLineWords]
var _ = [1]struct{}{}[unsafe.Offsetof(idLine{}.refs)-8*kernels.KeyLineSlots]

type evictCand struct {
	key  uint64
	last int64
	row  int32
}

// slotsFor is the number of slots of a waiting set of n ids: at most 3/4
// of them are in use.
func slotsFor(n int) uint64 { return uint64(n) + uint64(n)/3 + 1 }

// mapLinesFor is the number of cache lines (idLine) of the id map of a
// table of capacity n: n/2 + 1, so that at most 2/5 of the slots are in
// use. The map is read on every lookup of training, evaluation and
// serving, where the cost that counts is a key found past its home line:
// that second line is a cache miss no prefetch covered. At a million
// uniform ids a load of 3/4 made a lookup cost 2.4 to 2.9 hashed ones
// (issue 14 allows 2); lines of four 16-byte slots at a load of 1/2 left
// 4.8% of the keys past their home line, five 12-byte slots at 2/5, in
// the same 32 bytes a row, leave 1.2%. The waiting set is read only by
// admission and keeps 3/4.
func mapLinesFor(n int) uint64 { return uint64(n)/2 + 1 }

func newIDTable(f *Field, sparse int) *IDTable {
	cfg := f.Exact.WithDefaults()
	t := &IDTable{
		name: f.Name, cfg: cfg, sparse: sparse, seed: FieldSeed(f.Name),
		shared: uint64(cfg.Shared), base: int32(1 + cfg.Shared),
	}
	t.nlines = mapLinesFor(cfg.Capacity)
	t.n = t.nlines * slotsPerLine
	t.lines = make([]idLine, t.nlines)
	t.count = make([]uint32, cfg.Capacity)
	t.last = make([]int64, cfg.Capacity)
	if cfg.AdmitAfter > 1 {
		t.wait.init(cfg.Waiting)
	}
	if cfg.Evict == EvictLFU {
		t.lfu.init(cfg.Capacity)
	}
	return t
}

// Name is the field's name.
func (t *IDTable) Name() string { return t.name }

// Config is the field's Exact configuration, defaults filled in.
func (t *IDTable) Config() Exact { return t.cfg }

// Key returns the map key of an id's canonical text.
func (t *IDTable) Key(text string) uint64 {
	k, _ := t.cutKey(text)
	return k
}

// cutKey returns the map key of an id's canonical text, and whether the
// text was cut at MaxIDBytes for it (the caller counts the cuts).
func (t *IDTable) cutKey(text string) (key uint64, cut bool) {
	s, cut := t.cut(text)
	return xxh64(s, t.seed), cut
}

// cut is the part of an id's canonical text that makes its map key (the
// field-seeded XXH64 of it): at most MaxIDBytes bytes; cut reports a
// longer text. The one rule for every path that makes keys; callers
// count the cuts.
func (t *IDTable) cut(text string) (s string, cut bool) {
	if len(text) > t.cfg.MaxIDBytes {
		return text[:t.cfg.MaxIDBytes], true
	}
	return text, false
}

// home is the first slot a key probes in a table of n slots (Lemire's
// multiply-shift range reduction of the key's high bits).
func home(k, n uint64) uint64 {
	hi, _ := bits.Mul64(k, n)
	return hi
}

// homeOf is the home slot of key k in the id map: the first slot of a
// cache line (home over the map's lines).
func (t *IDTable) homeOf(k uint64) uint64 { return home(k, t.nlines) * slotsPerLine }

// keyAt and refAt are the key and the ref of slot j.
func (t *IDTable) keyAt(j uint64) uint64 { return t.lines[j/slotsPerLine].keys[j%slotsPerLine] }
func (t *IDTable) refAt(j uint64) int32  { return t.lines[j/slotsPerLine].refs[j%slotsPerLine] }

// setSlot sets slot j to key k and ref (0, 0 empties it).
func (t *IDTable) setSlot(j, k uint64, ref int32) {
	l := &t.lines[j/slotsPerLine]
	l.keys[j%slotsPerLine], l.refs[j%slotsPerLine] = k, ref
}

// The map and the waiting set are open addressing with Robin Hood linear
// probing: an entry sits at or after its home slot, entries with equal
// homes are adjacent, and a lookup stops at the first entry closer to its
// home than the key would be. The homes of the id map are the first slots
// of its cache lines, so that the keys sharing a home fill that line
// before they spill into the next: at the map's load of 2/5, five slots
// a line, a key is in its home's line 98.8% of the time (95% with four
// slots at 1/2; 65% at its home slot, and 89% in its home slot's line,
// with a home per slot), and a lookup, found or not, reads that one line
// (probeGroup checks all its slots at once). The waiting set, read only by admission, has a home per slot
// and reads about two slots at its load of 3/4 (where plain linear
// probing reads 8.5 for an absent key), so the lookup of an id without a
// row of its own, the common case in the long tail of a real id
// distribution, stays as cheap as that of an admitted one.

// dist is how far slot j is from home h, around the end.
func dist(j, h, n uint64) uint64 {
	if j >= h {
		return j - h
	}
	return j + n - h
}

// Row returns the model row of key: its own row when admitted, else its
// shared row.
func (t *IDTable) Row(k uint64) int32 { return t.rowAt(k, t.homeOf(k)) }

// rowAt is Row for a key whose home slot h is known.
func (t *IDTable) rowAt(k, h uint64) int32 {
	if j, ok := t.findFrom(k, h); ok {
		return t.base + t.refAt(j) - 1
	}
	return 1 + int32(k%t.shared)
}

// prefetchAhead is how many keys ahead of its probes rowsTo asks the CPU
// to fetch home lines (16 measured the same within the noise).
const prefetchAhead = 32

// rowsTo sets ids[i] to Row(keys[i]) where ids[i] is not 0 (null). A map
// larger than the caches costs a cache miss per lookup; rowsTo works in
// groups of prefetchAhead keys: it prefetches the home lines of the next
// group, then probes the current group, so that the misses overlap
// instead of waiting one after another. The few keys a probe finds past
// their home lines (spilled) are found one group later, when the next
// lines it asked for have arrived. Callers that compute the keys
// themselves interleave that work with the probes the same way
// (prefetchHomes, probeGroup, finishSpilled; sparsePlan.exactIDs).
func (t *IDTable) rowsTo(ids []int32, keys []uint64) {
	keys = keys[:len(ids)]
	var spilled uint64 // of the group at spillLo
	spillLo := 0
	t.prefetchHomes(keys[:min(prefetchAhead, len(keys))])
	for lo := 0; lo < len(keys); lo += prefetchAhead {
		if next := lo + prefetchAhead; next < len(keys) {
			t.prefetchHomes(keys[next:min(next+prefetchAhead, len(keys))])
		}
		hi := min(lo+prefetchAhead, len(keys))
		left := t.probeGroup(ids[lo:hi], keys[lo:hi])
		t.finishSpilled(ids[spillLo:], keys[spillLo:], spilled)
		spilled, spillLo = left, lo
	}
	t.finishSpilled(ids[spillLo:], keys[spillLo:], spilled)
}

// finishSpilled sets ids[i] to Row(keys[i]) for each bit i of spilled
// (a mask probeGroup returned).
func (t *IDTable) finishSpilled(ids []int32, keys []uint64, spilled uint64) {
	for spilled != 0 {
		i := bits.TrailingZeros64(spilled)
		spilled &= spilled - 1
		ids[i] = t.Row(keys[i])
	}
}

// lineWords is the map as the key lines of kernels.ProbeKeyLines.
func (t *IDTable) lineWords() []uint64 {
	return unsafe.Slice((*uint64)(unsafe.Pointer(&t.lines[0])), len(t.lines)*kernels.KeyLineWords)
}

// prefetchHomes asks the CPU to bring the home lines of keys into its
// caches.
func (t *IDTable) prefetchHomes(keys []uint64) { kernels.PrefetchKeyLines(t.lineWords(), keys) }

// probeGroup sets ids[i] to Row(keys[i]) where ids[i] is not 0 (null),
// for at most prefetchAhead keys whose home lines prefetchHomes asked
// for.
//
// It probes in two passes. The first reads the home line of every key
// and takes the row of each key found there (kernels.ProbeKeyLines, which
// compares a line's keys at once), without a branch on what it read: a
// branch on a slot still in flight from memory makes the processor wait
// for it, or throw away the loads after it when it guessed wrong, where
// loads alone overlap. The second pass looks at the keys the first did
// not find. The used slots of a line are a prefix of it (the keys of a
// home are adjacent from its first slot, after the keys spilled from the
// lines before), so a key is absent when its home line has an empty
// slot: it takes its shared row. A full home line may have spilled the
// key into the next lines: probeGroup asks the CPU for the next line and
// leaves the key at its placeholder, to be found later (finishSpilled),
// by the time that line has come, instead of waiting for it here; it
// returns those keys, bit i for key i.
func (t *IDTable) probeGroup(ids []int32, keys []uint64) (spilled uint64) {
	ids = ids[:min(len(ids), prefetchAhead)]
	keys = keys[:len(ids)]
	var refs [prefetchAhead]int32
	kernels.ProbeKeyLines(refs[:len(ids)], t.lineWords(), keys)
	base := t.base
	var left uint64 // bit i: key i is left to the second pass
	for i, id := range ids {
		ref := refs[i]
		// The own row when found and not null, else id (0 when null,
		// and a placeholder the second pass replaces when not found).
		row := base + ref - 1
		if ref == 0 {
			row = id
		}
		if id == 0 {
			row = 0
		}
		ids[i] = row
		var absent, notNull uint64
		if ref == 0 {
			absent = 1
		}
		if id != 0 {
			notNull = 1
		}
		left |= (absent & notNull) << i
	}
	if left == 0 {
		return 0
	}
	var fetch [prefetchAhead]int32 // the lines after full home lines
	nf := 0
	for left != 0 {
		i := bits.TrailingZeros64(left)
		left &= left - 1
		h := home(keys[i], t.nlines)
		if t.lines[h].refs[slotsPerLine-1] == 0 {
			ids[i] = t.SharedRow(keys[i])
			continue
		}
		spilled |= 1 << i
		fetch[nf] = int32((h + 1) % t.nlines)
		nf++
	}
	if nf > 0 {
		// kernels.PrefetchRows takes a table of float32 rows and int32
		// row indices: it sees the map as its lines, so that an index
		// fits even for 2³¹ slots and more.
		lines := unsafe.Slice((*float32)(unsafe.Pointer(&t.lines[0])), len(t.lines)*lineFloats)
		kernels.PrefetchRows(lines, lineFloats, fetch[:nf])
	}
	return spilled
}

// lineFloats is the size of an idLine in float32s, for
// kernels.PrefetchRows, which takes a table of float32 rows.
const lineFloats = int(unsafe.Sizeof(idLine{}) / 4)

// SharedRow returns the shared row of key.
func (t *IDTable) SharedRow(k uint64) int32 { return 1 + int32(k%t.shared) }

// find returns the slot of key and true, or false when it is absent.
func (t *IDTable) find(k uint64) (uint64, bool) { return t.findFrom(k, t.homeOf(k)) }

// findFrom is find for a key whose home slot h is known.
func (t *IDTable) findFrom(k, h uint64) (uint64, bool) {
	n := t.n
	for j, d := h, uint64(0); ; d++ {
		if t.refAt(j) == 0 {
			return 0, false
		}
		sk := t.keyAt(j)
		if sk == k {
			return j, true
		}
		if dist(j, t.homeOf(sk), n) < d {
			return 0, false
		}
		if j++; j == n {
			j = 0
		}
	}
}

// insert adds key k with ref (own row + 1), k absent, displacing the
// entries closer to their homes (the table is never full: at most 2/5
// of it is used).
func (t *IDTable) insert(k uint64, ref int32) {
	n := t.n
	j := t.homeOf(k)
	for d := uint64(0); ; d++ {
		sr := t.refAt(j)
		if sr == 0 {
			t.setSlot(j, k, ref)
			return
		}
		sk := t.keyAt(j)
		if ds := dist(j, t.homeOf(sk), n); ds < d {
			t.setSlot(j, k, ref)
			k, ref, d = sk, sr, ds
		}
		if j++; j == n {
			j = 0
		}
	}
}

// remove deletes key's entry (it must be present) and shifts the entries
// after it that are not at their homes back by one.
func (t *IDTable) remove(k uint64) {
	i, ok := t.find(k)
	if !ok {
		panic("features: IDTable.remove: key not present")
	}
	n := t.n
	for {
		j := i + 1
		if j == n {
			j = 0
		}
		sk, sr := t.keyAt(j), t.refAt(j)
		if sr == 0 || t.homeOf(sk) == j {
			break
		}
		t.setSlot(i, sk, sr)
		i = j
	}
	t.setSlot(i, 0, 0)
}

// RowReset is a row Admit gave to an id: before the step, the trainer
// sets the weights of model row Row of sparse field Table to those of row
// From (the id's shared row, what the id trained so far) and resets the
// row's optimizer state.
type RowReset struct {
	Table int
	Row   int32
	From  int32
}

// admitColumn counts and admits the non-null ids of one column and
// rewrites them to the rows they train. now is the clock after the batch.
// Each key's home line is prefetched prefetchAhead keys before its
// find, so that the misses of a map larger than the caches overlap (the
// changes admission makes to the map meanwhile only make a prefetch
// useless).
func (t *IDTable) admitColumn(ids []int32, keys []uint64, now int64, resets []RowReset) []RowReset {
	keys = keys[:len(ids)]
	t.prefetchHomes(keys[:min(prefetchAhead, len(keys))])
	for i, k := range keys {
		if i%prefetchAhead == 0 {
			if next := i + prefetchAhead; next < len(keys) {
				t.prefetchHomes(keys[next:min(next+prefetchAhead, len(keys))])
			}
		}
		if ids[i] == 0 {
			continue // null
		}
		j, ok := t.find(k)
		if ok {
			r := t.refAt(j) - 1
			t.last[r] = now
			if t.count[r] < math.MaxUint32 {
				t.count[r]++
			}
			ids[i] = t.base + r
			continue
		}
		var r int32
		r, resets = t.admit(k, now, resets)
		ids[i] = r
	}
	return resets
}

// admit handles an occurrence of a key without a row of its own and
// returns the row it trains.
func (t *IDTable) admit(k uint64, now int64, resets []RowReset) (int32, []RowReset) {
	count := uint32(1)
	if t.cfg.Evict == EvictLFU {
		count = t.lfu.add(k)
	}
	if t.cfg.AdmitAfter > 1 {
		c := t.wait.add(k, now, &t.forgotten)
		if c < uint32(t.cfg.AdmitAfter) {
			return t.SharedRow(k), resets
		}
		if t.cfg.Evict != EvictLFU {
			count = c
		}
	}
	r, ok := t.allocRow(now, count)
	if !ok {
		t.rejected++
		return t.SharedRow(k), resets
	}
	if t.cfg.AdmitAfter > 1 {
		t.wait.remove(k)
	}
	t.insert(k, r+1)
	t.count[r], t.last[r] = count, now
	if t.lfu.keyOf != nil {
		t.lfu.keyOf[r] = k
	}
	t.used++
	t.admissions++
	row := t.base + r
	return row, append(resets, RowReset{Table: t.sparse, Row: row, From: t.SharedRow(k)})
}

// allocRow returns a free own row for an id of frequency count: a freed
// one, a never used one, or one made free by the TTL or the eviction
// policy. Rows used in the current batch (last == now) are never freed.
func (t *IDTable) allocRow(now int64, count uint32) (int32, bool) {
	if r, ok := t.popFree(); ok {
		return r, true
	}
	if int(t.next) < t.cfg.Capacity {
		t.next++
		return t.next - 1, true
	}
	if t.cfg.TTL > 0 && t.lastSweep != now {
		t.sweep(now)
		if r, ok := t.popFree(); ok {
			return r, true
		}
	}
	switch t.cfg.Evict {
	case EvictLRU:
		t.evictSome(now)
		if r, ok := t.popFree(); ok {
			return r, true
		}
	case EvictLFU:
		return t.replace(count, now)
	}
	return 0, false
}

func (t *IDTable) popFree() (int32, bool) {
	n := len(t.free)
	if n == 0 {
		return 0, false
	}
	r := t.free[n-1]
	t.free = t.free[:n-1]
	return r, true
}

// pushFree adds rows to the free list so that the lowest is reused first.
func (t *IDTable) pushFree(rows []int32) {
	slices.Sort(rows)
	for i := len(rows) - 1; i >= 0; i-- {
		t.free = append(t.free, rows[i])
	}
}

// evictBatch is how many rows one eviction frees: 1/64 of the capacity,
// at least 1, so that its O(capacity) scan is amortised over as many
// admissions.
func (t *IDTable) evictBatch() int { return max(1, t.cfg.Capacity/64) }

// evictSome frees the evictBatch least recently used rows not used in
// the current batch (evict: lru); ties end by row.
func (t *IDTable) evictSome(now int64) {
	c := t.cands[:0]
	for li := range t.lines {
		l := &t.lines[li]
		for x, ref := range l.refs {
			if r := ref - 1; ref != 0 && t.last[r] < now {
				c = append(c, evictCand{key: l.keys[x], last: t.last[r], row: r})
			}
		}
	}
	k := min(t.evictBatch(), len(c))
	if k == 0 {
		t.cands = c
		return
	}
	selectSmallest(c, k, lruLess)
	t.freeCands(c[:k])
	t.evictions += int64(k)
	t.cands = c
}

func lruLess(a, b *evictCand) bool {
	if a.last != b.last {
		return a.last < b.last
	}
	return a.row < b.row
}

// freeCands removes the candidates' keys and frees their rows.
func (t *IDTable) freeCands(c []evictCand) {
	rows := t.rows[:0]
	for i := range c {
		t.remove(c[i].key)
		rows = append(rows, c[i].row)
	}
	t.used -= len(c)
	t.pushFree(rows)
	t.rows = rows
}

// sweep frees the rows, and forgets the waiting ids, not used in the last
// TTL examples before now.
func (t *IDTable) sweep(now int64) {
	t.lastSweep = now
	limit := now - t.cfg.TTL
	c := t.cands[:0]
	for li := range t.lines {
		l := &t.lines[li]
		for x, ref := range l.refs {
			if ref != 0 && t.last[ref-1] < limit {
				c = append(c, evictCand{key: l.keys[x], row: ref - 1})
			}
		}
	}
	t.freeCands(c)
	t.expired += int64(len(c))
	t.cands = c
	if t.wait.n > 0 {
		keys := t.keys[:0]
		for _, s := range t.wait.slots {
			if s.count != 0 && s.last < limit {
				keys = append(keys, s.key)
			}
		}
		for _, k := range keys {
			t.wait.remove(k)
		}
		t.forgotten += int64(len(keys))
		t.keys = keys
	}
}

// selectSmallest moves the k smallest elements of c under less (a strict
// total order) to c[:k], in no particular order (quickselect).
func selectSmallest(c []evictCand, k int, less func(a, b *evictCand) bool) {
	lo, hi := 0, len(c)
	for hi-lo > 1 {
		// Median of three as the pivot, moved to hi-1.
		m := lo + (hi-lo)/2
		if less(&c[m], &c[lo]) {
			c[m], c[lo] = c[lo], c[m]
		}
		if less(&c[hi-1], &c[lo]) {
			c[hi-1], c[lo] = c[lo], c[hi-1]
		}
		if less(&c[m], &c[hi-1]) {
			c[m], c[hi-1] = c[hi-1], c[m]
		}
		p := hi - 1
		i := lo
		for j := lo; j < p; j++ {
			if less(&c[j], &c[p]) {
				c[i], c[j] = c[j], c[i]
				i++
			}
		}
		c[i], c[p] = c[p], c[i]
		switch {
		case i == k || i+1 == k:
			return
		case i > k:
			hi = i
		default:
			lo = i + 1
		}
	}
}

// waitSet counts the ids waiting for admission: an open-addressing map
// from key to (count, last use), at most max entries.
type waitSet struct {
	slots []waitSlot
	n     uint64
	len   int
	max   int
	cands []evictCand
}

type waitSlot struct {
	key   uint64
	last  int64
	count uint32 // 0 marks an empty slot
	_     uint32
}

func (w *waitSet) init(max int) {
	w.max = max
	w.n = slotsFor(max)
	w.slots = make([]waitSlot, w.n)
}

func (w *waitSet) find(k uint64) (uint64, bool) {
	n := w.n
	h := home(k, n)
	for j, d := h, uint64(0); ; d++ {
		s := &w.slots[j]
		if s.count == 0 {
			return 0, false
		}
		if s.key == k {
			return j, true
		}
		if dist(j, home(s.key, n), n) < d {
			return 0, false
		}
		if j++; j == n {
			j = 0
		}
	}
}

// insert adds an entry whose key is absent (Robin Hood, as IDTable.insert).
func (w *waitSet) insert(e waitSlot) {
	n := w.n
	j := home(e.key, n)
	for d := uint64(0); ; d++ {
		s := &w.slots[j]
		if s.count == 0 {
			*s = e
			w.len++
			return
		}
		if ds := dist(j, home(s.key, n), n); ds < d {
			*s, e = e, *s
			d = ds
		}
		if j++; j == n {
			j = 0
		}
	}
}

// add counts one occurrence of k at clock now and returns its count. A
// full set first forgets its least recently seen half (ties by key).
func (w *waitSet) add(k uint64, now int64, forgotten *int64) uint32 {
	j, ok := w.find(k)
	if ok {
		s := &w.slots[j]
		s.last = now
		if s.count < math.MaxUint32 {
			s.count++
		}
		return s.count
	}
	if w.len >= w.max {
		c := w.cands[:0]
		for _, s := range w.slots {
			if s.count != 0 {
				c = append(c, evictCand{key: s.key, last: s.last})
			}
		}
		half := max(1, len(c)/2)
		selectSmallest(c, half, func(a, b *evictCand) bool {
			if a.last != b.last {
				return a.last < b.last
			}
			return a.key < b.key
		})
		for _, e := range c[:half] {
			w.remove(e.key)
		}
		*forgotten += int64(half)
		w.cands = c
	}
	w.insert(waitSlot{key: k, last: now, count: 1})
	return 1
}

// remove deletes k if present (backward shifting).
func (w *waitSet) remove(k uint64) {
	i, ok := w.find(k)
	if !ok {
		return
	}
	n := w.n
	for {
		j := i + 1
		if j == n {
			j = 0
		}
		s := w.slots[j]
		if s.count == 0 || home(s.key, n) == j {
			break
		}
		w.slots[i] = s
		i = j
	}
	w.slots[i] = waitSlot{}
	w.len--
}

// IDTableStats describe an exact table.
type IDTableStats struct {
	Field    string `json:"field"`
	Capacity int    `json:"capacity"`
	// Rows is the number of ids with a row of their own (rows in use).
	Rows int `json:"rows"`
	// Waiting is the number of ids seen but not yet admitted.
	Waiting int `json:"waiting"`
	// Admissions counts the rows given to ids; Evictions the rows freed by
	// the lru or lfu policy; Expired the rows freed by the TTL.
	Admissions int64 `json:"admissions"`
	Evictions  int64 `json:"evictions"`
	Expired    int64 `json:"expired"`
	// Rejected counts the occurrences of ids due for admission that found
	// the table full: no free row and nothing to evict, or with evict lfu
	// an id not clearly used more often than the row it would take.
	Rejected int64 `json:"rejected"`
	// Forgotten counts the waiting ids dropped (the waiting set was full,
	// or their TTL passed) before they reached admit_after.
	Forgotten int64 `json:"forgotten"`
	// Truncated counts the ids cut at max_id_bytes.
	Truncated int64 `json:"truncated"`
	// MapBytes is the memory of the map, the waiting set and the free
	// list (not the rows themselves: those are the model's embedding
	// table).
	MapBytes int64 `json:"map_bytes"`
	// Clock is the number of training examples admitted.
	Clock int64 `json:"clock"`
}

// Stats returns the table's figures. It must not run concurrently with
// Admit.
func (t *IDTable) Stats() IDTableStats {
	return IDTableStats{
		Field: t.name, Capacity: t.cfg.Capacity, Rows: t.used, Waiting: t.wait.len,
		Admissions: t.admissions, Evictions: t.evictions, Expired: t.expired,
		Rejected: t.rejected, Forgotten: t.forgotten, Truncated: t.truncated.Load(),
		MapBytes: t.MapBytes(), Clock: t.clock,
	}
}

// MapBytes is the memory of the map, the waiting set and the free list
// at their largest (Exact.MapBytes): all but the free list are allocated
// whole when the table is made.
func (t *IDTable) MapBytes() int64 { return t.cfg.MapBytes() }

// Short describes the table's figures for a status line: "user_id
// 1200/1500 rows +3400 -2200 300 waiting" (rows in use of the capacity,
// admissions, evictions and expirations, waiting ids).
func (s IDTableStats) Short() string {
	return fmt.Sprintf("%s %d/%d rows +%d -%d %d waiting", s.Field, s.Rows, s.Capacity, s.Admissions, s.Evictions+s.Expired, s.Waiting)
}

// String describes the table's figures on one line.
func (s IDTableStats) String() string {
	return fmt.Sprintf("%s rows=%d/%d waiting=%d admitted=%d evicted=%d expired=%d rejected=%d map=%.1fMB",
		s.Field, s.Rows, s.Capacity, s.Waiting, s.Admissions, s.Evictions, s.Expired, s.Rejected, float64(s.MapBytes)/1e6)
}
