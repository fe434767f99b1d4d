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
onestone gen --streams [--rows N] [--time-scale F] [--out DIR] [flags]

Writes train and test Parquet files (zstd) of impressions with their true
click and conversion probabilities, a spec.yaml for them, and prints the
AUCs the true probabilities reach on the test file (the ceiling).

With --streams it writes instead the three event streams of the same
world (same --seed, --users, --items, --task-corr) as logs would hold
them: impressions.jsonl, clicks.jsonl and conversions.jsonl (one JSON
message per line, in log order; docs/streaming.md), truth.jsonl (what
happened to each of the --rows impressions) and a spec.yaml with a join:
section whose windows hold every generated delay. --time-scale shrinks
every delay (0.01 turns the 3 h mean conversion delay into 108 s) but not
the impression rate; replay them with onestone produce --streams.`,
		flags: genFlags,
	})
}

func genFlags(fs *flag.FlagSet) runFunc {
	var cfg gen.Config
	fs.Int64Var(&cfg.Rows, "rows", 2_000_000, "total impressions (train + test)")
	fs.StringVar(&cfg.Dir, "out", "data/demo", "output directory")
	fs.IntVar(&cfg.Users, "users", 20_000, "number of users")
	fs.IntVar(&cfg.Items, "items", 20_000, "number of items")
	fs.Float64Var(&cfg.Skew.Users, "user-zipf", 0, "Zipf exponent of the user picks: user u in proportion to (u+1)^-s (0: uniform)")
	fs.Float64Var(&cfg.Skew.Items, "item-zipf", 0, "Zipf exponent multiplying the item popularity: item i by (i+1)^-s (0: popularity alone)")
	fs.Float64Var(&cfg.IDEffects, "id-effects", 0, "strength of the user and item effects only the ids reveal (hidden CTR/CVR biases and a user x item latent affinity; the standard deviation of each term on the CTR logit), in [0, 3] (0: none)")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed")
	fs.Float64Var(&cfg.TaskCorr, "task-corr", 0.5, "share of the CVR logit's structure shared with CTR, in [-1, 1]")
	fs.Float64Var(&cfg.TestFrac, "test-frac", 0.1, "share of rows in the test file, in (0, 1)")
	fs.IntVar(&cfg.Files, "files", 4, "number of train files")
	fs.Int64Var(&cfg.RowGroupRows, "row-group", 131072, "rows per Parquet row group")
	fs.BoolVar(&cfg.Cart, "cart", false, "add the add-to-cart step between click and conversion (column cart), with an AITM spec")
	fs.IntVar(&cfg.ItemVectors, "item-vectors", 0, "add item_vec, a content vector of this many numbers per item (mixing the item's hidden factors, with noise), and a vector field for it in the spec")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	streams := fs.Bool("streams", false, "write the impression, click and conversion streams and their truth instead of Parquet files")
	scale := fs.Float64("time-scale", 1, "with --streams: factor on every click and conversion delay, in (0, 1] to compress the clock")
	rate := fs.Float64("event-rate", 1000, "with --streams: impressions per second of event time")
	return func(ctx context.Context, stdout, stderr io.Writer, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected arguments %q", args)
		}
		if *streams {
			if cfg.Rows <= 0 || cfg.Users <= 0 || cfg.Items <= 0 {
				return usagef("--rows %d, --users %d and --items %d must be positive", cfg.Rows, cfg.Users, cfg.Items)
			}
			if !(*scale > 0) || !(*rate > 0) {
				return usagef("--time-scale %v and --event-rate %v must be positive", *scale, *rate)
			}
			if cfg.IDEffects != 0 {
				return usagef("--id-effects is for the Parquet files, not --streams")
			}
			return genStreams(ctx, stdout, gen.StreamsConfig{
				Dir: cfg.Dir, Impressions: cfg.Rows, Users: cfg.Users, Items: cfg.Items,
				Seed: cfg.Seed, TaskCorr: cfg.TaskCorr, Rate: *rate, TimeScale: *scale,
			}, *asJSON)
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

// genStreams writes the three event streams of cfg and prints what they
// hold.
func genStreams(ctx context.Context, stdout io.Writer, cfg gen.StreamsConfig, asJSON bool) error {
	start := time.Now()
	sum, err := gen.WriteStreams(ctx, cfg)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(sum)
	}
	counts := [...]int64{sum.Logged, sum.Clicks, sum.Conversions}
	for i, p := range sum.Files[:3] {
		fmt.Fprintf(stdout, "%-40s %10d events  %6d duplicates\n", p, counts[i]+sum.Duplicates[i], sum.Duplicates[i])
	}
	fmt.Fprintf(stdout, "%-40s %10d impressions (%d never logged)\n", sum.Files[3], sum.Impressions, sum.Impressions-sum.Logged)
	fmt.Fprintf(stdout, "spec: %s\n", sum.Spec)
	fmt.Fprintf(stdout, "ctr %.4f  cvr|click %.4f  early clicks %d  orphan clicks %d, conversions %d\n",
		float64(sum.Clicks)/float64(max(sum.Impressions, 1)), float64(sum.Conversions)/float64(max(sum.Clicks, 1)),
		sum.EarlyClicks, sum.OrphanClicks, sum.OrphanConversions)
	fmt.Fprintf(stdout, "event time %s to %s, generated in %.1fs\n",
		time.UnixMilli(sum.FirstTime).UTC().Format(time.RFC3339), time.UnixMilli(sum.LastTime).UTC().Format(time.RFC3339), time.Since(start).Seconds())
	return nil
}
