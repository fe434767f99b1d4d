package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"

	"github.com/onestone/onestone/pipelines"
)

func init() {
	register(command{
		name:    "compare",
		summary: "train several architectures and seeds on the same data and tabulate their validation scores",
		usage: `onestone compare --spec FILE --data FILE_OR_GLOB --valid FILE_OR_GLOB [flags]

Trains each architecture (with each --weightings entry, if given) with each
seed on the same data and prints the per-objective validation AUC (mean,
deviation and median over seeds), parameters and examples/s as Markdown,
or JSON.`,
		flags: compareFlags,
	})
}

func compareFlags(fs *flag.FlagSet) runFunc {
	var cfg pipelines.CompareConfig
	var data, valid []string
	fs.StringVar(&cfg.SpecPath, "spec", "", "feature spec (YAML); its model: section is the base of every architecture")
	listVar(fs, &data, "data", "training Parquet `files` or globs")
	listVar(fs, &valid, "valid", "validation Parquet `files` or globs")
	archs := slices.Clone(pipelines.DefaultCompareArchs)
	listVar(fs, &archs, "archs", "`architectures` (single, shared_bottom, soft, omoe, mmoe, cgc, ple, aitm)")
	var weightings []string
	listVar(fs, &weightings, "weightings", "loss `weightings` to train each architecture with (fixed, uncertainty, gradnorm, pcgrad, metabalance; default: the spec's)")
	fs.IntVar(&cfg.Seeds, "seeds", 3, "seeds per architecture")
	fs.IntVar(&cfg.Epochs, "epochs", 0, "epochs per run (default: the spec's)")
	fs.Int64Var(&cfg.MaxSteps, "max-steps", 0, "stop each run after N steps (0: no limit)")
	fs.IntVar(&cfg.BatchSize, "batch-size", 0, "examples per step (default: the spec's)")
	fs.IntVar(&cfg.Workers, "workers", 0, "goroutines per step (default: GOMAXPROCS)")
	fs.Int64Var(&cfg.EvalLimit, "eval-limit", 0, "validation rows of the evaluations between epochs (the final one uses all)")
	fs.StringVar(&cfg.WorkDir, "work", "", "directory for the runs' specs and bundles (default: a temporary one, removed)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the work directory")
	jsonOut := fs.Bool("json", false, "print the result as JSON instead of Markdown")
	quiet := fs.Bool("quiet", false, "no progress lines")
	return func(ctx context.Context, stdout, stderr io.Writer, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected arguments %q", args)
		}
		if cfg.SpecPath == "" || len(data) == 0 || len(valid) == 0 {
			return usagef("--spec, --data and --valid are required")
		}
		cfg.Data, cfg.Valid = data, valid
		cfg.Archs, cfg.Weightings = archs, weightings
		if len(cfg.Archs) == 0 {
			return usagef("--archs is empty")
		}
		if !*quiet {
			cfg.Progress = stderr
		}
		res, err := pipelines.Compare(ctx, cfg)
		if err != nil {
			return err
		}
		if *jsonOut {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(res)
		}
		fmt.Fprint(stdout, res.Markdown())
		return nil
	}
}
