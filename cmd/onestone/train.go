package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/pipelines"
)

func init() {
	register(command{
		name:    "train",
		summary: "train a multi-task model on Parquet event logs",
		usage: `onestone train --spec FILE --data FILE_OR_GLOB --out DIR|URL [flags]

Trains the spec's model, validates and checkpoints it, and publishes the
best model as a bundle under --out (with --out/latest pointing at it).
When the spec has no statistics yet, fits them first, as 'onestone fit'
does with its default flags.

--out may be an object store prefix (s3://BUCKET/PREFIX?endpoint=...,
gs://BUCKET/PREFIX, azblob://CONTAINER/PREFIX): bundles
are published there (files, manifest last, then the latest pointer by
compare-and-swap) and the checkpoints go to the local --checkpoints DIR.
Credentials come from the provider's environment or standard chain.`,
		flags: trainFlags,
	})
	register(command{
		name:    "eval",
		summary: "evaluate a model bundle on labelled Parquet data",
		usage:   "onestone eval --model DIR --data FILE_OR_GLOB [flags]",
		flags:   evalFlags,
	})
}

func trainFlags(fs *flag.FlagSet) runFunc {
	var cfg pipelines.TrainBatchConfig
	var data, valid []string
	fs.StringVar(&cfg.SpecPath, "spec", "", "feature spec (YAML, with optional model: and train: sections)")
	listVar(fs, &data, "data", "training Parquet `files` or globs")
	listVar(fs, &valid, "valid", "validation Parquet `files` or globs")
	fs.StringVar(&cfg.Out, "out", "", "output root for bundles (and checkpoints under <out>/checkpoints), or an object store URL")
	fs.StringVar(&cfg.Checkpoints, "checkpoints", "", "local `dir` of the checkpoints (default <out>/checkpoints; required when --out is a URL)")
	fs.BoolVar(&cfg.Resume, "resume", false, "continue from the newest checkpoint")
	fs.IntVar(&cfg.Epochs, "epochs", 0, "epochs (default: the spec's train.epochs, else 1)")
	fs.IntVar(&cfg.BatchSize, "batch-size", 0, "examples per step (default: the spec's, else 1024)")
	fs.IntVar(&cfg.Workers, "workers", 0, "goroutines per step (default: GOMAXPROCS)")
	fs.IntVar(&cfg.EvalEvery, "eval-every", 0, "validate and checkpoint every N steps (default: the spec's, else each epoch)")
	fs.Int64Var(&cfg.EvalLimit, "eval-limit", 0, "validation rows for the periodic evaluations (0: all)")
	fs.Int64Var(&cfg.MaxSteps, "max-steps", 0, "stop after N steps (0: no limit)")
	fs.StringVar(&cfg.InitFrom, "init-from", "", "warm-start matching parameters from this bundle (same feature fields)")
	fs.BoolVar(&cfg.FreezeShared, "freeze-shared", false, "with --init-from: keep the shared part (embeddings, shared experts and gates) fixed")
	maxModelBytesVar(fs, &cfg.Limits.MaxBytes)
	fs.BoolVar(&cfg.SkipBadRows, "skip-bad-rows", false, "leave out rows training cannot use (bad label or weight, value beyond float32), count and report them, instead of stopping at the first")
	reportDir := fs.String("report", "", "write a training report (index.html with plots, gate analysis) to this directory")
	journal := fs.String("journal", "", "append a JSON line per trained batch, evaluation, checkpoint and published bundle to this file")
	quiet := fs.Bool("quiet", false, "no progress line")
	jsonOut := fs.Bool("json", false, "print the result as JSON")
	return func(ctx context.Context, stdout, stderr io.Writer, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected arguments %q", args)
		}
		if cfg.SpecPath == "" || len(data) == 0 || cfg.Out == "" {
			return usagef("--spec, --data and --out are required")
		}
		cfg.Data, cfg.Valid = data, valid
		if !*quiet {
			cfg.Progress = stderr
		}
		var report *pipelines.Report
		if *reportDir != "" {
			var err error
			if report, err = pipelines.NewReport(pipelines.ReportConfig{Dir: *reportDir, Valid: valid}); err != nil {
				return err
			}
			cfg.Observers = append(cfg.Observers, report)
		}
		if *journal != "" {
			j, err := pipelines.OpenJournal(*journal)
			if err != nil {
				return err
			}
			defer j.Close()
			cfg.Observers = append(cfg.Observers, j)
		}
		res, err := pipelines.TrainBatch(ctx, cfg)
		if err != nil {
			return err
		}
		if report != nil {
			if err := report.Write(); err != nil {
				return err
			}
			if !*quiet {
				fmt.Fprintf(stderr, "report: %s\n", filepath.Join(*reportDir, "index.html"))
			}
		}
		if *jsonOut {
			return json.NewEncoder(stdout).Encode(res)
		}
		fmt.Fprintf(stdout, "trained %d steps, %d examples in %.1fs (%.0f examples/s)\n", res.Steps, res.Examples, res.Seconds, res.ExamplesPerSec)
		if res.Best != nil {
			fmt.Fprintf(stdout, "best validation: %s\n", pipelines.FormatMetrics(res.Best.Metrics))
		}
		for _, st := range res.ExactTables {
			fmt.Fprintf(stdout, "exact table %s\n", st)
		}
		fmt.Fprintf(stdout, "bundle: %s\n", res.Bundle)
		return nil
	}
}

func evalFlags(fs *flag.FlagSet) runFunc {
	model := fs.String("model", "", "bundle directory, or a root (its newest bundle), or an object store URL")
	var data []string
	listVar(fs, &data, "data", "labelled Parquet `files` or globs")
	limit := fs.Int64("limit", 0, "evaluate at most N rows (0: all)")
	jsonOut := fs.Bool("json", false, "print JSON")
	var lim bundle.Limits
	maxModelBytesVar(fs, &lim.MaxBytes)
	return func(ctx context.Context, stdout, stderr io.Writer, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected arguments %q", args)
		}
		if *model == "" || len(data) == 0 {
			return usagef("--model and --data are required")
		}
		lm, err := pipelines.LoadModelLimits(*model, lim)
		if err != nil {
			return err
		}
		res, err := pipelines.Evaluate(ctx, lm.Setup, lm.Model, pipelines.EvalConfig{Paths: data, Limit: *limit})
		if err != nil {
			return err
		}
		if *jsonOut {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(struct {
				Model string `json:"model"`
				*pipelines.EvalResult
			}{lm.Dir, res})
		}
		fmt.Fprintf(stdout, "model %s, %d rows\n", lm.Dir, res.Rows)
		fmt.Fprintf(stdout, "%-10s %8s %8s %8s %8s %8s %8s\n", "objective", "auc", "gauc", "logloss", "calib", "rmse", "rows")
		for _, m := range res.Metrics {
			fmt.Fprintf(stdout, "%-10s %8.4f %8.4f %8.4f %8.3f %8.4f %8d\n", m.Objective, m.AUC, m.GAUC, m.LogLoss, m.Calibration, m.RMSE, m.Count)
		}
		return nil
	}
}
