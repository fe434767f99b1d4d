package rowindex

import (
	"math/rand/v2"
	"testing"
)

// TestIndex checks the index against a map: first-touch positions, on
// ids drawn from small and large ranges (many repeats, and ids that
// collide in the hash), through resets to smaller and larger sizes.
func TestIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var x Index
	for _, c := range []struct{ n, card int }{{0, 1}, {1, 1}, {5, 3}, {300, 50}, {512, 100_000}, {40, 1 << 30}, {2000, 2000}} {
		x.Reset(c.n)
		want := map[int32]int32{}
		for range c.n {
			id := int32(rng.IntN(c.card))
			pos, added := x.Find(id, int32(len(want)))
			w, ok := want[id]
			if !ok {
				w = int32(len(want))
				want[id] = w
			}
			if added == ok || pos != w {
				t.Fatalf("n %d: id %d: position %d added %v, want %d added %v", c.n, id, pos, added, w, !ok)
			}
		}
	}
}
