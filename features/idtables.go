package features

import (
	"fmt"
	"slices"
)

// IDTables are the exact tables of a spec, one per field with `exact:`,
// in spec order. Training, evaluation and serving share one design:
//
//   - The Transformer given an IDTables (TransformerConfig.IDs) writes
//     each exact id's map key into Batch (SparseColumn.Keys) and its row
//     as IDTable.Row finds it: an admitted id's own row, any other id's
//     shared row. That lookup only reads the tables, so it is what
//     evaluation and serving do, and what a training batch starts with.
//   - In training, the trainer calls Admit on each batch before its step,
//     on its own goroutine: ids are counted, admitted, and rows freed; the
//     batch's ids are rewritten to the rows they train, and the rows given
//     out are returned so the trainer resets their weights and optimizer
//     state. Nothing else mutates the tables.
//   - A bundle and a checkpoint hold the tables (State, written by package
//     bundle as ids.bin). Serving loads them per bundle version into new
//     tables that nothing mutates: a concurrent request always reads the
//     map its model was published with.
//
// An IDTables is not safe for concurrent use, except that Transformers may
// look rows up concurrently while nothing calls Admit or SetState.
type IDTables struct {
	tables []*IDTable
	resets []RowReset
}

// NewIDTables returns empty exact tables for the exact fields of a valid
// spec (none when it has no exact field).
func NewIDTables(spec *Spec) (*IDTables, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	ts := &IDTables{}
	sparse := 0
	for i := range spec.Fields {
		f := &spec.Fields[i]
		if !f.Sparse() {
			continue
		}
		if f.Exact != nil {
			ts.tables = append(ts.tables, newIDTable(f, sparse))
		}
		sparse++
	}
	return ts, nil
}

// Len is the number of exact tables (0 for a nil IDTables).
func (ts *IDTables) Len() int {
	if ts == nil {
		return 0
	}
	return len(ts.tables)
}

// tablesOrNil returns the tables (nil for a nil IDTables).
func (ts *IDTables) tablesOrNil() []*IDTable {
	if ts == nil {
		return nil
	}
	return ts.tables
}

// Table returns table i, in spec order.
func (ts *IDTables) Table(i int) *IDTable { return ts.tables[i] }

// table returns the table of a field, or nil.
func (ts *IDTables) table(name string) *IDTable {
	if ts == nil {
		return nil
	}
	for _, t := range ts.tables {
		if t.name == name {
			return t
		}
	}
	return nil
}

// SparseIndex is the index in Layout.Sparse of table i's field.
func (ts *IDTables) SparseIndex(i int) int { return ts.tables[i].sparse }

// Stats returns every table's figures, in spec order.
func (ts *IDTables) Stats() []IDTableStats {
	if ts == nil {
		return nil
	}
	out := make([]IDTableStats, len(ts.tables))
	for i, t := range ts.tables {
		out[i] = t.Stats()
	}
	return out
}

// Admit counts, admits and evicts the exact ids of a training batch b
// (made by a Transformer with these tables), rewrites them to the rows
// they train, and advances the tables' clock by b.Rows. It returns the
// rows given to newly admitted ids (the slice is reused by the next call):
// each must be reset before the batch is trained on (RowReset). Every TTL
// sweep, eviction and refusal depends only on the batches seen. A row
// that an id of b uses is never freed while b is admitted, so b's ids all
// point at the rows of their own ids when Admit returns.
func (ts *IDTables) Admit(b *Batch) ([]RowReset, error) {
	resets := ts.resets[:0]
	if ts.Len() == 0 || b.Rows == 0 {
		return resets, nil
	}
	for _, t := range ts.tables {
		if t.sparse >= len(b.Sparse) {
			return nil, fmt.Errorf("features: admit: the batch has %d sparse fields, exact field %q is number %d", len(b.Sparse), t.name, t.sparse)
		}
		col := &b.Sparse[t.sparse]
		lo, hi := 0, b.Rows
		if col.Offsets != nil {
			lo, hi = int(col.Offsets[0]), int(col.Offsets[b.Rows])
		}
		if len(col.Keys) < hi || len(col.IDs) < hi {
			return nil, fmt.Errorf("features: admit: exact field %q has %d keys and %d ids for %d values (was the batch made with these tables?)", t.name, len(col.Keys), len(col.IDs), hi)
		}
		now := t.clock + int64(b.Rows)
		if t.cfg.TTL > 0 && now-t.lastSweep >= max(1, t.cfg.TTL/4) {
			t.sweep(now)
		}
		if t.cfg.Evict == EvictLFU && now-t.lfu.lastAge >= t.agePeriod() {
			t.age(now)
		}
		resets = t.admitColumn(col.IDs[lo:hi], col.Keys[lo:hi], now, resets)
		t.clock = now
	}
	ts.resets = resets
	return resets, nil
}

