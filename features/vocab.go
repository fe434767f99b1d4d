package features

import (
	"hash/maphash"
	"math"
	"strconv"
)

// vocabTable maps canonical value text to vocabulary ids. It holds two
// open-addressing tables: one keyed by the text (for string columns) and one
// keyed by the integer value of the keys that are canonical integers (for
// integer columns, which are then found without being formatted). Lookups
// are exact: a hit is confirmed by comparing the text or the integer. The
// table hashes are private to the process (maphash) and never leave it; ids
// depend only on the fitted vocabulary. Immutable after construction; safe
// for concurrent reads.
type vocabTable struct {
	seed  maphash.Seed
	smask uint64
	strs  []vocabSlot
	imask uint64
	ints  []intSlot
	keys  []string // keys[id-1]
	// When the integer keys span at most maxDenseSpan values (hours,
	// positions, small codes), dense[x-dlo] is the id of integer x (0
	// when not a key): one load instead of a hash and a probe.
	dense []int32
	dlo   int64
}

// maxDenseSpan bounds the integer range of a dense lookup (256 KB of ids).
const maxDenseSpan = 1 << 16

type vocabSlot struct {
	hash uint64
	id   int32 // 0 = empty
}

type intSlot struct {
	key int64
	id  int32 // 0 = empty
}

func tableSize(n int) int {
	s := 8
	for s < 2*n {
		s *= 2
	}
	return s
}

// mix64 is a 64-bit finaliser (splitmix64) used to spread integer keys.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// newVocabTable builds the table; ok is false if a value appears twice.
func newVocabTable(values []string) (v *vocabTable, ok bool) {
	var nints int
	parsed := make([]int64, len(values))
	isInt := make([]bool, len(values))
	for i, s := range values {
		if x, err := strconv.ParseInt(s, 10, 64); err == nil && strconv.FormatInt(x, 10) == s {
			parsed[i], isInt[i] = x, true
			nints++
		}
	}
	ns, ni := tableSize(len(values)), tableSize(nints)
	v = &vocabTable{
		seed:  maphash.MakeSeed(),
		smask: uint64(ns - 1),
		strs:  make([]vocabSlot, ns),
		imask: uint64(ni - 1),
		ints:  make([]intSlot, ni),
		keys:  values,
	}
	if nints > 0 {
		lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
		for i, x := range parsed {
			if isInt[i] {
				lo, hi = min(lo, x), max(hi, x)
			}
		}
		if uint64(hi)-uint64(lo) < maxDenseSpan {
			v.dense, v.dlo = make([]int32, hi-lo+1), lo
		}
	}
	for i, s := range values {
		h := maphash.String(v.seed, s)
		if v.lookupString(s, h) != 0 {
			return nil, false
		}
		j := h & v.smask
		for v.strs[j].id != 0 {
			j = (j + 1) & v.smask
		}
		v.strs[j] = vocabSlot{hash: h, id: int32(i + 1)}
		if isInt[i] {
			j := mix64(uint64(parsed[i])) & v.imask
			for v.ints[j].id != 0 {
				j = (j + 1) & v.imask
			}
			v.ints[j] = intSlot{key: parsed[i], id: int32(i + 1)}
			if v.dense != nil {
				v.dense[parsed[i]-v.dlo] = int32(i + 1)
			}
		}
	}
	return v, true
}

// lookupText is lookupString with the text's hash computed.
func (v *vocabTable) lookupText(s string) int32 { return v.lookupString(s, maphash.String(v.seed, s)) }

func (v *vocabTable) lookupString(s string, h uint64) int32 {
	for j := h & v.smask; ; j = (j + 1) & v.smask {
		sl := v.strs[j]
		if sl.id == 0 {
			return 0
		}
		if sl.hash == h && v.keys[sl.id-1] == s {
			return sl.id
		}
	}
}

func (v *vocabTable) lookupInt(x int64) int32 {
	if v.dense != nil {
		// Wrapping arithmetic: any x outside the range is out of bounds.
		if k := uint64(x) - uint64(v.dlo); k < uint64(len(v.dense)) {
			return v.dense[k]
		}
		return 0
	}
	for j := mix64(uint64(x)) & v.imask; ; j = (j + 1) & v.imask {
		sl := v.ints[j]
		if sl.id == 0 {
			return 0
		}
		if sl.key == x {
			return sl.id
		}
	}
}

// id returns the vocabulary id of value r of c (0 when out of vocabulary).
// The caller has checked isNull.
func (v *vocabTable) id(c *textCol, r int) int32 {
	switch c.kind {
	case tString:
		return v.lookupText(c.sval(r))
	case tInt64:
		return v.lookupInt(c.i64[r])
	case tInt32:
		return v.lookupInt(int64(c.i32[r]))
	case tUint32:
		return v.lookupInt(int64(c.u32[r]))
	case tUint64:
		if u := c.u64[r]; u <= 1<<63-1 {
			return v.lookupInt(int64(u))
		}
		// Above int64: only the text table can hold it.
	}
	var buf [32]byte
	s, b := c.text(r, buf[:0])
	if b != nil {
		return v.lookupString(string(b), maphash.Bytes(v.seed, b))
	}
	return v.lookupText(s)
}
