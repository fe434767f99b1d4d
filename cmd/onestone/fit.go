package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/pipelines"
)

func init() {
	register(command{
		name:    "fit",
		summary: "fit the statistics a feature spec needs (one pass over Parquet data)",
		usage: `onestone fit --spec FILE --data FILE_OR_GLOB [flags]

Fits the statistics the spec's transforms need (means and deviations,
quantile boundaries, vocabularies) in one streaming pass and writes them
beside the spec. Label columns are validated and summarised when the files
have them. 'onestone train' runs the same fit, with the default flags,
when the spec has no statistics yet.`,
		flags: fitFlags,
	})
}

func fitFlags(fs *flag.FlagSet) runFunc {
	specPath := fs.String("spec", "", "feature spec (YAML), required")
	var data []string
	listVar(fs, &data, "data", "Parquet `files` or globs, e.g. 'data/demo/train-*.parquet' (required)")
	out := fs.String("out", "", "stats file to write (default: beside the spec, <spec>.stats.json)")
	seed := fs.Uint64("seed", 0, "seed of the reservoir sampling for quantile boundaries (train's own fit uses the default)")
	sample := fs.Int("quantile-sample", features.DefaultQuantileSample, "values sampled per bucketized field")
	batch := fs.Int("batch", ingest.DefaultBatchSize, "rows per record batch")
	skip := fs.Bool("skip-bad-rows", false, "leave out rows training cannot use (bad label or weight, value beyond float32), count and report them, instead of stopping at the first")
	return func(ctx context.Context, stdout, stderr io.Writer, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected arguments %q", args)
		}
		if *specPath == "" || len(data) == 0 {
			return usagef("--spec and --data are required")
		}
		if *sample <= 0 {
			return usagef("--quantile-sample %d must be positive", *sample)
		}
		if *batch <= 0 {
			return usagef("--batch %d must be positive", *batch)
		}
		spec, err := features.LoadSpec(*specPath)
		if err != nil {
			return err
		}
		start := time.Now()
		var bad int
		res, err := pipelines.Fit(ctx, spec, pipelines.FitConfig{
			Paths: data, Seed: *seed, QuantileSample: *sample, BatchSize: *batch, SkipBadRows: *skip,
			OnBadRow: func(b ingest.BadRow) {
				if bad++; bad <= 10 {
					fmt.Fprintf(stderr, "onestone fit: left out: %v\n", &b)
				}
			},
		})
		if err != nil {
			return err
		}
		if bad > 0 {
			fmt.Fprintf(stderr, "onestone fit: left out %d bad rows\n", bad)
		}
		st := res.Stats
		dst := *out
		if dst == "" {
			dst = features.StatsPath(*specPath)
		}
		if err := st.Save(dst); err != nil {
			return err
		}
		el := time.Since(start)
		if res.NoLabels != nil {
			fmt.Fprintf(stderr, "onestone fit: labels not validated (%v)\n", res.NoLabels)
		}
		printFitSummary(stdout, spec, st)
		fmt.Fprintf(stdout, "wrote %s (%d rows in %.1fs, %.0f rows/s)\n", dst, st.Rows, el.Seconds(), float64(st.Rows)/el.Seconds())
		return nil
	}
}

func printFitSummary(w io.Writer, spec *features.Spec, st *features.Stats) {
	fmt.Fprintf(w, "rows %d\n", st.Rows)
	for _, f := range spec.Fields {
		fs := st.Fields[f.Name]
		if fs == nil {
			continue
		}
		nullPct := 0.0
		if st.Rows > 0 {
			nullPct = 100 * float64(fs.Nulls) / float64(st.Rows)
		}
		var what string
		switch {
		case fs.Vocab != nil:
			what = fmt.Sprintf("vocab %d of %d distinct (min_count %d)", len(fs.Vocab.Values), fs.Vocab.Distinct, f.Vocab.MinCount)
		case f.Kind == features.Vector && fs.Numeric != nil:
			what = fmt.Sprintf("dim %d, items mean %.4g std %.4g min %.4g max %.4g (normalize %s)", f.Dim, fs.Numeric.Mean, fs.Numeric.Std, fs.Numeric.Min, fs.Numeric.Max, f.Normalize)
		case f.Kind == features.Numeric && f.Transform == features.TransformBucketize:
			what = fmt.Sprintf("%d boundaries %s (from %d sampled)", len(fs.Boundaries), shortFloats(fs.Boundaries), fs.Sampled)
		case fs.Numeric != nil:
			what = fmt.Sprintf("mean %.4g std %.4g min %.4g max %.4g", fs.Numeric.Mean, fs.Numeric.Std, fs.Numeric.Min, fs.Numeric.Max)
		default:
			what = fmt.Sprintf("%d hash buckets", f.Buckets)
		}
		fmt.Fprintf(w, "  %-20s %-17s nulls %5.2f%%  %s\n", f.Name, f.Kind, nullPct, what)
	}
	for _, t := range spec.Tasks {
		if l := st.Labels[t.Label]; l != nil {
			fmt.Fprintf(w, "  task %-15s label %-12s mean %.4f over %d rows\n", t.Name, t.Label, l.Mean, l.Count)
		}
	}
}

func shortFloats(xs []float64) string {
	if len(xs) == 0 {
		return "[]"
	}
	var b strings.Builder
	b.WriteByte('[')
	for i, x := range xs {
		if i == 6 && len(xs) > 7 {
			fmt.Fprintf(&b, " ... %.4g", xs[len(xs)-1])
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.4g", x)
	}
	b.WriteByte(']')
	return b.String()
}
