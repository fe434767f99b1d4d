package pipelines

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"golang.org/x/sync/errgroup"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
)

// EvalConfig configures Evaluate.
type EvalConfig struct {
	Paths     []string // Parquet files or globs with the spec's label columns
	BatchSize int      // rows per forward pass. Default: 4096
	Workers   int      // forward passes in parallel. Default: GOMAXPROCS
	Limit     int64    // stop after this many rows. Default: 0 (all)
	// SkipBadRows leaves out the rows training cannot use (see
	// features.RowError) and counts them in EvalResult.BadRows; without
	// it the first one is an error naming its file, row group, row and
	// column (an *ingest.BadRow).
	SkipBadRows bool
	Allocator   memory.Allocator
}

// EvalResult holds the metrics of every objective.
type EvalResult struct {
	Rows    int64         `json:"rows"`
	Metrics []mtl.Metrics `json:"metrics"`
	// BadRows counts the rows SkipBadRows left out, by fault.
	BadRows map[string]int64 `json:"bad_rows,omitempty"`
}

// Evaluate scores labelled Parquet data with m and computes every
// objective's metrics (AUC, GAUC by the spec's group key, logloss,
// calibration, RMSE for regression).
func Evaluate(ctx context.Context, s *Setup, m *mmoe.Model, cfg EvalConfig) (*EvalResult, error) {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 4096
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	var bad map[string]int64
	src, err := ingest.NewParquetSource(ctx, ingest.ParquetConfig{
		Paths: cfg.Paths, Columns: s.Spec.Columns(true), BatchSize: cfg.BatchSize, Allocator: cfg.Allocator,
		Check: s.Transformer.Checker(), SkipBadRows: cfg.SkipBadRows,
		Dictionary:   true, // the transform hashes each string value once
		ReuseBuffers: true, // the transform copies what it reads
		OnBadRow: func(b ingest.BadRow) {
			if bad == nil {
				bad = map[string]int64{}
			}
			bad[b.Fault]++
		},
	})
	if err != nil {
		return nil, err
	}
	defer src.Close()
	ev, err := mtl.NewEvaluator(s.Tasks, s.Transformer.Layout().Labels, 0)
	if err != nil {
		return nil, err
	}
	var (
		mu     sync.Mutex
		rows   int64
		scores [][]float32
	)
	recs := make(chan arrow.RecordBatch, cfg.Workers)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(recs)
		var n int64
		for rec, err := range ingest.Records(gctx, src) {
			if err != nil {
				return err
			}
			if cfg.Limit > 0 && n >= cfg.Limit {
				rec.Release()
				break
			}
			n += rec.NumRows()
			select {
			case recs <- rec:
			case <-gctx.Done():
				rec.Release()
				return gctx.Err()
			}
		}
		return nil
	})
	for range cfg.Workers {
		g.Go(func() error {
			ws := m.NewWorkspace(cfg.BatchSize)
			var b features.Batch
			view := make([][]float32, len(s.Tasks.Heads()))
			for rec := range recs {
				err := s.Transformer.TransformTo(&b, rec)
				rec.Release()
				if err != nil {
					return fmt.Errorf("pipelines: evaluate: %w", err)
				}
				if err := m.Forward(ws, &b); err != nil {
					return fmt.Errorf("pipelines: evaluate: %w", err)
				}
				for h := range view {
					view[h] = ws.Logits[h][:b.Rows]
				}
				mu.Lock()
				scores, err = s.Tasks.PredictTo(resize(scores, len(s.Tasks.Objectives()), b.Rows), view)
				if err == nil {
					err = ev.AddBatch(scores, b.Labels, b.Groups, b.Weights)
				}
				rows += int64(b.Rows)
				mu.Unlock()
				if err != nil {
					return fmt.Errorf("pipelines: evaluate: %w", err)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		for rec := range recs {
			rec.Release()
		}
		return nil, err
	}
	ms, err := ev.Compute()
	if err != nil {
		return nil, err
	}
	return &EvalResult{Rows: rows, Metrics: ms, BadRows: bad}, nil
}

// resize returns k slices of length n, reusing s's storage.
func resize(s [][]float32, k, n int) [][]float32 {
	if len(s) != k {
		s = make([][]float32, k)
	}
	for i := range s {
		if cap(s[i]) < n {
			s[i] = make([]float32, n)
		}
		s[i] = s[i][:n]
	}
	return s
}
