package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/onestone/onestone/pipelines"
)

func init() {
	register(command{name: "bench", summary: "measure the standard workload: training, scoring, kernels (JSON)", run: runBench})
}

func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: onestone bench [train|score|gemm|all] [flags]\n\nMeasures the std workload of BENCHMARKS.md and prints JSON.")
		fs.PrintDefaults()
	}
	preset := fs.String("preset", "std", "workload preset (std)")
	steps := fs.Int("steps", 30, "training steps measured (after 3 warm-up steps)")
	workers := fs.Int("workers", 0, "training workers (default GOMAXPROCS)")
	requests := fs.Int("requests", 300, "scoring requests measured per configuration")
	gemmTime := fs.Duration("gemm-time", 300*time.Millisecond, "time per GEMM shape and core count")
	seed := fs.Uint64("seed", 1, "random seed")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to `file`")
	what := "all"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		what, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *preset != "std" {
		return fmt.Errorf("unknown preset %q (have: std)", *preset)
	}
	cfg := pipelines.BenchConfig{TrainSteps: *steps, Workers: *workers, ScoreRequests: *requests, GemmTime: *gemmTime, Seed: *seed}
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
		return fmt.Errorf("unknown benchmark %q: want train, score, gemm or all", what)
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	rep, err := pipelines.Bench(ctx, cfg)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// startCPUProfile starts a CPU profile written to path; stop ends it and
// closes the file.
func startCPUProfile(path string) (stop func(), err error) {
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
			fmt.Fprintf(os.Stderr, "cpu profile %s: %v\n", path, err)
		}
	}, nil
}
