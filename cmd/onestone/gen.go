package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/onestone/onestone/internal/gen"
)

func init() {
	register(command{
		name:    "gen",
		summary: "generate a synthetic impression log (Parquet) with known click/conversion probabilities",
		run:     runGen,
	})
}

func runGen(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
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
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if !(cfg.TaskCorr >= -1 && cfg.TaskCorr <= 1) {
		return fmt.Errorf("--task-corr %v must be in [-1, 1]", cfg.TaskCorr)
	}
	if !(cfg.TestFrac > 0 && cfg.TestFrac < 1) {
		return fmt.Errorf("--test-frac %v must be in (0, 1)", cfg.TestFrac)
	}
	for _, v := range []struct {
		name string
		n    int64
	}{{"rows", cfg.Rows}, {"users", int64(cfg.Users)}, {"items", int64(cfg.Items)}, {"files", int64(cfg.Files)}, {"row-group", cfg.RowGroupRows}} {
		if v.n <= 0 {
			return fmt.Errorf("--%s %d must be positive", v.name, v.n)
		}
	}
	start := time.Now()
	sum, err := gen.Generate(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(sum)
	}
	for _, f := range append(sum.Train, sum.Test) {
		fmt.Printf("%-40s %10d rows  ctr %.4f  cvr|click %.4f\n", f.Path, f.Rows, f.CTR, f.CVR)
	}
	fmt.Printf("spec: %s\n", sum.Spec)
	fmt.Printf("ceiling on the test file (%d rows): CTR AUC %.4f, CTCVR AUC %.4f\n", sum.AUCRows, sum.CeilingCTRAUC, sum.CeilingCTCVRAUC)
	fmt.Printf("generated %d rows in %.1fs\n", cfg.Rows, time.Since(start).Seconds())
	return nil
}