// CountUnknown adds to counts[i] the ids of exact table i in b (made by
// a Transformer with these tables) that have no row of their own: their
// row is a shared one (1..shared), the documented fallback. At serving,
// where nothing admits, these are the ids the bundle's maps do not know.
// Null ids (row 0) are not counted. counts must have Len() entries; b
// must have the tables' sparse fields. It only reads the tables.
func (ts *IDTables) CountUnknown(b *Batch, counts []int64) {
	for i, t := range ts.tablesOrNil() {
		col := &b.Sparse[t.sparse]
		n := int64(0)
		for _, id := range col.IDs {
			if uint32(id-1) < uint32(t.shared) {
				n++
			}
		}
		counts[i] += n
	}
}

// Names of the vectors of one table in an IDState: "<field>.<suffix>".
const (
	idKeys          = ".keys"           // U64: admitted keys, by row
	idRows          = ".rows"           // I64: own row of each key
	idCounts        = ".counts"         // I64: uses of each key
	idLast          = ".last"           // I64: clock of each key's last use
	idFree          = ".free"           // I64: the free list, in order
	idWaitingKeys   = ".waiting_keys"   // U64: waiting keys, ascending
	idWaitingCounts = ".waiting_counts" // I64
	idWaitingLast   = ".waiting_last"   // I64
	idScalars       = ".state"          // I64: the scalars, in idScalar order
	idSketch        = ".sketch"         // U64: evict lfu: the sketch's counters, 8 a word
	idLFU           = ".lfu"            // I64: evict lfu: last halving, hand, victim, its count
)

// idFormatVersion names the I64 vector holding ids.bin's format version,
// [2], present when a table has evict lfu; a file without it is version 1
// (docs/formats.md).
const idFormatVersion = "format_version"

// The scalars of a table, in the order of its ".state" vector.
const (
	scClock = iota
	scLastSweep
	scNext
	scAdmissions
	scEvictions
	scExpired
	scRejected
	scForgotten
	scTruncated
	numScalars
)

// IDState is the content of exact tables as named vectors (docs/formats.md,
// ids.bin): per table "<field>.keys" (U64) with ".rows", ".counts" and
// ".last" (I64) for the admitted ids in row order, ".free" (I64), the
// waiting ids "<field>.waiting_keys" (U64, ascending) with
// ".waiting_counts" and ".waiting_last" (I64), and ".state" (I64: clock,
// last sweep, rows ever used, admissions, evictions, expired, rejected,
// forgotten, truncated).
type IDState struct {
	U64 map[string][]uint64
	I64 map[string][]int64
}

