package mmoe

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// storageOf is where m's first dense parameter and first embedding table
// live: two models with the same storageOf share their memory.
func storageOf(m *Model) [2]*float32 {
	return [2]*float32{&m.Params()[0].Data[0], &m.Embeddings()[0].Data[0]}
}

// TestReadIntoStorage reads a file, and clones a model, into the
// storage of a model nobody uses any more: the result is the file's (or
// the source's) model bit for bit, in the old model's memory when its
// sizes match and in new memory when they do not.
func TestReadIntoStorage(t *testing.T) {
	heads := []string{"ctr", "cvr"}
	for _, arch := range Archs {
		t.Run(arch, func(t *testing.T) {
			cfg := withExperts(Config{Arch: arch, EmbeddingDim: 4, ExpertHidden: []int{6, 5}, Tower: []int{3}, Seed: 1})
			a := testModel(t, cfg)
			file := saved(t, a)
			cfg.Seed = 2 // same sizes, other weights
			old := testModel(t, cfg)
			if !old.Fits(a.Config(), smallLayout(), heads) {
				t.Fatal("Fits: false for a model of the same configuration")
			}
			at := storageOf(old)
			got, err := NewFromSafetensorsInto(chained(cfg, heads), smallLayout(), heads, bytes.NewReader(file), old)
			if err != nil {
				t.Fatal(err)
			}
			if storageOf(got) != at {
				t.Fatal("NewFromSafetensorsInto did not read into the old model's storage")
			}
			if !bytes.Equal(saved(t, got), file) || !bitsEqual(logitsOf(t, got, 5), logitsOf(t, a, 5)) {
				t.Fatal("NewFromSafetensorsInto: the model read into old storage differs from the file's")
			}

			cfg.Seed = 3
			src := testModel(t, cfg)
			c, err := src.CloneInto(got)
			if err != nil {
				t.Fatal(err)
			}
			if storageOf(c) != at || storageOf(c) == storageOf(src) {
				t.Fatal("CloneInto did not copy into the old model's storage")
			}
			if !bytes.Equal(saved(t, c), saved(t, src)) {
				t.Fatal("CloneInto: the copy differs from its source")
			}

			// Other sizes: new memory, the same result.
			wide := cfg
			wide.Tower = []int{4}
			other := testModel(t, wide)
			if other.Fits(chained(cfg, heads), smallLayout(), heads) {
				t.Fatal("Fits: true for a model with another tower")
			}
			big := smallLayout()
			big.Sparse[1].Cardinality++
			if a.Fits(a.Config(), big, heads) {
				t.Fatal("Fits: true for a layout with a larger table")
			}
			otherAt := storageOf(other)
			n, err := NewFromSafetensorsInto(chained(cfg, heads), smallLayout(), heads, bytes.NewReader(file), other)
			if err != nil {
				t.Fatal(err)
			}
			if storageOf(n) == otherAt || !bytes.Equal(saved(t, n), file) {
				t.Fatal("NewFromSafetensorsInto with storage of other sizes: not a new model of the file")
			}
			cl, err := src.CloneInto(other)
			if err != nil {
				t.Fatal(err)
			}
			if storageOf(cl) == otherAt || !bytes.Equal(saved(t, cl), saved(t, src)) {
				t.Fatal("CloneInto storage of other sizes: not a new copy")
			}
		})
	}
}

// TestSpare: a spare has the model's sizes, zero weights and its own
// memory, takes a file in place, and stops when its context ends.
func TestSpare(t *testing.T) {
	heads := []string{"ctr", "cvr"}
	cfg := Config{Arch: ArchMMoE, Experts: 3, EmbeddingDim: 4, ExpertHidden: []int{6, 5}, Tower: []int{3}, Seed: 1}
	a := testModel(t, cfg)
	sp, err := a.Spare(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if storageOf(sp) == storageOf(a) || !sp.Fits(a.Config(), smallLayout(), heads) {
		t.Fatal("the spare shares the model's memory or does not fit it")
	}
	for _, tn := range sp.tensors() {
		for _, v := range tn.data {
			if v != 0 {
				t.Fatalf("spare tensor %s holds %v, want zeros", tn.name, v)
			}
		}
	}
	at := storageOf(sp)
	got, err := NewFromSafetensorsInto(a.Config(), smallLayout(), heads, bytes.NewReader(saved(t, a)), sp)
	if err != nil {
		t.Fatal(err)
	}
	if storageOf(got) != at || !bitsEqual(logitsOf(t, got, 7), logitsOf(t, a, 7)) {
		t.Fatal("a file read into the spare is not the model, in the spare's memory")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.Spare(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Spare with an ended context: %v, want context.Canceled", err)
	}
}
