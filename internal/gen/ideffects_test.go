package gen

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/onestone/onestone/internal/auc"
)

// eventsSum hashes n events of stream (seed, 1) of w, every column.
func eventsSum(w *World, seed uint64, n int) uint64 {
	h := fnv.New64a()
	s := w.NewStream(seed, 1)
	var e Event
	var b [8]byte
	put := func(x uint64) {
		for k := range b {
			b[k] = byte(x >> (8 * k))
		}
		h.Write(b[:])
	}
	for range n {
		s.Next(&e)
		put(uint64(e.UserID))
		put(uint64(e.ItemID))
		h.Write([]byte(e.Category + e.Brand + e.Device))
		put(uint64(e.Hour)<<32 | uint64(e.Position))
		put(math.Float64bits(e.Price))
		if e.Age != nil {
			put(uint64(*e.Age))
		}
		for _, t := range e.UserTags {
			h.Write([]byte(t))
		}
		put(math.Float64bits(e.UserActivity))
		put(math.Float64bits(e.ItemPopularity))
		put(uint64(e.Click)<<32 | uint64(e.Conversion))
		put(math.Float64bits(e.TrueCTR))
		put(math.Float64bits(e.TrueCVR))
	}
	return h.Sum64()
}

// TestIDEffectsZeroKeepsData: without id effects the events are those of
// earlier versions bit for bit (the demo, the README's figures and other
// tests depend on them). The hash was taken before id effects existed.
func TestIDEffectsZeroKeepsData(t *testing.T) {
	w, err := NewSkewedWorld(1, 20000, 20000, 0.5, Skew{Users: 1.05, Items: 1.05})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.AddIDEffects(1, 0); err != nil {
		t.Fatal(err)
	}
	const want uint64 = 0xd69d9eae4b5c2d98
	if got := eventsSum(w, 1, 5000); got != want {
		t.Errorf("events hash %#x, want %#x: the default data changed", got, want)
	}
}

// TestIDEffects: id effects leave every column but the labels and true
// probabilities as they were (the effects are hidden), keep the rates,
// raise the ceiling AUC, and add a user × item affinity that is not a
// sum of a user and an item term.
func TestIDEffects(t *testing.T) {
	skew := Skew{Users: 0.8, Items: 0.8}
	plain, err := NewSkewedWorld(2, 5000, 5000, 0.5, skew)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewSkewedWorld(2, 5000, 5000, 0.5, skew)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.AddIDEffects(2, 1); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(plain.users, w.users) || !reflect.DeepEqual(plain.items, w.items) ||
		!reflect.DeepEqual(plain.itemCDF, w.itemCDF) || !reflect.DeepEqual(plain.userCDF, w.userCDF) {
		t.Fatal("id effects changed the users, the items or their picks")
	}

	// Rates and ceilings on the same impressions.
	const n = 200000
	rates := func(w *World) (ctr, cvr, ceiling float64) {
		r := rand.New(rand.NewPCG(7, 8))
		lr := rand.New(rand.NewPCG(9, 10))
		var d draw
		scores := make([]float64, n)
		labels := make([]float32, n)
		var clicks float64
		for k := range n {
			w.drawInto(r, &d)
			c, v := w.probabilities(&d)
			ctr += c
			cvr += c * v
			clicks += c
			scores[k] = c
			if lr.Float64() < c {
				labels[k] = 1
			}
		}
		return ctr / n, cvr / clicks, auc.AUC(&auc.Scratch{}, scores, labels, nil)
	}
	pc, pv, pa := rates(plain)
	c, v, a := rates(w)
	if math.Abs(c-0.035) > 0.004 || math.Abs(v-0.15) > 0.02 {
		t.Errorf("with id effects: ctr %.4f, cvr|click %.4f; want about 0.035 and 0.15 (without: %.4f %.4f)", c, v, pc, pv)
	}
	if a < pa+0.04 {
		t.Errorf("ceiling CTR AUC %.4f with id effects, %.4f without: want a clear rise", a, pa)
	}

	// The affinity: for two users of one segment and two items of one
	// category and brand, the CTR structure's double difference is the
	// affinity's alone, 0 without id effects.
	var u1, u2, i1, i2 = 0, -1, 0, -1
	for u := 1; u < len(w.users) && u2 < 0; u++ {
		if w.users[u].segment == w.users[u1].segment {
			u2 = u
		}
	}
	for i := 1; i < len(w.items) && i2 < 0; i++ {
		if w.items[i].category == w.items[i1].category && w.items[i].brand == w.items[i1].brand {
			i2 = i
		}
	}
	if u2 < 0 || i2 < 0 {
		t.Fatal("no two users of one segment or items of one brand")
	}
	dd := func(w *World) float64 {
		s := func(u, i int) float64 {
			sh, _ := w.structures(&draw{user: u, item: i, device: 1, hour: 9, position: 3})
			return sh
		}
		return s(u1, i1) + s(u2, i2) - s(u1, i2) - s(u2, i1)
	}
	hu := func(u, j int) float64 { return w.userHid[u*idStride+2+j] }
	hi := func(i, j int) float64 { return w.itemHid[i*idStride+2+j] }
	var want float64
	for j := range idFactors {
		want += (hu(u1, j) - hu(u2, j)) * (hi(i1, j) - hi(i2, j))
	}
	want /= math.Sqrt(idFactors)
	if got := dd(plain); math.Abs(got) > 1e-12 {
		t.Errorf("double difference without id effects %v, want 0", got)
	}
	if got := dd(w); math.Abs(got-want) > 1e-9 || want == 0 {
		t.Errorf("double difference with id effects %v, want %v", got, want)
	}
}

func TestIDEffectsBadStrength(t *testing.T) {
	for _, s := range []float64{-0.1, MaxIDEffects + 0.5, math.NaN(), math.Inf(1)} {
		w, err := NewWorld(1, 10, 10, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.AddIDEffects(1, s); err == nil {
			t.Errorf("strength %v accepted", s)
		}
	}
	w, err := NewWorld(1, 10, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.AddIDEffects(1, 0.5); err != nil {
		t.Fatal(err)
	}
	if err := w.AddIDEffects(1, 0.5); err == nil {
		t.Error("id effects added twice")
	}
}
