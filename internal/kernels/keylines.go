package kernels

import (
	"fmt"
	"math/bits"
)

// Key lines are the cache lines of an open-addressing map from 64-bit
// keys to int32 values (the id map of an exact table, features.IDTable):
// a table of 64-byte lines of KeyLineWords words, each holding
// KeyLineSlots keys in words 0..4 and their values as int32s in words
// 5..7 (slot x's value in the low half of word 5+x/2 when x is even, the
// high half when odd; the last half word is 0). The home line of key k in
// a table of n lines is the high word of k × n (Lemire's multiply-shift).
// A value of 0 marks an empty slot, whose key must be 0.
const (
	KeyLineSlots = 5
	KeyLineWords = 8
)

// ProbeKeyLines sets dst[i] to the value of the slot that holds keys[i]
// in its home line of table (key lines), or to 0 when that line does not
// hold it. Where the map itself keeps a key past its home line is the
// caller's business: ProbeKeyLines reads one line a key, and with
// AVX-512 compares its five keys at once. It panics when table is empty
// or not whole lines, or dst is shorter than keys.
func ProbeKeyLines(dst []int32, table, keys []uint64) {
	checkKeyLines("ProbeKeyLines", table)
	if len(dst) < len(keys) {
		panic(fmt.Sprintf("kernels: ProbeKeyLines: %d keys for %d results", len(keys), len(dst)))
	}
	if len(keys) == 0 {
		return
	}
	n := probeKeyLinesAsm(dst, table, keys)
	probeKeyLinesGo(dst[n:], table, keys[n:])
}

// PrefetchKeyLines asks the CPU to bring the home lines of keys in table
// (key lines) into its caches, for a ProbeKeyLines of those keys a few
// dozen keys later. It is a hint, as PrefetchRows; it panics when table
// is empty or not whole lines.
func PrefetchKeyLines(table, keys []uint64) {
	checkKeyLines("PrefetchKeyLines", table)
	if len(keys) > 0 {
		prefetchKeyLines(table, keys)
	}
}

func checkKeyLines(fn string, table []uint64) {
	if len(table) == 0 || len(table)%KeyLineWords != 0 {
		panic(fmt.Sprintf("kernels: %s: a table of %d words is not whole lines of %d", fn, len(table), KeyLineWords))
	}
}

// KeyLineHome is the home line of key k in a table of lines lines.
func KeyLineHome(k, lines uint64) uint64 {
	hi, _ := bits.Mul64(k, lines)
	return hi
}

// probeKeyLinesGo is ProbeKeyLines without assembly. Empty slots hold
// key 0 and value 0, and at most one slot of a line holds a key other
// than 0, so the lowest slot that holds a key gives its value, or 0.
func probeKeyLinesGo(dst []int32, table, keys []uint64) {
	n := uint64(len(table) / KeyLineWords)
	for i, k := range keys {
		l := KeyLineHome(k, n) * KeyLineWords
		w := (*[KeyLineWords]uint64)(table[l : l+KeyLineWords])
		var v int32
		for x := KeyLineSlots - 1; x >= 0; x-- {
			if w[x] == k {
				v = int32(uint32(w[KeyLineSlots+x/2] >> (32 * (x % 2))))
			}
		}
		dst[i] = v
	}
}
