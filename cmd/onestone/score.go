package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

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

// stringList is a repeatable (and comma-separated) string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func scoreFlags(fs *flag.FlagSet) runFunc {
	var data, ids stringList
	model := fs.String("model", "", "bundle `dir`, or a root (its newest version)")
	fs.Var(&data, "data", "Parquet `file or glob` (repeatable)")
	out := fs.String("out", "", "output Parquet `file`")
	fs.Var(&ids, "id-column", "input `column` copied to the output (repeatable)")
	batch := fs.Int("batch-size", ingest.DefaultBatchSize, "rows per batch")
	return func(ctx context.Context, stdout, stderr io.Writer, args []string) error {
		data = append(data, args...)
		if *model == "" || len(data) == 0 || *out == "" {
			return usagef("--model, --data and --out are required")
		}
		start := time.Now()
		res, err := pipelines.Score(ctx, pipelines.ScoreConfig{Model: *model, Data: data, Out: *out, IDColumns: ids, BatchSize: *batch})
		if err != nil {
			return err
		}
		el := time.Since(start)
		fmt.Fprintf(stderr, "onestone score: %d rows with model %s in %v (%.0f rows/s) -> %s\n",
			res.Rows, res.Version, el.Round(time.Millisecond), float64(res.Rows)/el.Seconds(), *out)
		return nil
	}
}
