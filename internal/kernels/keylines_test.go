package kernels

import (
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"
)

// keyLineTable builds a table of n key lines filled as a map would be
// (a prefix of each line used, values 1 or more) and returns it with the
// keys it holds and their values. Keys are chosen for their home lines,
// so that every slot position, full lines and empty lines occur; key 0
// is held when zero is set.
func keyLineTable(r *rand.Rand, n int, zero bool) ([]uint64, map[uint64]int32) {
	table := make([]uint64, n*KeyLineWords)
	held := map[uint64]int32{}
	for l := range n {
		used := r.IntN(KeyLineSlots + 1)
		if l == 0 {
			used = KeyLineSlots
		}
		for x := range used {
			var k uint64
			for {
				k = r.Uint64()
				if l == 0 && x == 0 && zero {
					k = 0
				}
				hi, _ := bits.Mul64(k, uint64(n))
				// Most keys at home; some from other lines, as keys
				// spilled there.
				if _, dup := held[k]; !dup && (hi == uint64(l) || r.IntN(4) == 0 || k == 0) {
					break
				}
			}
			v := int32(1 + r.IntN(1<<31-1))
			held[k] = v
			w := &table[l*KeyLineWords+KeyLineSlots+x/2]
			table[l*KeyLineWords+x] = k
			*w |= uint64(uint32(v)) << (32 * (x % 2))
		}
	}
	return table, held
}

// keyLineRef is ProbeKeyLines's documented result, written independently:
// the value of the slot holding k in its home line, else 0.
func keyLineRef(table []uint64, k uint64) int32 {
	n := uint64(len(table) / KeyLineWords)
	hi, _ := bits.Mul64(k, n)
	for x := range uint64(KeyLineSlots) {
		w := table[hi*KeyLineWords+KeyLineSlots+x/2]
		v := int32(uint32(w >> (32 * (x % 2))))
		if v != 0 && table[hi*KeyLineWords+x] == k {
			return v
		}
	}
	return 0
}

// TestProbeKeyLines compares ProbeKeyLines (with AVX-512 where the CPU has
// it) and its portable code with the reference on tables of odd numbers
// of lines, for keys held at home, held off their home lines, absent, and
// key 0 held or not.
func TestProbeKeyLines(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 7, 17, 129} {
		for _, zero := range []bool{false, true} {
			table, held := keyLineTable(r, n, zero)
			keys := []uint64{0}
			for k := range held {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for range 50 {
				keys = append(keys, r.Uint64())
			}
			r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
			found := 0
			for _, m := range []int{1, 7, 33, len(keys)} {
				m = min(m, len(keys))
				got := make([]int32, m+1)
				got[m] = -7
				ProbeKeyLines(got, table, keys[:m])
				port := make([]int32, m)
				probeKeyLinesGo(port, table, keys[:m])
				for i, k := range keys[:m] {
					want := keyLineRef(table, k)
					if got[i] != want || port[i] != want {
						t.Fatalf("%d lines, key %#x: ProbeKeyLines %d, portable %d, want %d", n, k, got[i], port[i], want)
					}
					if want != 0 {
						found++
					}
				}
				if got[m] != -7 {
					t.Fatalf("ProbeKeyLines wrote past its keys")
				}
				PrefetchKeyLines(table, keys[:m])
			}
			if found == 0 {
				t.Fatalf("%d lines: no key found: the test wants some", n)
			}
		}
	}
	for _, bad := range []func(){
		func() { ProbeKeyLines(make([]int32, 1), make([]uint64, 7), []uint64{1}) },
		func() { ProbeKeyLines(make([]int32, 1), nil, []uint64{1}) },
		func() { ProbeKeyLines(make([]int32, 1), make([]uint64, 8), []uint64{1, 2}) },
		func() { PrefetchKeyLines(make([]uint64, 9), []uint64{1}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic on a bad shape")
				}
			}()
			bad()
		}()
	}
}

func TestKeyLinesAllocNothing(t *testing.T) {
	table := make([]uint64, 4*KeyLineWords)
	keys := []uint64{1, 2, 3}
	dst := make([]int32, 3)
	if a := testing.AllocsPerRun(10, func() {
		ProbeKeyLines(dst, table, keys)
		PrefetchKeyLines(table, keys)
	}); a != 0 {
		t.Fatalf("%v allocations", a)
	}
}
