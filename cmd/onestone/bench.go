package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/onestone/onestone/internal/stdwork"
)

func init() {
	register(command{
		name:    "bench",
		summary: "measure the standard workload: training, scoring, kernels (JSON)",
		usage: `onestone bench [train|score|gemm|all] [flags]

Measures the std workload of docs/benchmarks.md and prints JSON. The
CPU's arithmetic ceilings (an FMA loop per instruction set it has) are
measured first, in the same run, and the GEMM and training figures are
also given as fractions of them.`,
		flags: benchFlags,
	})
	register(command{
		name:    "stdbundle",
		summary: "write a random-weight bundle of the std workload and a request (load tests)",
		usage:   "onestone stdbundle --out ROOT [--request FILE] [flags]",
		flags:   stdBundleFlags,
	})
	register(command{
		name:    "stddata",
		summary: "write std training events as Parquet and the std spec (end-to-end benchmarks)",
		usage: `onestone stddata --out DIR [--rows N] [flags]

Writes the std workload of docs/benchmarks.md as training events: --files
Parquet files train-NNNNN.parquet of c0..c25, d0..d12, click and conv,
and spec.yaml (the std spec: 26 fields of 100,000 rows, the std model).
Fit it with onestone fit and replay it with onestone produce to measure a
stream at std size (make std-freshness).`,
		flags: stdDataFlags,
	})
}

func benchFlags(fs *flag.FlagSet) runFunc {
	preset := fs.String("preset", "std", "workload preset (std)")
	steps := fs.Int("steps", 30, "training steps measured (after 3 warm-up steps)")
	workers := fs.Int("workers", 0, "training workers (default GOMAXPROCS)")
	requests := fs.Int("requests", 300, "scoring requests measured per configuration")
	gemmTime := fs.Duration("gemm-time", 300*time.Millisecond, "time per GEMM shape and core count")
	ceilingTime := fs.Duration("ceiling-time", 200*time.Millisecond, "time per arithmetic ceiling and core count")
	precision := fs.String("precision", "fp32", "`precision` of the training products: fp32 or bf16 (fp32 where the CPU lacks AVX512_BF16)")
	seed := fs.Uint64("seed", 1, "random seed")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to `file`")
	return func(ctx context.Context, stdout, stderr io.Writer, args []string) error {
		what := "all"
		switch len(args) {
		case 0:
		case 1:
			what = args[0]
		default:
			return usagef("unexpected arguments %q", args[1:])
		}
		if *preset != "std" {
			return usagef("unknown preset %q (have: std)", *preset)
		}
		cfg := stdwork.BenchConfig{TrainSteps: *steps, Workers: *workers, ScoreRequests: *requests, GemmTime: *gemmTime, CeilingTime: *ceilingTime, Precision: *precision, Seed: *seed}
		switch what {
		case "train":
			cfg.Train = true
		case "score":
			cfg.Score = true
		case "gemm":
			cfg.Gemm = true
		case "all":
			cfg.Train, cfg.Score, cfg.Gemm = true, true, true
		default:
			return usagef("unknown benchmark %q: want train, score, gemm or all", what)
		}
		if *cpuProfile != "" {
			stop, err := startCPUProfile(*cpuProfile, stderr)
			if err != nil {
				return err
			}
			defer stop()
		}
		rep, err := stdwork.Bench(ctx, cfg)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
}

func stdBundleFlags(fs *flag.FlagSet) runFunc {
	root := fs.String("out", "", "bundle `root` to publish a new version under (required)")
	seed := fs.Uint64("seed", 1, "weight and data `seed`")
	reqFile := fs.String("request", "", "also write a score request body to this `file`")
	cands := fs.Int("candidates", 500, "candidates in the request")
	extra := fs.String("request-extra", `"top_k":50`, "extra top-level members of the request")
	return func(ctx context.Context, stdout, stderr io.Writer, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected arguments %q", args)
		}
		if *root == "" {
			return usagef("--out is required")
		}
		start := time.Now()
		dir, err := stdwork.WriteBundle(ctx, *root, *seed)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "onestone stdbundle: wrote %s in %v\n", dir, time.Since(start).Round(time.Millisecond))
		if *reqFile != "" {
			body := stdwork.Request(rand.New(rand.NewPCG(*seed, 2)), *cands, *extra)
			if err := os.MkdirAll(filepath.Dir(*reqFile), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(*reqFile, body, 0o644); err != nil {
				return err
			}
		}
		fmt.Fprintln(stdout, dir)
		return nil
	}
}

func stdDataFlags(fs *flag.FlagSet) runFunc {
	var cfg stdwork.EventsConfig
	fs.StringVar(&cfg.Dir, "out", "", "output `dir`ectory (required)")
	fs.Int64Var(&cfg.Rows, "rows", 1_000_000, "events in all")
	fs.IntVar(&cfg.Files, "files", 4, "number of files")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed")
	return func(ctx context.Context, stdout, stderr io.Writer, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected arguments %q", args)
		}
		if cfg.Dir == "" {
			return usagef("--out is required")
		}
		if cfg.Rows <= 0 || cfg.Files <= 0 {
			return usagef("--rows %d and --files %d must be positive", cfg.Rows, cfg.Files)
		}
		start := time.Now()
		paths, err := stdwork.WriteEvents(ctx, cfg)
		if err != nil {
			return err
		}
		for _, p := range paths {
			fmt.Fprintln(stdout, p)
		}
		fmt.Fprintf(stdout, "spec: %s\n", filepath.Join(cfg.Dir, stdwork.SpecFile))
		fmt.Fprintf(stderr, "onestone stddata: %d events in %v\n", cfg.Rows, time.Since(start).Round(time.Millisecond))
		return nil
	}
}

// startCPUProfile starts a CPU profile written to path; stop ends it and
// closes the file, reporting a failure to log.
func startCPUProfile(path string, log io.Writer) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile %s: %w", path, err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(log, "cpu profile %s: %v\n", path, err)
		}
	}, nil
}