// State returns a copy of the tables' content.
func (ts *IDTables) State() IDState {
	st := IDState{U64: map[string][]uint64{}, I64: map[string][]int64{}}
	if ts == nil {
		return st
	}
	for _, t := range ts.tables {
		type entry struct {
			key uint64
			row int32
		}
		byRow := make([]entry, 0, t.used)
		for li := range t.lines {
			l := &t.lines[li]
			for x, ref := range l.refs {
				if ref != 0 {
					byRow = append(byRow, entry{l.keys[x], ref - 1})
				}
			}
		}
		slices.SortFunc(byRow, func(a, b entry) int { return int(a.row) - int(b.row) })
		keys := make([]uint64, len(byRow))
		rows := make([]int64, len(byRow))
		counts := make([]int64, len(byRow))
		last := make([]int64, len(byRow))
		for i, e := range byRow {
			keys[i], rows[i], counts[i], last[i] = e.key, int64(e.row), int64(t.count[e.row]), t.last[e.row]
		}
		free := make([]int64, len(t.free))
		for i, r := range t.free {
			free[i] = int64(r)
		}
		var waiting []waitSlot
		for _, s := range t.wait.slots {
			if s.count != 0 {
				waiting = append(waiting, s)
			}
		}
		slices.SortFunc(waiting, func(a, b waitSlot) int {
			switch {
			case a.key < b.key:
				return -1
			case a.key > b.key:
				return 1
			}
			return 0
		})
		wk := make([]uint64, len(waiting))
		wc := make([]int64, len(waiting))
		wl := make([]int64, len(waiting))
		for i, s := range waiting {
			wk[i], wc[i], wl[i] = s.key, int64(s.count), s.last
		}
		sc := make([]int64, numScalars)
		sc[scClock], sc[scLastSweep], sc[scNext] = t.clock, t.lastSweep, int64(t.next)
		sc[scAdmissions], sc[scEvictions], sc[scExpired] = t.admissions, t.evictions, t.expired
		sc[scRejected], sc[scForgotten], sc[scTruncated] = t.rejected, t.forgotten, t.truncated.Load()
		n := t.name
		st.U64[n+idKeys], st.U64[n+idWaitingKeys] = keys, wk
		st.I64[n+idRows], st.I64[n+idCounts], st.I64[n+idLast] = rows, counts, last
		st.I64[n+idFree], st.I64[n+idWaitingCounts], st.I64[n+idWaitingLast] = free, wc, wl
		st.I64[n+idScalars] = sc
		if t.cfg.Evict == EvictLFU {
			l := &t.lfu
			words := make([]uint64, len(l.sketch)/8)
			for i := range words {
				for b := range 8 {
					words[i] |= uint64(l.sketch[8*i+b]) << (8 * b)
				}
			}
			st.U64[n+idSketch] = words
			st.I64[n+idLFU] = []int64{l.lastAge, int64(l.hand), int64(l.victim), int64(l.victimCount)}
			st.I64[idFormatVersion] = []int64{2}
		}
	}
	return st
}

// Shrunk returns new tables with what a lookup reads of ts: the admitted
// ids with their rows (and their counts and last uses, the free rows and
// the figures), without the ids waiting for admission, which only
// admission reads. Row gives every key the row ts gives it. A bundle
// holds its tables shrunk (serving never admits); a checkpoint holds them
// whole, so that a resumed run continues bit for bit. Rows freed by the
// ttl or the eviction policy are out of the map already. ts is not
// changed.
func (ts *IDTables) Shrunk() (*IDTables, error) {
	out := &IDTables{}
	if ts.Len() == 0 {
		return out, nil
	}
	st := ts.State()
	for _, t := range ts.tables {
		n := t.name
		st.U64[n+idWaitingKeys] = []uint64{}
		st.I64[n+idWaitingCounts], st.I64[n+idWaitingLast] = []int64{}, []int64{}
		cfg := t.cfg
		out.tables = append(out.tables, newIDTable(&Field{Name: n, Exact: &cfg}, t.sparse))
	}
	if err := out.SetState(st); err != nil {
		return nil, fmt.Errorf("features: shrink: %w", err)
	}
	return out, nil
}

