package features

import (
	"math/rand/v2"
	"testing"
)

// TestIDMapAgainstGoMap inserts and removes random keys in a small map
// (so that probes wrap around its end) and checks every lookup, one by
// one and batched (rowsTo), against a Go map, and the Robin Hood
// invariant after every change: along a cluster, no entry is closer to
// its home than its predecessor minus one. Homes crowd at both ends of
// the map, so that keys spill past their home lines and around the end.
func TestIDMapAgainstGoMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		capacity := 1 + r.IntN(40)
		tab := newIDTable(&Field{Name: "f", Exact: &Exact{Capacity: capacity, AdmitAfter: 2, Waiting: capacity, Shared: 3}}, 0)
		want := map[uint64]int32{}
		wantWait := map[uint64]bool{}
		keys := make([]uint64, 3*capacity)
		for i := range keys {
			keys[i] = r.Uint64()
			switch r.IntN(6) {
			case 0, 1:
				keys[i] = keys[i]>>8 | 0xff<<56 // crowd the homes at the end
			case 2:
				keys[i] >>= 8 // and at the start
			}
		}
		// Key 0 is the key of an empty slot: it must be found only when
		// admitted.
		keys[1] = 0
		for op := range 2000 {
			k := keys[r.IntN(len(keys))]
			_, in := want[k]
			switch {
			case !in && len(want) < capacity && r.IntN(2) == 0:
				want[k] = int32(op)
				tab.insert(k, int32(op)+1)
			case in && r.IntN(2) == 0:
				delete(want, k)
				tab.remove(k)
			}
			_, win := wantWait[k]
			switch {
			case !win && tab.wait.len < capacity && r.IntN(2) == 0:
				wantWait[k] = true
				tab.wait.insert(waitSlot{key: k, count: 1})
			case win && r.IntN(2) == 0:
				delete(wantWait, k)
				tab.wait.remove(k)
			}
			for _, q := range keys {
				j, ok := tab.find(q)
				row, in := want[q]
				if ok != in || (ok && tab.refAt(j)-1 != row) {
					t.Fatalf("round %d op %d: find(%x) = %d %v, want %d %v", round, op, q, j, ok, row, in)
				}
				if _, ok := tab.wait.find(q); ok != wantWait[q] {
					t.Fatalf("round %d op %d: waiting find(%x) = %v", round, op, q, ok)
				}
			}
			// rowsTo, in groups with prefetches, gives every non-null key
			// its Row and leaves nulls alone.
			ids := make([]int32, len(keys))
			for i := range ids {
				ids[i] = int32(min(1, i%5))
			}
			tab.rowsTo(ids, keys)
			for i, q := range keys {
				exp := 1 + int32(q%tab.shared)
				if r, in := want[q]; in {
					exp = tab.base + r
				}
				if i%5 == 0 {
					exp = 0
				}
				if ids[i] != exp {
					t.Fatalf("round %d op %d: rowsTo gave key %d row %d, want %d", round, op, i, ids[i], exp)
				}
			}
			checkRobinHood(t, tab.n, tab.homeOf, func(j uint64) (uint64, bool) { return tab.keyAt(j), tab.refAt(j) != 0 })
			checkRobinHood(t, tab.wait.n, func(k uint64) uint64 { return home(k, tab.wait.n) }, func(j uint64) (uint64, bool) { return tab.wait.slots[j].key, tab.wait.slots[j].count != 0 })
			if tab.wait.len != len(wantWait) {
				t.Fatalf("waiting len %d, want %d", tab.wait.len, len(wantWait))
			}
		}
	}
}

func checkRobinHood(t *testing.T, n uint64, homeOf func(k uint64) uint64, at func(j uint64) (uint64, bool)) {
	t.Helper()
	for j := range n {
		k, used := at(j)
		if !used {
			continue
		}
		d := dist(j, homeOf(k), n)
		if d == 0 {
			continue
		}
		p := (j + n - 1) % n
		pk, pused := at(p)
		if !pused || dist(p, homeOf(pk), n)+1 < d {
			t.Fatalf("slot %d (distance %d) follows slot %d that breaks the invariant", j, d, p)
		}
	}
}
