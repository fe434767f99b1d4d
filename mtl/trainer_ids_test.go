package mtl_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
)

// exactTrainer builds a model and trainer over one exact field "id" (and a
// dense column) with the trainer admitting to the transform's tables.
func exactTrainer(t *testing.T, exact, optimizer string) (*features.IDTables, *mmoe.Model, *mtl.Trainer) {
	t.Helper()
	spec, err := features.ParseSpec(strings.NewReader("fields:\n  - {name: id, kind: categorical, exact: " + exact + "}\n  - {name: x, kind: numeric, missing_indicator: false}\ntasks:\n  - {name: ctr, kind: binary, label: click}\n"))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := features.NewTransformer(spec, nil, features.TransformerConfig{Labels: true})
	if err != nil {
		t.Fatal(err)
	}
	m, err := mmoe.New(mmoe.Config{EmbeddingDim: 4, Experts: 2, ExpertHidden: []int{8}, Tower: []int{4}, Seed: 5}, tr.Layout(), []string{"ctr"})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := mtl.NewTaskSet([]mtl.TaskConfig{{Name: "ctr", Kind: "binary", Label: "click"}})
	if err != nil {
		t.Fatal(err)
	}
	trainer, err := mtl.NewTrainer(m, ts, mtl.TrainConfig{BatchSize: 64, Workers: 2, Embedding: mtl.EmbeddingConfig{Optimizer: optimizer, LR: 0.1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(trainer.Close)
	if err := trainer.SetIDTables(tr.IDs()); err != nil {
		t.Fatal(err)
	}
	return tr.IDs(), m, trainer
}

// idBatch is a batch of the exact field's keys (made as the transform
// makes them: the looked-up row and the key) with weight w per row.
func idBatch(ids *features.IDTables, keys []uint64, w float32) *features.Batch {
	n := len(keys)
	b := &features.Batch{Rows: n, DenseWidth: 1, Dense: make([]float32, n), Weights: make([]float32, n)}
	col := features.SparseColumn{Keys: slices.Clone(keys), IDs: make([]int32, n)}
	for i, k := range keys {
		col.IDs[i] = ids.Table(0).Row(k)
		b.Dense[i] = float32(i%3) - 1
		b.Weights[i] = w
	}
	b.Sparse = []features.SparseColumn{col}
	click := make([]float32, n)
	for i := range click {
		click[i] = float32(i % 2)
	}
	b.Labels = [][]float32{click}
	return b
}

// TestTrainerResetsReusedRows: a row an eviction frees and an admission
// gives out starts as the new id's shared row, with fresh optimizer state,
// for both embedding optimizers.
func TestTrainerResetsReusedRows(t *testing.T) {
	for _, opt := range []string{mtl.EmbeddingAdagrad, mtl.EmbeddingAdam} {
		for _, evict := range []string{"lru", "lfu"} {
			t.Run(opt+"/"+evict, func(t *testing.T) { testTrainerResetsReusedRows(t, opt, evict) })
		}
	}
}

func testTrainerResetsReusedRows(t *testing.T, opt, evict string) {
	{
		{
			ids, m, tr := exactTrainer(t, "{capacity: 2, shared: 3, evict: "+evict+"}", opt)
			const a, b, c = 101, 202, 303
			// Train a and b into rows 4 and 5 (after null and 3 shared rows).
			for range 5 {
				if _, err := tr.Step(idBatch(ids, []uint64{a, b, a, b}, 1)); err != nil {
					t.Fatal(err)
				}
			}
			emb := m.Embeddings()[0].Data
			row := func(r int32) []float32 { return slices.Clone(emb[4*r : 4*r+4]) }
			rowB := row(5)
			st := tr.State().Sparse
			stateOf := func(st mtl.State, r int32) []float32 {
				if opt == mtl.EmbeddingAdagrad {
					return []float32{st.Tensors["embeddings.id.weight.acc"][r]}
				}
				return append(slices.Clone(st.Tensors["embeddings.id.weight.m"][4*r:4*r+4]), st.Tensors["embeddings.id.weight.v"][4*r:4*r+4]...)
			}
			if s := stateOf(st, 4); slices.Equal(s, make([]float32, len(s))) {
				t.Fatalf("row 4 has no optimizer state after training: %v", s)
			}
			stateB := stateOf(st, 5)
			sharedC := row(ids.Table(0).SharedRow(c))
			// c evicts a (the least recently used, lowest row; with lfu
			// also the least frequently used, once c is used more often
			// than a) and takes row 4; weights 0 make the step's update
			// zero, so what is left is the reset.
			keys, want := []uint64{c, c}, []int32{4, 4}
			if evict == "lfu" {
				// a and b had count 8 when the 5th batch (clock 20) halved
				// it, then 6: c's 11th use in the batch is the first to
				// exceed 6 by more than √(c's count + 6), and takes a's
				// row.
				keys, want = slices.Repeat([]uint64{c}, 12), make([]int32, 12)
				want[10], want[11] = 4, 4
				for i := range 10 {
					want[i] = ids.Table(0).SharedRow(c)
				}
			}
			batch := idBatch(ids, keys, 0)
			if _, err := tr.Step(batch); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(batch.Sparse[0].IDs, want) {
				t.Fatalf("batch ids %v, want %v", batch.Sparse[0].IDs, want)
			}
			if got := row(4); !slices.Equal(got, sharedC) {
				t.Errorf("reused row 4 = %v, want c's shared row %v", got, sharedC)
			}
			st = tr.State().Sparse
			if s := stateOf(st, 4); !slices.Equal(s, make([]float32, len(s))) {
				t.Errorf("reused row 4 has optimizer state %v, want zeros", s)
			}
			if opt == mtl.EmbeddingAdam {
				if n := st.Counts["embeddings.id.weight.steps"][4]; n != 1 {
					t.Errorf("reused row 4 has taken %d Adam steps, want 1 (the zero step after the reset)", n)
				}
			}
			if !slices.Equal(row(5), rowB) || !slices.Equal(stateOf(st, 5), stateB) {
				t.Error("row 5 (b, not evicted) changed")
			}
			if s := ids.Stats()[0]; s.Evictions != 1 || s.Admissions != 3 || s.Rows != 2 {
				t.Errorf("stats %+v", s)
			}
		}
	}
}

// TestTrainerExactFrozenAdmitsNothing: with the shared part frozen the
// embeddings do not train, so no id is admitted.
func TestTrainerExactFrozenAdmitsNothing(t *testing.T) {
	ids, _, tr := exactTrainer(t, "{capacity: 4}", mtl.EmbeddingAdagrad)
	if err := tr.FreezeShared(); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Step(idBatch(ids, []uint64{1, 2, 3}, 1)); err != nil {
		t.Fatal(err)
	}
	if s := ids.Stats()[0]; s.Admissions != 0 || s.Clock != 0 {
		t.Errorf("frozen trainer admitted: %+v", s)
	}
}

func TestSetIDTablesRefusesOtherTables(t *testing.T) {
	_, _, tr := exactTrainer(t, "{capacity: 4}", mtl.EmbeddingAdagrad)
	spec, _ := features.ParseSpec(strings.NewReader("fields:\n  - {name: id, kind: categorical, exact: {capacity: 9}}\ntasks:\n  - {name: ctr, kind: binary, label: click}\n"))
	other, _ := features.NewIDTables(spec)
	if err := tr.SetIDTables(other); err == nil {
		t.Fatal("SetIDTables took tables of another size")
	}
}