// SetState replaces the tables' content with a State of tables of the
// same spec. Every vector is checked (present, lengths, rows in range and
// used once, keys unique, free rows consistent, counts in range) before
// anything changes; an error names the field and wraps ErrStats. Vectors
// of other fields are an error too.
func (ts *IDTables) SetState(st IDState) error {
	if v, ok := st.I64[idFormatVersion]; ok && (len(v) != 1 || v[0] != 2) {
		return errorf(ErrStats, "features: exact tables: format version %v, want [2] (or none for version 1)", v)
	}
	known := map[string]bool{}
	built := make([]*IDTable, ts.Len())
	for i, t := range ts.tables {
		nt, err := t.fromState(st)
		if err != nil {
			return err
		}
		built[i] = nt
		for _, s := range []string{idKeys, idWaitingKeys, idRows, idCounts, idLast, idFree, idWaitingCounts, idWaitingLast, idScalars} {
			known[t.name+s] = true
		}
		if t.cfg.Evict == EvictLFU {
			known[t.name+idSketch], known[t.name+idLFU] = true, true
			known[idFormatVersion] = true
		}
	}
	for name := range st.U64 {
		if !known[name] {
			return errorf(ErrStats, "features: exact tables: unknown vector %q", name)
		}
	}
	for name := range st.I64 {
		if !known[name] {
			return errorf(ErrStats, "features: exact tables: unknown vector %q", name)
		}
	}
	for i, t := range ts.tables {
		t.take(built[i])
	}
	return nil
}

// take moves the content of nt (a table of the same field) into t.
func (t *IDTable) take(nt *IDTable) {
	t.lines, t.nlines, t.n, t.count, t.last = nt.lines, nt.nlines, nt.n, nt.count, nt.last
	t.used, t.next, t.free = nt.used, nt.next, nt.free
	t.wait = nt.wait
	t.clock, t.lastSweep = nt.clock, nt.lastSweep
	t.admissions, t.evictions, t.expired = nt.admissions, nt.evictions, nt.expired
	t.rejected, t.forgotten = nt.rejected, nt.forgotten
	t.truncated.Store(nt.truncated.Load())
	t.lfu = nt.lfu
}

// fromState builds a table of t's field from st, checking everything.
func (t *IDTable) fromState(st IDState) (*IDTable, error) {
	n := t.name
	bad := func(format string, args ...any) error {
		return errorf(ErrStats, "features: exact table %q: %s", n, fmt.Sprintf(format, args...))
	}
	u64 := func(s string) ([]uint64, error) {
		v, ok := st.U64[n+s]
		if !ok {
			return nil, bad("no vector %q", n+s)
		}
		return v, nil
	}
	i64 := func(s string, l int) ([]int64, error) {
		v, ok := st.I64[n+s]
		if !ok {
			return nil, bad("no vector %q", n+s)
		}
		if l >= 0 && len(v) != l {
			return nil, bad("vector %q has %d values, want %d", n+s, len(v), l)
		}
		return v, nil
	}
	keys, err := u64(idKeys)
	if err != nil {
		return nil, err
	}
	cfg := t.cfg
	if len(keys) > cfg.Capacity {
		return nil, bad("%d admitted ids for a capacity of %d", len(keys), cfg.Capacity)
	}
	rows, err := i64(idRows, len(keys))
	if err != nil {
		return nil, err
	}
	counts, err := i64(idCounts, len(keys))
	if err != nil {
		return nil, err
	}
	last, err := i64(idLast, len(keys))
	if err != nil {
		return nil, err
	}
	free, err := i64(idFree, -1)
	if err != nil {
		return nil, err
	}
	sc, err := i64(idScalars, numScalars)
	if err != nil {
		return nil, err
	}
	wk, err := u64(idWaitingKeys)
	if err != nil {
		return nil, err
	}
	wc, err := i64(idWaitingCounts, len(wk))
	if err != nil {
		return nil, err
	}
	wl, err := i64(idWaitingLast, len(wk))
	if err != nil {
		return nil, err
	}
	for i, v := range sc {
		if v < 0 {
			return nil, bad("state value %d is negative (%d)", i, v)
		}
	}
	next := sc[scNext]
	if next > int64(cfg.Capacity) {
		return nil, bad("%d rows used of %d", next, cfg.Capacity)
	}
	if int64(len(keys))+int64(len(free)) != next {
		return nil, bad("%d rows in use and %d free, but %d ever used", len(keys), len(free), next)
	}
	nt := newIDTable(&Field{Name: t.name, Exact: &cfg}, t.sparse)
	nt.next = int32(next)
	nt.clock, nt.lastSweep = sc[scClock], sc[scLastSweep]
	nt.admissions, nt.evictions, nt.expired = sc[scAdmissions], sc[scEvictions], sc[scExpired]
	nt.rejected, nt.forgotten = sc[scRejected], sc[scForgotten]
	nt.truncated.Store(sc[scTruncated])
	seen := make([]bool, next)
	for i, k := range keys {
		r := rows[i]
		if r < 0 || r >= next || seen[r] {
			return nil, bad("row %d of id %d is out of range [0, %d) or used twice", r, i, next)
		}
		seen[r] = true
		if counts[i] < 0 || counts[i] > 1<<32-1 || last[i] < 0 || last[i] > nt.clock {
			return nil, bad("id %d: count %d or last use %d out of range", i, counts[i], last[i])
		}
		if _, dup := nt.find(k); dup {
			return nil, bad("key %#x appears twice", k)
		}
		nt.insert(k, int32(r)+1)
		nt.count[r], nt.last[r] = uint32(counts[i]), last[i]
	}
	nt.used = len(keys)
	nt.free = make([]int32, 0, len(free))
	for _, r := range free {
		if r < 0 || r >= next || seen[r] {
			return nil, bad("free row %d is out of range [0, %d) or in use", r, next)
		}
		seen[r] = true
		nt.free = append(nt.free, int32(r))
	}
	if cfg.AdmitAfter == 1 {
		if len(wk) > 0 {
			return nil, bad("%d waiting ids with admit_after 1", len(wk))
		}
	} else if len(wk) > cfg.Waiting {
		return nil, bad("%d waiting ids, at most %d", len(wk), cfg.Waiting)
	}
	for i, k := range wk {
		// A waiting id may have reached admit_after when a full table
		// refused it: it is admitted as soon as a row frees.
		if wc[i] < 1 || wc[i] > 1<<32-1 || wl[i] < 0 || wl[i] > nt.clock {
			return nil, bad("waiting id %d: count %d or last use %d out of range", i, wc[i], wl[i])
		}
		if _, admitted := nt.find(k); admitted {
			return nil, bad("key %#x is both admitted and waiting", k)
		}
		if _, dup := nt.wait.find(k); dup {
			return nil, bad("waiting key %#x appears twice", k)
		}
		nt.wait.insert(waitSlot{key: k, last: wl[i], count: uint32(wc[i])})
	}
	if cfg.Evict == EvictLFU {
		if err := nt.lfuFromState(st, keys, rows); err != nil {
			return nil, err
		}
	}
	return nt, nil
}

