package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/pipelines"
)

func init() {
	register(command{
		name:    "score",
		summary: "score Parquet events offline with a model bundle (batch inference)",
		usage: `onestone score --model DIR --data FILE_OR_GLOB --out scores.parquet [--id-column col ...]

Scores every row with the bundle's transform and model (the code the score API
runs) and writes the id columns plus one float column per objective.
Arguments after the flags are more data files or globs.`,
		flags: scoreFlags,
	})
}

func scoreFlags(fs *flag.FlagSet) runFunc {
	var data, ids []string
	model := fs.String("model", "", "bundle `dir`, or a root (its newest version), or an object store URL (the version its latest pointer names)")
	listVar(fs, &data, "data", "Parquet `files` or globs")
	out := fs.String("out", "", "output Parquet `file`")
	listVar(fs, &ids, "id-column", "input `columns` copied to the output")
	batch := fs.Int("batch-size", ingest.DefaultBatchSize, "rows per batch")
	var maxBytes int64
	maxModelBytesVar(fs, &maxBytes)
	var precision string
	precisionVar(fs, &precision)
	return func(ctx context.Context, stdout, stderr io.Writer, args []string) error {
		data = append(data, args...)
		if *model == "" || len(data) == 0 || *out == "" {
			return usagef("--model, --data and --out are required")
		}
		start := time.Now()
		res, err := pipelines.Score(ctx, pipelines.ScoreConfig{Model: *model, Data: data, Out: *out, IDColumns: ids, BatchSize: *batch, Limits: bundle.Limits{MaxBytes: maxBytes}, Precision: precision})
		if err != nil {
			return err
		}
		el := time.Since(start)
		fmt.Fprintf(stderr, "onestone score: %d rows with model %s (%s) in %v (%.0f rows/s) -> %s\n",
			res.Rows, res.Version, res.Precision, el.Round(time.Millisecond), float64(res.Rows)/el.Seconds(), *out)
		return nil
	}
}
