package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/gen"
)

func TestFitCommand(t *testing.T) {
	dir := t.TempDir()
	sum, err := gen.Generate(context.Background(), gen.Config{Dir: dir, Rows: 20000, Users: 500, Items: 500, Seed: 2, Files: 2, RowGroupRows: 4000, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	glob := filepath.Join(dir, "train-*.parquet")
	if _, errOut, code := onestone(t, "fit", "--spec", sum.Spec, "--data", glob, "--seed", "3"); code != 0 {
		t.Fatal(errOut)
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
	// The data as one comma-separated value: the same as two --data flags.
	_, errOut, code := onestone(t, "fit", "--spec", p2, "--data", glob+","+filepath.Join(dir, "test-*.parquet"))
	if code != 0 || !strings.Contains(errOut, "labels not validated") || !strings.Contains(errOut, "dwell_time") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if st2, err := features.LoadStats(filepath.Join(dir, "other.stats.json")); err != nil || st2.Rows != trainRows+sum.Test.Rows || st2.Labels != nil {
		t.Errorf("fit without labels: %v, %+v", err, st2)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--data", glob}, exitUsage, "--spec and --data are required"},
		{[]string{"--spec", sum.Spec}, exitUsage, "--spec and --data are required"},
		{[]string{"--spec", sum.Spec, "--data", glob, "--quantile-sample", "0"}, exitUsage, "--quantile-sample 0 must be positive"},
		{[]string{"--spec", sum.Spec, "--data", filepath.Join(dir, "nothing-*.parquet")}, exitFail, "no parquet file matches"},
		{[]string{"--spec", filepath.Join(dir, "missing.yaml"), "--data", glob}, exitFail, "missing.yaml: no such file"},
	} {
		_, errOut, code := onestone(t, append([]string{"fit"}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("fit %q: exit %d, %s; want exit %d and %q", tc.args, code, errOut, tc.code, tc.want)
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
	if _, errOut, code := onestone(t, "fit", "--spec", fitSpec, "--data", glob); code != 0 {
		t.Fatal(errOut)
	}
	if _, errOut, code := onestone(t, "train", "--spec", trainSpec, "--data", glob, "--out", filepath.Join(dir, "models"), "--max-steps", "1", "--quiet"); code != 0 {
		t.Fatal(errOut)
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
