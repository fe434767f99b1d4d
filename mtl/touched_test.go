package mtl_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/onestone/onestone/mtl"
)

// The rows a trainer records as touched are exactly the ids of the
// batches it trained on since the last Reset, with one worker or two,
// and every other row is unchanged to the bit: a delta of the recorded
// rows and the dense parameters reproduces the model.
func TestTrackTouched(t *testing.T) {
	for _, workers := range []int{1, 2} {
		m, tr := newTrainer(t, workers)
		rng := rand.New(rand.NewPCG(7, 8))
		if _, err := tr.Step(syntheticBatch(rng, 64)); err != nil {
			t.Fatal(err)
		}
		touched := tr.TrackTouched()
		if tr.TrackTouched() != touched || tr.Touched() != touched {
			t.Fatal("TrackTouched gives another record when called again")
		}
		for f := range touched.Tables() {
			if n := touched.Count(f); n != 0 {
				t.Fatalf("table %d: %d rows recorded before a step", f, n)
			}
		}
		_, before, _ := m.EmbeddingTables()
		for i := range before {
			before[i] = slices.Clone(before[i])
		}
		want := make([]map[int32]bool, 2)
		for range 2 {
			b := syntheticBatch(rng, 6)
			for f, col := range b.Sparse {
				if want[f] == nil {
					want[f] = map[int32]bool{}
				}
				for _, id := range col.IDs {
					want[f][id] = true
				}
			}
			if _, err := tr.Step(b); err != nil {
				t.Fatal(err)
			}
		}
		_, after, dims := m.EmbeddingTables()
		for f := range touched.Tables() {
			rows := touched.Rows(f, nil)
			if len(rows) != len(want[f]) || touched.Count(f) != len(rows) || !slices.IsSorted(rows) {
				t.Fatalf("%d workers, table %d: recorded %v, the batches had %v", workers, f, rows, want[f])
			}
			for _, r := range rows {
				if !want[f][r] {
					t.Fatalf("%d workers, table %d: recorded row %d, not in the batches", workers, f, r)
				}
			}
			d := dims[f]
			for r := range len(after[f]) / d {
				if want[f][int32(r)] {
					continue
				}
				for k := range d {
					if math.Float32bits(after[f][r*d+k]) != math.Float32bits(before[f][r*d+k]) {
						t.Fatalf("%d workers, table %d: row %d changed but was not recorded", workers, f, r)
					}
				}
			}
		}
		touched.Reset()
		if n, _ := touched.Total(); n != 0 {
			t.Fatalf("%d rows after Reset", n)
		}
	}
}

// Tracking touched rows adds no allocation to a step.
func TestTrackTouchedAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	_, tr := newTrainer(t, 2)
	touched := tr.TrackTouched()
	rng := rand.New(rand.NewPCG(5, 6))
	b := syntheticBatch(rng, 256)
	for range 3 {
		if _, err := tr.Step(b); err != nil {
			t.Fatal(err)
		}
	}
	if allocs := testing.AllocsPerRun(20, func() {
		if _, err := tr.Step(b); err != nil {
			t.Fatal(err)
		}
	}); allocs > 0 {
		t.Fatalf("Step with touched rows tracked allocates %v times per call", allocs)
	}
	if n, _ := touched.Total(); n == 0 {
		t.Fatal("no rows recorded")
	}
}

// With exact tables, a row given to a new id (its weights reset to the
// id's shared row) is recorded too: every row whose weights changed
// since the Reset is.
func TestTrackTouchedExact(t *testing.T) {
	ids, m, tr := exactTrainer(t, "{capacity: 2, shared: 3, evict: lru}", mtl.EmbeddingAdagrad)
	for range 3 {
		if _, err := tr.Step(idBatch(ids, []uint64{101, 202, 101, 202}, 1)); err != nil {
			t.Fatal(err)
		}
	}
	touched := tr.TrackTouched()
	emb := m.Embeddings()[0]
	before := slices.Clone(emb.Data)
	// 303 evicts 101 and takes its row, then 404 evicts 202.
	for _, k := range []uint64{303, 404} {
		if _, err := tr.Step(idBatch(ids, []uint64{k, k}, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if s := ids.Stats()[0]; s.Evictions != 2 {
		t.Fatalf("stats %+v, want 2 evictions", s)
	}
	rec := map[int32]bool{}
	for _, r := range touched.Rows(0, nil) {
		rec[r] = true
	}
	changed := 0
	for r := range emb.Rows {
		for k := range emb.Dim {
			i := r*emb.Dim + k
			if math.Float32bits(emb.Data[i]) != math.Float32bits(before[i]) {
				changed++
				if !rec[int32(r)] {
					t.Fatalf("row %d changed but was not recorded (recorded %v)", r, touched.Rows(0, nil))
				}
				break
			}
		}
	}
	if changed == 0 {
		t.Fatal("no row changed")
	}
}
