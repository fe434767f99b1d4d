package features

import "math/bits"

// The LFU policy of an exact table (evict: lfu) is TinyLFU's, with a
// margin: a full table gives an id a row only when the id is used
// clearly more often than the row it would take.
//
//   - Frequency. Every use of an id is counted: an admitted id's in its
//     map slot, any other id's in a count-min sketch (lfuState.sketch) of
//     4 rows of lfuWidth 8-bit counters, conservatively updated (only the
//     counters at the minimum are raised, so an estimate exceeds the true
//     count only where all 4 counters collide). An id admitted starts with
//     its sketch estimate, the uses it had while it waited.
//   - Ageing. Every lfuAgeFactor × capacity training examples, every count
//     and every counter is halved, so that what was popular long ago fades
//     and the counts are those of a window of about that many examples.
//   - Admission. A table with no free row picks a victim: the least used
//     (then least recently used, then lowest) of the next lfuSample own
//     rows not used by the current batch, from a hand that walks the rows
//     round and round. The id takes the victim's row only if its count
//     exceeds the victim's by more than the square root of their sum
//     (lfuWins); otherwise it keeps its shared row (the refusal is
//     counted as rejected) and the victim stays the victim until its
//     count changes. One row is freed per admission, never a batch of
//     them, and an id that is not clearly more frequent than what the
//     table holds never pushes a row out.
//
// Everything depends on the sequence of batches only, and the sketch, the
// hand and the victim are in the table's state (ids.bin), so a restored
// table continues exactly.
type lfuState struct {
	sketch []uint8  // 4 rows of width counters
	shift  uint     // 64 - log2(width)
	keyOf  []uint64 // per own row, the key of its id (valid while the row is in use)

	lastAge     int64  // clock of the last halving
	hand        int32  // next own row the victim search looks at
	victim      int32  // own row + 1 of the current victim, 0 for none
	victimCount uint32 // its count when it was chosen
}

const (
	// lfuAgeFactor × capacity training examples pass between halvings
	// (TinyLFU's sample size is 10 × the cache's size).
	lfuAgeFactor = 10
	// lfuSample own rows are compared to choose a victim.
	lfuSample = 8
	// lfuDepth is the number of rows of the sketch.
	lfuDepth = 4
)

// lfuMix are odd multipliers, one per sketch row: row i's counter of key
// k is (k·lfuMix[i]) >> shift.
var lfuMix = [lfuDepth]uint64{0x9e3779b97f4a7c15, 0xc2b2ae3d27d4eb4f, 0x165667b19e3779f9, 0xd6e8feb86659fd93}

// lfuWidth is the number of counters in a sketch row of a table of
// capacity rows: the power of two at least capacity, at least 64.
func lfuWidth(capacity int) int {
	return 1 << bits.Len(uint(max(64, capacity)-1))
}

func (l *lfuState) init(capacity int) {
	w := lfuWidth(capacity)
	l.sketch = make([]uint8, lfuDepth*w)
	l.shift = uint(64 - bits.TrailingZeros(uint(w)))
	l.keyOf = make([]uint64, capacity)
}

// add counts a use of k in the sketch and returns its estimate.
func (l *lfuState) add(k uint64) uint32 {
	w := len(l.sketch) / lfuDepth
	var idx [lfuDepth]int
	m := uint8(255)
	for i := range lfuDepth {
		idx[i] = i*w + int((k*lfuMix[i])>>l.shift)
		m = min(m, l.sketch[idx[i]])
	}
	if m == 255 {
		return 255
	}
	for _, j := range idx {
		if l.sketch[j] == m {
			l.sketch[j] = m + 1
		}
	}
	return uint32(m) + 1
}

// estimate returns the sketch's count of k.
func (l *lfuState) estimate(k uint64) uint32 {
	w := len(l.sketch) / lfuDepth
	m := uint8(255)
	for i := range lfuDepth {
		m = min(m, l.sketch[i*w+int((k*lfuMix[i])>>l.shift)])
	}
	return uint32(m)
}

// agePeriod is the number of training examples between halvings.
func (t *IDTable) agePeriod() int64 { return lfuAgeFactor * int64(t.cfg.Capacity) }

// age halves every count of the table and of its sketch.
func (t *IDTable) age(now int64) {
	for r := range t.count {
		t.count[r] >>= 1
	}
	for j := range t.lfu.sketch {
		t.lfu.sketch[j] >>= 1
	}
	t.lfu.lastAge = now
}

// owner returns the slot of the id owning own row r, or false when r is
// free.
func (t *IDTable) owner(r int32) (uint64, bool) {
	j, ok := t.find(t.lfu.keyOf[r])
	if !ok || t.refAt(j) != r+1 {
		return 0, false
	}
	return j, true
}

// lfuWins reports whether an id used count times takes the row of a
// victim used victim times: when count − victim exceeds
// √(count + victim), one standard deviation of the difference of two
// Poisson counts of the same rate. An eviction throws away what the
// victim's row learned, and the new id's row starts again from its
// shared row, so a swap must be worth it. Near a full table's capacity
// Zipf traffic has many ids of nearly the same rate, whose counts in a
// window of 10 × capacity examples are small and noisy: with the plain
// comparison (count > victim) they took each other's rows on every lead
// of one, tens of thousands of evictions an epoch that each lost two
// ids' training (docs/spec.md, "Against hashing at equal memory"). The
// margin refuses such coin flips and still lets a clearly more frequent
// id in: a new id needs 2 uses against a row unused since the last
// halving, 5 against one used twice, 115 against one used 100 times.
func lfuWins(count, victim uint32) bool {
	if count <= victim {
		return false
	}
	d := uint64(count - victim)
	return d*d > uint64(count)+uint64(victim)
}

// replace gives the row of the victim to an id of frequency count if
// count clearly exceeds the victim's (lfuWins), on a full table (evict:
// lfu).
func (t *IDTable) replace(count uint32, now int64) (int32, bool) {
	r, c, ok := t.victimRow(now)
	if !ok || !lfuWins(count, c) {
		return 0, false
	}
	t.remove(t.lfu.keyOf[r])
	t.lfu.victim = 0
	t.used--
	t.evictions++
	return r, true
}

// victimRow returns the current victim and its count, choosing a new one
// when there is none or the old one was used, freed or aged since.
func (t *IDTable) victimRow(now int64) (int32, uint32, bool) {
	l := &t.lfu
	if l.victim != 0 {
		r := l.victim - 1
		if _, ok := t.owner(r); ok && t.last[r] < now && t.count[r] == l.victimCount {
			return r, l.victimCount, true
		}
		l.victim = 0
	}
	// Rows 0..next-1 have been used; on a full table next is the capacity.
	n := t.next
	if n == 0 {
		return 0, 0, false
	}
	best, bestCount, bestLast, found := int32(0), uint32(0), int64(0), 0
	for range 4 * lfuSample {
		r := l.hand
		if l.hand++; l.hand >= n {
			l.hand = 0
		}
		if _, ok := t.owner(r); !ok || t.last[r] >= now {
			continue
		}
		c, last := t.count[r], t.last[r]
		if found == 0 || c < bestCount || c == bestCount && (last < bestLast || last == bestLast && r < best) {
			best, bestCount, bestLast = r, c, last
		}
		if found++; found == lfuSample {
			break
		}
	}
	if found == 0 {
		return 0, 0, false
	}
	l.victim, l.victimCount = best+1, bestCount
	return best, bestCount, true
}
