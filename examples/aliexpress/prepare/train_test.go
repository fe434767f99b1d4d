package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/onestone/onestone/pipelines"
	"github.com/onestone/onestone/serving"
)

// TestAliExpressTrainsEndToEnd converts the real AliExpress sample, fits the
// example's spec (16 categorical, 63 numeric columns), trains CTR and ESMM
// CVR and publishes a bundle that serving accepts. 100 rows hold too few
// positives for any metric, so only the path is checked.
func TestAliExpressTrainsEndToEnd(t *testing.T) {
	out := t.TempDir()
	for _, name := range []string{"train", "test"} {
		if _, err := convert(filepath.Join("..", "data", name+".csv"), filepath.Join(out, name+".parquet"), memory.DefaultAllocator); err != nil {
			t.Fatal(err)
		}
	}
	spec, err := os.ReadFile(filepath.Join("..", "spec.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	specPath := filepath.Join(out, "spec.yaml")
	if err := os.WriteFile(specPath, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := pipelines.TrainBatch(context.Background(), pipelines.TrainBatchConfig{
		SpecPath: specPath, Data: []string{filepath.Join(out, "train.parquet")},
		Valid: []string{filepath.Join(out, "test.parquet")}, Out: filepath.Join(out, "models"), Epochs: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Examples != 200 {
		t.Errorf("trained on %d examples, want 2 epochs of 100", res.Examples)
	}
	b, err := serving.LoadBundle(res.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Tasks.Objectives(); len(got) != 3 {
		t.Errorf("objectives %v, want ctr, cvr, ctcvr", got)
	}
}
