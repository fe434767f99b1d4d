package pipelines

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/internal/fileutil"
	"github.com/onestone/onestone/serving"
)

// ScoreConfig configures Score.
type ScoreConfig struct {
	// Model is a bundle directory, or a root (its newest version), or an
	// object store URL (the version its latest pointer names:
	// bundle.ResolveLocal). Required.
	Model string
	// Data are the Parquet files or globs to score. Required.
	Data []string
	// Out is the Parquet file to write (snappy). Required.
	Out string
	// IDColumns are input columns copied to the output, in this order,
	// before the scores. Default: none.
	IDColumns []string
	// BatchSize is the number of rows read and scored at once. Default:
	// ingest.DefaultBatchSize.
	BatchSize int
	// Allocator allocates the Arrow buffers. Default:
	// memory.DefaultAllocator.
	Allocator memory.Allocator
	// Limits bound the model's memory (serving.LoadBundleLimits).
	// Default: bundle.DefaultMaxBytes().
	Limits bundle.Limits
	// Precision of the model's products, as serving.ScorerConfig's:
	// "fp32", "bf16" or "bundle". Default: "", the bundle's.
	Precision string
}

// Validate reports whether the configuration is usable.
func (c *ScoreConfig) Validate() error {
	switch {
	case c.Model == "":
		return errors.New("pipelines: score: no model")
	case len(c.Data) == 0:
		return errors.New("pipelines: score: no data")
	case c.Out == "":
		return errors.New("pipelines: score: no output file")
	case c.BatchSize < 0:
		return fmt.Errorf("pipelines: score: BatchSize %d is negative", c.BatchSize)
	case c.Precision != "" && c.Precision != "fp32" && c.Precision != "bf16" && c.Precision != serving.PrecisionBundle:
		return fmt.Errorf("pipelines: score: precision %q: want fp32, bf16 or %s", c.Precision, serving.PrecisionBundle)
	}
	return c.Limits.Validate()
}

// ScoreResult describes a Score run.
type ScoreResult struct {
	// Bundle is the bundle directory that scored, and Version its version.
	Bundle, Version string
	// Precision is the precision the products ran in.
	Precision string
	// Rows is the number of rows scored and written.
	Rows int64
}

// Score scores Parquet events offline with a model bundle (batch
// inference) and writes a Parquet file with the ID columns and one float
// column per objective. Every row runs the code the score API runs
// (serving.Scorer.ScoreRecordTo), so an event scores the same to the last
// bit offline and online. Out appears whole and durably, or not at all
// (fileutil.WriteFile).
func Score(ctx context.Context, cfg ScoreConfig) (*ScoreResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dir, _, cleanup, err := bundle.ResolveLocal(ctx, cfg.Model, cfg.Limits)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	b, err := serving.LoadBundleLimits(dir, cfg.Limits)
	if err != nil {
		return nil, err
	}
	sc, err := serving.NewScorer(b, serving.ScorerConfig{Precision: cfg.Precision})
	if err != nil {
		return nil, err
	}
	cols := sc.Columns()
	for _, c := range cfg.IDColumns {
		if !slices.Contains(cols, c) {
			cols = append(cols, c)
		}
	}
	src, err := ingest.NewParquetSource(ctx, ingest.ParquetConfig{Paths: cfg.Data, Columns: cols, BatchSize: cfg.BatchSize, Allocator: cfg.Allocator})
	if err != nil {
		return nil, err
	}
	defer src.Close()
	rows, err := scoreToParquet(ctx, sc, src, cfg.IDColumns, cfg.Out, cfg.Allocator)
	if err != nil {
		return nil, fmt.Errorf("pipelines: score: %w", err)
	}
	return &ScoreResult{Bundle: dir, Version: b.Manifest.Version, Rows: rows, Precision: sc.Precision().String()}, nil
}

// scoreToParquet scores src into the Parquet file out, written with
// fileutil.WriteFile: whole and durable, or not at all.
func scoreToParquet(ctx context.Context, sc *serving.Scorer, src *ingest.ParquetSource, ids []string, out string, mem memory.Allocator) (rows int64, err error) {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	in := src.Schema()
	var fields []arrow.Field
	idIdx := make([]int, len(ids))
	for i, c := range ids {
		j := in.FieldIndices(c)
		if len(j) == 0 {
			return 0, fmt.Errorf("id column %q is not in the data", c)
		}
		idIdx[i] = j[0]
		fields = append(fields, in.Field(j[0]))
	}
	for _, o := range sc.Objectives() {
		if slices.Contains(ids, o) {
			return 0, fmt.Errorf("id column %q has the name of an objective", o)
		}
		fields = append(fields, arrow.Field{Name: o, Type: arrow.PrimitiveTypes.Float32})
	}
	schema := arrow.NewSchema(fields, nil)
	props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy))
	err = fileutil.WriteFile(out, 0o644, func(f io.Writer) error {
		w, err := pqarrow.NewFileWriter(schema, f, props, pqarrow.DefaultWriterProps())
		if err != nil {
			return err
		}
		var scores [][]float32
		for rec, err := range ingest.Records(ctx, src) {
			if err != nil {
				w.Close()
				return err
			}
			scores, err = sc.ScoreRecordTo(scores, rec)
			if err != nil {
				rec.Release()
				w.Close()
				return fmt.Errorf("%s: %w", src.Position().File, err)
			}
			arrs := make([]arrow.Array, 0, len(fields))
			for _, j := range idIdx {
				a := rec.Column(j)
				a.Retain()
				arrs = append(arrs, a)
			}
			for o := range scores {
				fb := array.NewFloat32Builder(mem)
				fb.AppendValues(scores[o], nil)
				arrs = append(arrs, fb.NewArray())
				fb.Release()
			}
			orec := array.NewRecordBatch(schema, arrs, rec.NumRows())
			for _, a := range arrs {
				a.Release()
			}
			rows += rec.NumRows()
			rec.Release()
			err = w.WriteBuffered(orec)
			orec.Release()
			if err != nil {
				w.Close()
				return err
			}
		}
		return w.Close()
	})
	return rows, err
}
