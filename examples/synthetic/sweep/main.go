// Command sweep runs the MMoE paper's synthetic experiment: for each task
// correlation p it generates a data set and trains shared_bottom, omoe and
// mmoe (several seeds each, with onestone's compare), then prints the
// validation RMSE of each task, mean over seeds, as a Markdown table.
//
//	go run ./examples/synthetic/sweep -corrs 1,0.9,0.5,0 -seeds 3
//
// The mixtures have 8 experts of 16 units; the shared bottom is one
// network of 128 units, so all three have the same number of parameters.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/onestone/onestone/examples/synthetic"
	"github.com/onestone/onestone/pipelines"
)

type result struct {
	Corr      float64                `json:"corr"`
	LabelCorr float64                `json:"label_corr"`
	Rows      []pipelines.CompareRow `json:"rows"`
}

func main() {
	corrs := flag.String("corrs", "1,0.9,0.5,0", "comma-separated task correlations")
	seeds := flag.Int("seeds", 3, "seeds per architecture")
	epochs := flag.Int("epochs", 0, "epochs (default: the spec's, 20)")
	trainRows := flag.Int("train-rows", 20000, "training rows per data set")
	work := flag.String("work", "", "work directory (default: a temporary one, removed)")
	jsonOut := flag.Bool("json", false, "print JSON instead of Markdown")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *corrs, *seeds, *epochs, *trainRows, *work, *jsonOut); err != nil {
		fmt.Fprintln(os.Stderr, "sweep:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, corrs string, seeds, epochs, trainRows int, work string, jsonOut bool) error {
	if work == "" {
		var err error
		if work, err = os.MkdirTemp("", "onestone-synthetic-"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
	}
	start := time.Now()
	var results []result
	for _, cs := range strings.Split(corrs, ",") {
		p, err := strconv.ParseFloat(strings.TrimSpace(cs), 64)
		if err != nil {
			return fmt.Errorf("correlation %q: %w", cs, err)
		}
		dir := filepath.Join(work, fmt.Sprintf("p%.2f", p))
		tasks, err := synthetic.Generate(synthetic.Config{Dir: dir, Corr: p, TrainRows: trainRows, Seed: 1})
		if err != nil {
			return err
		}
		res := result{Corr: p, LabelCorr: tasks.LabelCorr}
		spec := filepath.Join(dir, "spec.yaml")
		// The shared bottom as wide as the 8 experts together.
		text, err := os.ReadFile(spec)
		if err != nil {
			return err
		}
		sbSpec := filepath.Join(dir, "spec-bottom.yaml")
		wide := strings.Replace(string(text), "expert_hidden: [16]", "expert_hidden: [128]", 1)
		if err := os.WriteFile(sbSpec, []byte(wide), 0o644); err != nil {
			return err
		}
		for _, c := range []struct {
			spec  string
			archs []string
		}{{sbSpec, []string{"shared_bottom"}}, {spec, []string{"omoe", "mmoe"}}} {
			cr, err := pipelines.Compare(ctx, pipelines.CompareConfig{
				SpecPath: c.spec, Data: []string{filepath.Join(dir, "train.parquet")}, Valid: []string{filepath.Join(dir, "valid.parquet")},
				Archs: c.archs, Seeds: seeds, Epochs: epochs, WorkDir: filepath.Join(dir, "runs"), Progress: os.Stderr,
			})
			if err != nil {
				return err
			}
			res.Rows = append(res.Rows, cr.Rows...)
		}
		results = append(results, res)
	}
	if jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	fmt.Println("| p | label corr | arch | params | t1 RMSE | t2 RMSE | mean RMSE |")
	fmt.Println("|---:|---:|---|---:|---:|---:|---:|")
	for _, r := range results {
		for _, row := range r.Rows {
			t1, t2 := row.Tasks[0], row.Tasks[1]
			fmt.Printf("| %.2f | %.3f | %s | %d | %.4f ± %.4f | %.4f ± %.4f | %.4f |\n", r.Corr, r.LabelCorr, row.Arch, row.DenseParams, t1.Mean, t1.Std, t2.Mean, t2.Std, (t1.Mean+t2.Mean)/2)
		}
	}
	fmt.Printf("\n%d seeds per architecture; %.0fs in all.\n", seeds, time.Since(start).Seconds())
	return nil
}
