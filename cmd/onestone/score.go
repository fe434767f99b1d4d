package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/serving"
)

func init() {
	register(command{
		name:    "score",
		summary: "score Parquet events offline with a model bundle (batch inference)",
		run:     runScore,
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

func runScore(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("score", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: onestone score --model DIR --data FILE_OR_GLOB --out scores.parquet [--id-column col ...]\n\n"+
			"Scores every row with the bundle's transform and model (the code the score API\n"+
			"runs) and writes the id columns plus one float column per objective.\n\nflags:\n")
		fs.PrintDefaults()
	}
	var data, ids stringList
	model := fs.String("model", "", "bundle `dir`, or a root (its newest version)")
	fs.Var(&data, "data", "Parquet `file or glob` (repeatable)")
	out := fs.String("out", "", "output Parquet `file`")
	fs.Var(&ids, "id-column", "input `column` copied to the output (repeatable)")
	batch := fs.Int("batch-size", 8192, "rows per batch")
	if err := fs.Parse(args); err != nil {
		return err
	}
	data = append(data, fs.Args()...)
	if *model == "" || len(data) == 0 || *out == "" {
		fs.Usage()
		return errors.New("--model, --data and --out are required")
	}
	dir, err := serving.Resolve(*model)
	if err != nil {
		return err
	}
	b, err := serving.LoadBundle(dir)
	if err != nil {
		return err
	}
	sc, err := serving.NewScorer(b, serving.ScorerConfig{})
	if err != nil {
		return err
	}
	cols := sc.Columns()
	for _, c := range ids {
		if !slices.Contains(cols, c) {
			cols = append(cols, c)
		}
	}
	src, err := ingest.NewParquetSource(ctx, ingest.ParquetConfig{Paths: data, Columns: cols, BatchSize: *batch})
	if err != nil {
		return err
	}
	defer src.Close()
	start := time.Now()
	rows, err := scoreToParquet(ctx, sc, src, ids, *out)
	if err != nil {
		return err
	}
	el := time.Since(start)
	fmt.Fprintf(os.Stderr, "onestone score: %d rows with model %s in %v (%.0f rows/s) -> %s\n",
		rows, b.Manifest.Version, el.Round(time.Millisecond), float64(rows)/el.Seconds(), *out)
	return nil
}

// scoreToParquet writes out atomically (a temporary file renamed over it).
func scoreToParquet(ctx context.Context, sc *serving.Scorer, src *ingest.ParquetSource, ids []string, out string) (rows int64, err error) {
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
	tmp, err := os.CreateTemp(filepath.Dir(out), ".score-*.parquet")
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy))
	w, err := pqarrow.NewFileWriter(schema, tmp, props, pqarrow.DefaultWriterProps())
	if err != nil {
		return 0, err
	}
	var scores [][]float32
	mem := memory.DefaultAllocator
	for {
		rec, err := src.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			w.Close()
			return rows, err
		}
		scores, err = sc.ScoreRecordTo(scores, rec)
		if err != nil {
			rec.Release()
			w.Close()
			return rows, fmt.Errorf("%s: %w", src.Position().File, err)
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
			return rows, err
		}
	}
	if err := w.Close(); err != nil { // closes tmp too
		return rows, err
	}
	return rows, os.Rename(tmp.Name(), out)
}
