// Command funnel compares ESMM, ESMM with ESCM²'s counterfactual risks
// (ipw, dr), a CVR head trained on the clicked rows only, and AITM on
// generated data with the add-to-cart step (gen --cart), over seeds, and
// prints a Markdown table (docs/funnels.md has one):
//
//	go run ./examples/funnel -rows 600000 -seeds 5
//
// Every method scores the test file through the serving path (onestone
// score) and is measured on:
//
//   - CVR AUC on the clicked rows, against their conversions;
//   - CVR AUC on every impression against the generator's true CVR (the
//     AUC with true_cvr as a soft label: a row counts true_cvr as a
//     positive and 1 − true_cvr as a negative), the entire-space quality
//     ESCM² targets;
//   - CTCVR AUC on every impression, against the conversions;
//   - calibration, mean prediction over mean label: the CVR on the clicked
//     rows, the CVR on every impression against true_cvr, and the CTCVR.
//
// AITM's heads predict each step from the impression, so its CVR is its
// conversion head over its click head (at most 1) and its CTCVR the
// conversion head. The first row scores with the generator's true
// probabilities, the ceiling.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/internal/auc"
	"github.com/onestone/onestone/internal/gen"
	"github.com/onestone/onestone/pipelines"
)

// method is one row of the table: its tasks and model sections.
type method struct {
	name, tasks, model string
	aitm               bool // scores ctr, cart, cvr (per impression)
}

const esmmModel = `model:
  arch: mmoe
  experts: 4
  expert_hidden: [64, 32]
  tower: [16]
  embedding_dim: 32
`

var methods = []method{
	{name: "naive CVR (clicked rows)", model: esmmModel, tasks: `tasks:
  - {name: ctr, kind: binary, label: click}
  - {name: cvr, kind: binary, label: conversion, mask: click}
`},
	{name: "ESMM", model: esmmModel, tasks: `tasks:
  - {name: ctr, kind: binary, label: click}
  - {name: cvr, kind: esmm, label: conversion, parent: ctr}
`},
	{name: "ESMM + ESCM² ipw", model: esmmModel, tasks: `tasks:
  - {name: ctr, kind: binary, label: click}
  - {name: cvr, kind: esmm, label: conversion, parent: ctr, counterfactual: ipw}
`},
	{name: "ESMM + ESCM² dr", model: esmmModel, tasks: `tasks:
  - {name: ctr, kind: binary, label: click}
  - {name: cvr, kind: esmm, label: conversion, parent: ctr, counterfactual: dr}
`},
	{name: "AITM", aitm: true, model: `model:
  arch: aitm
  expert_hidden: [64, 32]
  tower: [16]
  embedding_dim: 32
`, tasks: `tasks:
  - {name: ctr, kind: binary, label: click}
  - {name: cart, kind: binary, label: cart, parent: ctr, calibrator_weight: 0.6}
  - {name: cvr, kind: binary, label: conversion, parent: cart, calibrator_weight: 0.6}
`},
}

const trainSection = `train:
  batch_size: 256
  epochs: 1
  embedding: {optimizer: adagrad, lr: 0.1}
`

var metricNames = []string{"CVR AUC (clicked)", "CVR AUC (all, true CVR)", "CTCVR AUC", "CVR calib (clicked)", "CVR calib (all)", "CTCVR calib"}

