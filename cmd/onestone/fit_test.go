package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/internal/gen"
)

func TestFitCommand(t *testing.T) {
	dir := t.TempDir()
	sum, err := gen.Generate(context.Background(), gen.Config{Dir: dir, Rows: 20000, Users: 500, Items: 500, Seed: 2, Files: 2, RowGroupRows: 4000, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	glob := filepath.Join(dir, "train-*.parquet")
	if err := runFit(ctx, []string{"--spec", sum.Spec, "--data", glob, "--seed", "3"}); err != nil {
		t.Fatal(err)
	}
	st, err := features.LoadStats(filepath.Join(dir, "spec.stats.json"))
	if err != nil {
		t.Fatal(err)
	}
	var trainRows int64
	for _, f := range sum.Train {
		trainRows += f.Rows
	}
	if st.Rows != trainRows || st.Seed != 3 || st.Labels["click"] == nil {
		t.Errorf("stats rows %d (want %d), seed %d, labels %v", st.Rows, trainRows, st.Seed, st.Labels)
	}
	spec, err := features.LoadSpec(sum.Spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := features.NewTransformer(spec, st, features.TransformerConfig{Labels: true}); err != nil {
		t.Errorf("stats written by fit do not serve the spec: %v", err)
	}

	// Labels absent from the data: fit still works (labels are optional).
	text, _ := os.ReadFile(sum.Spec)
	noLabels := strings.ReplaceAll(string(text), "label: conversion", "label: dwell_time")
	p2 := filepath.Join(dir, "other.yaml")
	os.WriteFile(p2, []byte(noLabels), 0o644)
	if err := runFit(ctx, []string{"--spec", p2, "--data", glob, "--data", filepath.Join(dir, "test-*.parquet")}); err != nil {
		t.Fatal(err)
	}
	if st2, err := features.LoadStats(filepath.Join(dir, "other.stats.json")); err != nil || st2.Rows != trainRows+sum.Test.Rows || st2.Labels != nil {
		t.Errorf("fit without labels: %v, %+v", err, st2)
	}

	for _, tc := range []struct {
		args []string
		want string
		is   error
	}{
		{[]string{"--data", glob}, "--spec and --data are required", nil},
		{[]string{"--spec", sum.Spec}, "--spec and --data are required", nil},
		{[]string{"--spec", sum.Spec, "--data", filepath.Join(dir, "nothing-*.parquet")}, "nothing-", ingest.ErrNoFiles},
		{[]string{"--spec", filepath.Join(dir, "missing.yaml"), "--data", glob}, "missing.yaml", os.ErrNotExist},
		{[]string{"--spec", sum.Spec, "--data", glob, "--quantile-sample", "0"}, "--quantile-sample 0 must be positive", nil},
	} {
		err := runFit(ctx, tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Errorf("fit %q: error %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestFitMatchesTrain: `onestone fit` with its default flags and the fit
// `onestone train` runs when the spec has no statistics write the same
// file, byte for byte, for the same data. There are more ages than the
// reservoir holds, so the bucket boundaries depend on the seed.
func TestFitMatchesTrain(t *testing.T) {
	if testing.Short() {
		t.Skip("250,000 rows")
	}
	dir := t.TempDir()
	ctx := context.Background()
	sum, err := gen.Generate(ctx, gen.Config{Dir: dir, Rows: 250_000, Users: 500, Items: 500, Seed: 4, Files: 2, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(sum.Spec)
	if err != nil {
		t.Fatal(err)
	}
	fitSpec, trainSpec := filepath.Join(dir, "fit.yaml"), filepath.Join(dir, "train.yaml")
	for _, p := range []string{fitSpec, trainSpec} {
		if err := os.WriteFile(p, text, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	glob := filepath.Join(dir, "train-*.parquet")
	if err := runFit(ctx, []string{"--spec", fitSpec, "--data", glob}); err != nil {
		t.Fatal(err)
	}
	if err := runTrain(ctx, []string{"--spec", trainSpec, "--data", glob, "--out", filepath.Join(dir, "models"), "--max-steps", "1", "--quiet"}); err != nil {
		t.Fatal(err)
	}
	fitted, err := os.ReadFile(features.StatsPath(fitSpec))
	if err != nil {
		t.Fatal(err)
	}
	trained, err := os.ReadFile(features.StatsPath(trainSpec))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fitted, trained) {
		t.Fatalf("fit and train's fit differ:\n%s\n---\n%s", fitted, trained)
	}
	st, err := features.LoadStats(features.StatsPath(fitSpec))
	if err != nil {
		t.Fatal(err)
	}
	age := st.Fields["age"]
	if age == nil || len(age.Boundaries) == 0 || int64(age.Sampled) >= age.Values {
		t.Fatalf("age: %+v: the reservoir was not exercised", age)
	}
}
