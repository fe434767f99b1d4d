package gen

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// topShare draws n impressions and returns the share of them that the
// most frequent 1% of users and of items get.
func topShare(w *World, n int) (users, items float64) {
	r := rand.New(rand.NewPCG(1, 2))
	uc := make([]int, len(w.users))
	ic := make([]int, len(w.items))
	var d draw
	for range n {
		w.drawInto(r, &d)
		uc[d.user]++
		ic[d.item]++
	}
	top := func(c []int) float64 {
		slices.Sort(c)
		s := 0
		for _, x := range c[len(c)-len(c)/100:] {
			s += x
		}
		return float64(s) / float64(n)
	}
	return top(uc), top(ic)
}

// TestSkew: a Zipf skew gives the top 1% of ids far more impressions
// than the default picks do, and a zero Skew is the default world.
func TestSkew(t *testing.T) {
	plain, err := NewWorld(3, 10000, 10000, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	zero, err := NewSkewedWorld(3, 10000, 10000, 0.5, Skew{})
	if err != nil {
		t.Fatal(err)
	}
	skewed, err := NewSkewedWorld(3, 10000, 10000, 0.5, Skew{Users: 1.1, Items: 1.1})
	if err != nil {
		t.Fatal(err)
	}
	pu, pi := topShare(plain, 200000)
	zu, zi := topShare(zero, 200000)
	su, si := topShare(skewed, 200000)
	if pu != zu || pi != zi || plain.biasCTR != zero.biasCTR {
		t.Errorf("a zero skew changed the world: top shares %v %v vs %v %v", zu, zi, pu, pi)
	}
	// Uniform users: about 1.2% (the top 1% of 20 draws each); Zipf 1.1
	// over 10,000: about 60%.
	if pu > 0.02 || su < 0.4 {
		t.Errorf("top 1%% of users: %.3f plain, %.3f skewed", pu, su)
	}
	if si < 2*pi || si < 0.4 {
		t.Errorf("top 1%% of items: %.3f plain, %.3f skewed", pi, si)
	}
	if _, err := NewSkewedWorld(3, 10, 10, 0, Skew{Users: 5}); err == nil {
		t.Error("a skew of 5 was accepted")
	}
}