func main() {
	rows := flag.Int64("rows", 600_000, "generated rows (train + 10% test)")
	seeds := flag.Int("seeds", 5, "seeds per method")
	only := flag.String("methods", "", "comma-separated method numbers to run (0-based; default all)")
	work := flag.String("work", "", "work directory (default: a temporary one, removed)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, *rows, *seeds, *only, *work); err != nil {
		fmt.Fprintln(os.Stderr, "funnel:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, rows int64, seeds int, only, work string) error {
	if work == "" {
		var err error
		if work, err = os.MkdirTemp("", "onestone-funnel-"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
	}
	data := filepath.Join(work, "data")
	sum, err := gen.Generate(ctx, gen.Config{Dir: data, Rows: rows, Seed: 1, TaskCorr: 0.5, Cart: true})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "funnel: %d train rows, %d clicks, %d carts, %d conversions in the test file\n", rows-sum.Test.Rows, sum.Test.Clicks, sum.Test.Carts, sum.Test.Conversions)
	specText, err := os.ReadFile(sum.Spec)
	if err != nil {
		return err
	}
	fields, _, _ := strings.Cut(string(specText), "# The three-step funnel")
	train, test := []string{filepath.Join(data, "train-*.parquet")}, filepath.Join(data, "test-00000.parquet")
	fmt.Fprintf(w, "| method | %s |\n|---|%s\n", strings.Join(metricNames, " | "), strings.Repeat("---:|", len(metricNames)))
	ceil, err := measure(ctx, test, "true_ctr", "true_cvr", false)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "| true probabilities (ceiling) |")
	for _, v := range ceil {
		fmt.Fprintf(w, " %.4f |", v)
	}
	fmt.Fprintln(w)
	for mi, m := range methods {
		if only != "" && !slices.Contains(strings.Split(only, ","), fmt.Sprint(mi)) {
			continue
		}
		values := make([][]float64, len(metricNames))
		for s := range seeds {
			dir := filepath.Join(work, fmt.Sprintf("m%d", mi), fmt.Sprintf("seed%d", s))
			spec := filepath.Join(dir, "spec.yaml")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			text := fields + m.tasks + "group_key: user_id\n" + m.model + fmt.Sprintf("  seed: %d\n", s) + trainSection
			if err := os.WriteFile(spec, []byte(text), 0o644); err != nil {
				return err
			}
			if s > 0 { // the statistics fitted for seed 0 serve the others
				if err := copyFile(filepath.Join(filepath.Dir(dir), "seed0", "spec.stats.json"), filepath.Join(dir, "spec.stats.json")); err != nil {
					return err
				}
			}
			res, err := pipelines.TrainBatch(ctx, pipelines.TrainBatchConfig{SpecPath: spec, Data: train, Out: filepath.Join(dir, "models")})
			if err != nil {
				return fmt.Errorf("%s seed %d: %w", m.name, s, err)
			}
			out := filepath.Join(dir, "scores.parquet")
			if _, err := pipelines.Score(ctx, pipelines.ScoreConfig{Model: res.Bundle, Data: []string{test}, Out: out, IDColumns: []string{"click", "conversion", "true_cvr"}}); err != nil {
				return fmt.Errorf("%s seed %d: score: %w", m.name, s, err)
			}
			ms, err := measure(ctx, out, "ctr", "cvr", m.aitm)
			if err != nil {
				return fmt.Errorf("%s seed %d: %w", m.name, s, err)
			}
			fmt.Fprintf(os.Stderr, "funnel: %s seed %d: %.4f\n", m.name, s, ms)
			for k, v := range ms {
				values[k] = append(values[k], v)
			}
		}
		fmt.Fprintf(w, "| %s |", m.name)
		for _, v := range values {
			mean, std, med := stats(v)
			fmt.Fprintf(w, " %.4f ± %.4f (%.4f) |", mean, std, med)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "\n%d seeds per method; mean ± sample std (median); %d generated rows (gen --cart, seed 1, task correlation 0.5).\n", seeds, rows)
	return nil
}

// measure reads a scores file (or the test file, with the true
// probabilities as the scores) and returns the metrics in metricNames
// order, the click and conversion scores coming from columns ctrCol and
// cvrCol.
func measure(ctx context.Context, path, ctrCol, cvrCol string, aitm bool) ([]float64, error) {
	src, err := ingest.NewParquetSource(ctx, ingest.ParquetConfig{Paths: []string{path}})
	if err != nil {
		return nil, err
	}
	defer src.Close()
	sch := src.Schema()
	var click, conv, trueCVR []float32
	var cvr, ctcvr []float64
	for rec, err := range ingest.Records(ctx, src) {
		if err != nil {
			return nil, err
		}
		col := func(name string) arrow.Array { return rec.Column(sch.FieldIndices(name)[0]) }
		cl := col("click").(*array.Int32).Int32Values()
		cv := col("conversion").(*array.Int32).Int32Values()
		tv := col("true_cvr").(*array.Float64).Float64Values()
		pctr, pcvr := floats(col(ctrCol)), floats(col(cvrCol))
		for i := range cl {
			click = append(click, float32(cl[i]))
			conv = append(conv, float32(cv[i]))
			trueCVR = append(trueCVR, float32(tv[i]))
			c, j := float64(pcvr[i]), float64(pctr[i])*float64(pcvr[i])
			if aitm { // the conversion head predicts P(conversion | impression)
				c, j = min(1, float64(pcvr[i])/float64(pctr[i])), float64(pcvr[i])
			}
			cvr = append(cvr, c)
			ctcvr = append(ctcvr, j)
		}
		rec.Release()
	}
	var s auc.Scratch
	var clickedCVR []float64
	var clickedConv []float32
	for i, c := range click {
		if c == 1 {
			clickedCVR = append(clickedCVR, cvr[i])
			clickedConv = append(clickedConv, conv[i])
		}
	}
	return []float64{
		auc.AUC(&s, clickedCVR, clickedConv, nil),
		auc.AUC(&s, cvr, trueCVR, nil),
		auc.AUC(&s, ctcvr, conv, nil),
		mean64(clickedCVR) / mean32(clickedConv),
		mean64(cvr) / mean32(trueCVR),
		mean64(ctcvr) / mean32(conv),
	}, nil
}

// floats returns a float32 or float64 column as float64s.
func floats(a arrow.Array) []float64 {
	switch a := a.(type) {
	case *array.Float64:
		return a.Float64Values()
	case *array.Float32:
		out := make([]float64, a.Len())
		for i, v := range a.Float32Values() {
			out[i] = float64(v)
		}
		return out
	}
	panic(fmt.Sprintf("funnel: column of type %s", a.DataType()))
}

func mean64(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func mean32(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x)
	}
	return s / float64(len(v))
}

func stats(v []float64) (mean, std, median float64) {
	mean = mean64(v)
	for _, x := range v {
		std += (x - mean) * (x - mean)
	}
	if len(v) > 1 {
		std = math.Sqrt(std / float64(len(v)-1))
	}
	s := slices.Clone(v)
	slices.Sort(s)
	median = s[len(s)/2]
	if len(s)%2 == 0 {
		median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return mean, std, median
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}
