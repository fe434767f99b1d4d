package pipelines

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
)

// FitConfig configures Fit. `onestone fit` without flags and the fit that
// TrainBatch and Compare run when a spec has no statistics both use the
// defaults, so they write the same statistics for the same data.
type FitConfig struct {
	// Paths are the Parquet files or globs to fit on. Required.
	Paths []string
	// Seed seeds the reservoir sampling of bucketized fields. Default: 0.
	Seed uint64
	// QuantileSample is the number of values sampled per bucketized field.
	// Default: features.DefaultQuantileSample.
	QuantileSample int
	// BatchSize is the number of rows per record batch read. It does not
	// change the result. Default: ingest.DefaultBatchSize.
	BatchSize int
	// Allocator allocates the Arrow buffers. Default:
	// memory.DefaultAllocator.
	Allocator memory.Allocator
	// SkipBadRows leaves out the rows training cannot use (a label outside
	// its domain, a bad weight, a value beyond float32: see
	// features.RowError), counts them (FitResult.BadRows) and tells
	// OnBadRow. Without it the first one stops Fit with an error naming its
	// file, row group, row and column (an *ingest.BadRow). Default: false.
	SkipBadRows bool
	// OnBadRow, when set, is called for each row SkipBadRows leaves out.
	OnBadRow func(ingest.BadRow)
}

// Validate reports whether the configuration is usable.
func (c *FitConfig) Validate() error {
	if len(c.Paths) == 0 {
		return errors.New("pipelines: fit: no data")
	}
	if c.QuantileSample < 0 {
		return fmt.Errorf("pipelines: fit: QuantileSample %d is negative", c.QuantileSample)
	}
	if c.BatchSize < 0 {
		return fmt.Errorf("pipelines: fit: BatchSize %d is negative", c.BatchSize)
	}
	return nil
}

// FitResult is what Fit computed.
type FitResult struct {
	// Stats are the fitted statistics.
	Stats *features.Stats
	// NoLabels is nil when the label columns were read, validated and
	// summarised. Otherwise it is the error of reading them (a file lacks
	// one, or holds one of another type) and Stats have no label
	// statistics.
	NoLabels error
	// BadRows counts the rows SkipBadRows left out, by fault.
	BadRows map[string]int64
}

// Fit computes the spec's statistics in one streaming pass over Parquet
// files. Labels are optional: they are read, validated and summarised when
// every file holds them, and otherwise the statistics are fitted on the
// feature columns alone (FitResult.NoLabels says why). Nothing reads the
// label statistics but people; the feature statistics do not depend on
// them.
func Fit(ctx context.Context, spec *features.Spec, cfg FitConfig) (*FitResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	res := &FitResult{}
	check, err := features.NewChecker(spec, true)
	if err != nil {
		return nil, fmt.Errorf("pipelines: fit: %w", err)
	}
	pc := ingest.ParquetConfig{
		Paths: cfg.Paths, Columns: spec.Columns(true), BatchSize: cfg.BatchSize, Allocator: cfg.Allocator,
		Check: check, SkipBadRows: cfg.SkipBadRows,
		OnBadRow: func(b ingest.BadRow) {
			if res.BadRows == nil {
				res.BadRows = map[string]int64{}
			}
			res.BadRows[b.Fault]++
			if cfg.OnBadRow != nil {
				cfg.OnBadRow(b)
			}
		},
	}
	src, err := ingest.NewParquetSource(ctx, pc)
	if errors.Is(err, ingest.ErrSchema) {
		res.NoLabels = err
		pc.Columns = spec.Columns(false)
		src, err = ingest.NewParquetSource(ctx, pc)
	}
	if err != nil {
		return nil, fmt.Errorf("pipelines: fit: %w", err)
	}
	defer src.Close()
	f, err := features.NewFitter(spec, features.FitConfig{Seed: cfg.Seed, QuantileSample: cfg.QuantileSample})
	if err != nil {
		return nil, fmt.Errorf("pipelines: fit: %w", err)
	}
	for rec, err := range ingest.Records(ctx, src) {
		if err != nil {
			return nil, fmt.Errorf("pipelines: fit: %w", err)
		}
		err = f.Add(rec)
		rec.Release()
		if err != nil {
			pos := src.Position()
			return nil, fmt.Errorf("pipelines: fit: %s (row group %d, batch ending before row %d): %w", pos.File, pos.RowGroup, pos.Row, err)
		}
	}
	if res.Stats, err = f.Finish(); err != nil {
		return nil, fmt.Errorf("pipelines: fit: %w", err)
	}
	return res, nil
}

// fitForTraining returns the fit LoadSetup runs for TrainBatch and Compare
// when the spec has no statistics: Fit with the defaults, as `onestone fit`
// runs it (with skip, leaving out bad rows, whose count goes to progress
// when it is not nil). Data without labels cannot train, so it is an error
// here, and statistics fitted on it are not saved for the next run.
func fitForTraining(ctx context.Context, paths []string, alloc memory.Allocator, skip bool, progress io.Writer) func(*features.Spec) (*features.Stats, error) {
	return func(spec *features.Spec) (*features.Stats, error) {
		if err := checkTaskColumns(spec, paths); err != nil {
			return nil, err
		}
		res, err := Fit(ctx, spec, FitConfig{Paths: paths, Allocator: alloc, SkipBadRows: skip})
		if err != nil {
			return nil, err
		}
		if n := sumCounts(res.BadRows); n > 0 && progress != nil {
			fmt.Fprintf(progress, "fit: left out %d bad rows (%s)\n", n, formatCounts(res.BadRows))
		}
		if res.NoLabels != nil {
			return nil, fmt.Errorf("pipelines: training data without labels: %w", res.NoLabels)
		}
		return res.Stats, nil
	}
}
