// Command gen writes one data set of the MMoE paper's synthetic experiment:
//
//	go run ./examples/synthetic/gen -corr 0.5 -out /tmp/syn
//
// writes /tmp/syn/train.parquet, valid.parquet and spec.yaml, then e.g.
//
//	onestone train --spec /tmp/syn/spec.yaml --data /tmp/syn/train.parquet --valid /tmp/syn/valid.parquet --out /tmp/syn/models
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/onestone/onestone/examples/synthetic"
)

func main() {
	var cfg synthetic.Config
	flag.StringVar(&cfg.Dir, "out", "", "output directory (required)")
	flag.Float64Var(&cfg.Corr, "corr", 0.5, "task correlation p: the cosine of the tasks' weight vectors, in [-1, 1]")
	flag.IntVar(&cfg.Dim, "dim", 100, "input dimension d")
	flag.IntVar(&cfg.Sines, "sines", 10, "number of sine terms m")
	flag.Float64Var(&cfg.Noise, "noise", 0.1, "label noise standard deviation")
	flag.IntVar(&cfg.TrainRows, "train-rows", 20000, "training rows")
	flag.IntVar(&cfg.ValidRows, "valid-rows", 5000, "validation rows")
	flag.Uint64Var(&cfg.Seed, "seed", 1, "seed")
	flag.Parse()
	if cfg.Dir == "" {
		flag.Usage()
		fmt.Fprintln(os.Stderr, "gen: -out is required")
		os.Exit(2)
	}
	t, err := synthetic.Generate(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s: p=%.2f (cosine %.4f), label correlation %.4f, %d train and %d valid rows\n", cfg.Dir, t.Corr, t.Cosine, t.LabelCorr, t.TrainRows, t.ValidRows)
}
