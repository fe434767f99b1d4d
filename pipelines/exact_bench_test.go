package pipelines

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/internal/gen"
)

// BenchmarkTrainGenerated measures training examples/s (transform and
// step, records read beforehand) on the generated data's spec and model
// as `onestone gen` writes them, with user_id and item_id hashed
// (tables=hash) or in exact tables of as many rows (tables=exact,
// admit_after 1, the map's lookups and admission included). Issue 14
// wants exact within 10% of hash. Sub-benchmarks alternate with -count.
func BenchmarkTrainGenerated(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	const users, items = 20000, 20000
	if _, err := gen.Generate(ctx, gen.Config{Dir: dir, Rows: 120000, Users: users, Items: items, Seed: 1, Files: 1, TaskCorr: 0.5, Skew: gen.Skew{Users: 1.05, Items: 1.05}}); err != nil {
		b.Fatal(err)
	}
	data := []string{filepath.Join(dir, "train-00000.parquet")}
	for _, mode := range []string{"hash", "exact"} {
		b.Run("tables="+mode, func(b *testing.B) {
			spec := filepath.Join(b.TempDir(), "spec.yaml")
			text, err := os.ReadFile(filepath.Join(dir, "spec.yaml"))
			if err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(spec, text, 0o644); err != nil {
				b.Fatal(err)
			}
			if mode == "exact" {
				rewriteField(b, spec, "user_id", "exact: {capacity: 80000}")
				rewriteField(b, spec, "item_id", "exact: {capacity: 80000}")
			}
			s, err := LoadSetup(spec, fitForTraining(ctx, data, nil, false, nil))
			if err != nil {
				b.Fatal(err)
			}
			r := &trainRun{s: s}
			if err := r.newModel(); err != nil {
				b.Fatal(err)
			}
			defer r.trainer.Close()
			src, err := ingest.NewParquetSource(ctx, ingest.ParquetConfig{Paths: data, Columns: s.Spec.Columns(true), BatchSize: s.Train.BatchSize})
			if err != nil {
				b.Fatal(err)
			}
			var recs []arrow.RecordBatch
			for {
				rec, err := src.Next(ctx)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				recs = append(recs, rec)
			}
			src.Close()
			defer func() {
				for _, rec := range recs {
					rec.Release()
				}
			}()
			var batch features.Batch
			examples := 0
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				rec := recs[i%len(recs)]
				if err := s.Transformer.TransformTo(&batch, rec); err != nil {
					b.Fatal(err)
				}
				if _, err := r.trainer.Step(&batch); err != nil {
					b.Fatal(err)
				}
				examples += batch.Rows
			}
			b.ReportMetric(float64(examples)/b.Elapsed().Seconds(), "examples/s")
		})
	}
}
