package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/onestone/onestone/internal/gen"
)

func init() {
	register(command{
		name:    "gen",
		summary: "generate a synthetic impression log (Parquet) with known click/conversion probabilities",
		usage: `onestone gen [--rows N] [--out DIR] [flags]

Writes train and test Parquet files (zstd) of impressions with their true
click and conversion probabilities, a spec.yaml for them, and prints the
AUCs the true probabilities reach on the test file (the ceiling).`,
		flags: genFlags,
	})
}

func genFlags(fs *flag.FlagSet) runFunc {
	var cfg gen.Config
	fs.Int64Var(&cfg.Rows, "rows", 2_000_000, "total impressions (train + test)")
	fs.StringVar(&cfg.Dir, "out", "data/demo", "output directory")
	fs.IntVar(&cfg.Users, "users", 20_000, "number of users")
	fs.IntVar(&cfg.Items, "items", 20_000, "number of items")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed")
	fs.Float64Var(&cfg.TaskCorr, "task-corr", 0.5, "share of the CVR logit's structure shared with CTR, in [-1, 1]")
	fs.Float64Var(&cfg.TestFrac, "test-frac", 0.1, "share of rows in the test file, in (0, 1)")
	fs.IntVar(&cfg.Files, "files", 4, "number of train files")
	fs.Int64Var(&cfg.RowGroupRows, "row-group", 131072, "rows per Parquet row group")
	fs.BoolVar(&cfg.Cart, "cart", false, "add the add-to-cart step between click and conversion (column cart), with an AITM spec")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	return func(ctx context.Context, stdout, stderr io.Writer, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected arguments %q", args)
		}
		// gen.Config takes a zero as "the default": refuse zeros here, and
		// leave the rest of the checking to gen.Config.Validate.
		if cfg.TestFrac == 0 {
			return usagef("--test-frac 0 must be in (0, 1)")
		}
		for _, v := range []struct {
			name string
			n    int64
		}{{"rows", cfg.Rows}, {"users", int64(cfg.Users)}, {"items", int64(cfg.Items)}, {"files", int64(cfg.Files)}, {"row-group", cfg.RowGroupRows}} {
			if v.n <= 0 {
				return usagef("--%s %d must be positive", v.name, v.n)
			}
		}
		start := time.Now()
		sum, err := gen.Generate(ctx, cfg)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(sum)
		}
		for _, f := range append(sum.Train, sum.Test) {
			fmt.Fprintf(stdout, "%-40s %10d rows  ctr %.4f  cvr|click %.4f\n", f.Path, f.Rows, f.CTR, f.CVR)
		}
		fmt.Fprintf(stdout, "spec: %s\n", sum.Spec)
		fmt.Fprintf(stdout, "ceiling on the test file (%d rows): CTR AUC %.4f, CTCVR AUC %.4f\n", sum.AUCRows, sum.CeilingCTRAUC, sum.CeilingCTCVRAUC)
		fmt.Fprintf(stdout, "generated %d rows in %.1fs\n", cfg.Rows, time.Since(start).Seconds())
		return nil
	}
}
