package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/onestone/onestone/pipelines"
)

// TestCensusTrainsEndToEnd prepares the real census data, fits the
// example's spec and trains a small MMoE on both tasks for one epoch. Both
// AUCs must be far above chance (the published MMoE figures, about 0.94
// and 0.99, come from longer runs: see the README).
func TestCensusTrainsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	out := t.TempDir()
	if _, err := prepare(dataFile, out, 42); err != nil {
		t.Fatal(err)
	}
	spec, err := os.ReadFile(filepath.Join("..", "spec.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	spec = append(spec, []byte("model: {experts: 4, expert_hidden: [32, 16], tower: [8], embedding_dim: 4}\ntrain: {batch_size: 512}\n")...)
	specPath := filepath.Join(out, "spec.yaml")
	if err := os.WriteFile(specPath, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := pipelines.TrainBatch(context.Background(), pipelines.TrainBatchConfig{
		SpecPath: specPath, Data: []string{filepath.Join(out, "train.parquet")},
		Valid: []string{filepath.Join(out, "test.parquet")}, Out: filepath.Join(out, "models"),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range res.Best.Metrics {
		if !(m.AUC > 0.85) {
			t.Errorf("%s: AUC %.4f after one epoch", m.Objective, m.AUC)
		}
	}
}
