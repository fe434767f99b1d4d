package pipelines

import (
	"context"
	"math"
	"path/filepath"
	"testing"
)

// Warm start with a frozen shared part (the trainer's FreezeShared through
// TrainBatch's InitFrom): the new bundle's shared parameters and
// embeddings are bit-identical to the source bundle's, its task parameters
// moved.
func TestInitFromFreezeSharedKeepsSharedPart(t *testing.T) {
	dir, spec := genData(t, 12000, "")
	data := []string{filepath.Join(dir, "train-*.parquet")}
	valid := []string{filepath.Join(dir, "test-00000.parquet")}
	src, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: data, Valid: valid, Out: t.TempDir(), MaxSteps: 10})
	if err != nil {
		t.Fatal(err)
	}
	dst, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: data, Valid: valid, Out: t.TempDir(), MaxSteps: 10,
		InitFrom: src.Bundle, FreezeShared: true})
	if err != nil {
		t.Fatal(err)
	}
	a, err := LoadModel(src.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadModel(dst.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := a.Model.Params(), b.Model.Params()
	var shared, moved int
	for i := range pa {
		same := true
		for j := range pa[i].Data {
			if math.Float32bits(pa[i].Data[j]) != math.Float32bits(pb[i].Data[j]) {
				same = false
				break
			}
		}
		if b.Model.TaskOf(i) < 0 {
			shared++
			if !same {
				t.Fatalf("shared parameter %s changed under --freeze-shared", pa[i].Name)
			}
		} else if !same {
			moved++
		}
	}
	ea, eb := a.Model.Embeddings(), b.Model.Embeddings()
	for i := range ea {
		for j := range ea[i].Data {
			if math.Float32bits(ea[i].Data[j]) != math.Float32bits(eb[i].Data[j]) {
				t.Fatalf("embedding %s changed under --freeze-shared", ea[i].Name)
			}
		}
	}
	if shared == 0 || moved == 0 {
		t.Fatalf("%d shared parameters, %d task parameters moved: want both > 0", shared, moved)
	}
}