// lfuFromState fills the LFU state of nt (made by fromState, its map
// filled) from st. A version 1 file has none: the table continues with an
// empty sketch, its counts as saved.
func (nt *IDTable) lfuFromState(st IDState, keys []uint64, rows []int64) error {
	n := nt.name
	bad := func(format string, args ...any) error {
		return errorf(ErrStats, "features: exact table %q: %s", n, fmt.Sprintf(format, args...))
	}
	l := &nt.lfu
	for i, k := range keys {
		l.keyOf[rows[i]] = k
	}
	words, okS := st.U64[n+idSketch]
	sc, okL := st.I64[n+idLFU]
	_, v2 := st.I64[idFormatVersion]
	if !v2 && !okS && !okL {
		l.lastAge = nt.clock
		return nil
	}
	if !v2 || !okS || !okL {
		return bad("want the vectors %q and %q with format version 2", n+idSketch, n+idLFU)
	}
	if len(words)*8 != len(l.sketch) || len(sc) != 4 {
		return bad("sketch of %d words and %d lfu values, want %d and 4", len(words), len(sc), len(l.sketch)/8)
	}
	lastAge, hand, victim, vc := sc[0], sc[1], sc[2], sc[3]
	if lastAge < 0 || lastAge > nt.clock || hand < 0 || hand >= int64(nt.cfg.Capacity) ||
		victim < 0 || victim > int64(nt.next) || vc < 0 || vc > 1<<32-1 {
		return bad("lfu state %v out of range", sc)
	}
	for i, w := range words {
		for b := range 8 {
			l.sketch[8*i+b] = uint8(w >> (8 * b))
		}
	}
	l.lastAge, l.hand, l.victim, l.victimCount = lastAge, int32(hand), int32(victim), uint32(vc)
	return nil
}
