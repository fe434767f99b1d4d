package pipelines

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/onestone/onestone/mmoe"
)

func TestCompareTabulatesArchsAndSeeds(t *testing.T) {
	dir, spec := genData(t, 12000, "")
	var prog bytes.Buffer
	work := t.TempDir()
	res, err := Compare(context.Background(), CompareConfig{
		SpecPath: spec, Data: []string{filepath.Join(dir, "train-*.parquet")},
		Valid: []string{filepath.Join(dir, "test-00000.parquet")},
		Archs: []string{mmoe.ArchSharedBottom, mmoe.ArchMMoE}, Seeds: 2, MaxSteps: 8, WorkDir: work, Progress: &prog,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 2 || len(res.Runs) != 4 {
		t.Fatalf("%d rows, %d runs: want 2 and 4", len(res.Rows), len(res.Runs))
	}
	if res.Rows[0].Arch != mmoe.ArchSharedBottom || res.Rows[1].Arch != mmoe.ArchMMoE {
		t.Fatalf("rows %s, %s", res.Rows[0].Arch, res.Rows[1].Arch)
	}
	// The spec's mmoe has 2 experts: more dense parameters than one bottom.
	if !(res.Rows[1].DenseParams > res.Rows[0].DenseParams) || res.Rows[0].Params <= res.Rows[0].DenseParams {
		t.Fatalf("params: %+v", res.Rows)
	}
	for _, row := range res.Rows {
		if len(row.Tasks) != 3 || !(row.ExamplesPerSec > 0) {
			t.Fatalf("row %+v", row)
		}
		for _, task := range row.Tasks {
			if task.Metric != "auc" || len(task.Values) != 2 || !(task.Mean > 0.3 && task.Mean < 1) {
				t.Fatalf("%s %s: %+v", row.Arch, task.Task, task)
			}
			// Two seeds start from different weights: scores differ.
			if task.Values[0] == task.Values[1] || !(task.Std > 0) {
				t.Fatalf("%s %s: seeds gave %v (std %v)", row.Arch, task.Task, task.Values, task.Std)
			}
			mean, std := meanStd(task.Values)
			if task.Mean != mean || task.Std != std {
				t.Fatalf("mean/std %v %v, recomputed %v %v", task.Mean, task.Std, mean, std)
			}
		}
	}
	if strings.Join(res.Objectives, ",") != "ctr,cvr,ctcvr" {
		t.Fatalf("objectives %v", res.Objectives)
	}
	if res.Runs[0].Seed == res.Runs[1].Seed || res.Runs[0].Steps != 8 {
		t.Fatalf("runs %+v", res.Runs[:2])
	}
	md := res.Markdown()
	if !strings.Contains(md, "| mmoe |") || !strings.Contains(md, " ± ") || !strings.Contains(md, "ctr auc") {
		t.Fatalf("markdown:\n%s", md)
	}
	if strings.Count(prog.String(), "compare: ") != 4 {
		t.Fatalf("progress:\n%s", prog.String())
	}
	if _, err := os.Stat(work); err == nil {
		if ents, _ := os.ReadDir(work); len(ents) != 0 {
			t.Fatalf("work directory not cleaned: %d entries", len(ents))
		}
	}
}

func TestMeanStd(t *testing.T) {
	m, s := meanStd([]float64{1, 2, 3, 4})
	if m != 2.5 || math.Abs(s-math.Sqrt(5.0/3)) > 1e-12 {
		t.Fatalf("mean %v std %v", m, s)
	}
	if m, s := meanStd([]float64{7}); m != 7 || s != 0 {
		t.Fatalf("one value: %v %v", m, s)
	}
}

func TestCompareRefusesBadConfigurationBeforeTraining(t *testing.T) {
	dir, spec := genData(t, 6000, "  weighting: gradnorm\n")
	base := CompareConfig{SpecPath: spec, Data: []string{filepath.Join(dir, "train-*.parquet")}, Valid: []string{filepath.Join(dir, "test-00000.parquet")}, MaxSteps: 1}
	cases := []struct {
		archs []string
		want  string
	}{
		{[]string{"mmoe", "transformer"}, `arch "transformer"`},
		{[]string{"mmoe", "mmoe"}, "given twice"},
		// GradNorm needs a shared layer: single shares none. mmoe comes
		// first, and must not have been trained.
		{[]string{"mmoe", "single"}, "arch single shares none"},
	}
	for _, c := range cases {
		cfg := base
		cfg.Archs = c.archs
		cfg.WorkDir = t.TempDir()
		cfg.Keep = true
		_, err := Compare(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("archs %v: error %v, want %q", c.archs, err, c.want)
		}
		if _, err := os.Stat(filepath.Join(cfg.WorkDir, "mmoe", "seed0")); err == nil {
			t.Fatalf("archs %v: mmoe was trained before the configuration error", c.archs)
		}
	}
	cfg := base
	cfg.Valid = nil
	if _, err := Compare(context.Background(), cfg); !errors.Is(err, ErrCompareConfig) {
		t.Fatalf("no validation data: %v", err)
	}
}

// TestCompareWeightingsAndAITM: a weightings axis trains every
// architecture with each weighting, one row each; aitm is an architecture
// like the others (its transfer from the tasks' parents); a pair that
// cannot train is refused before the first run, and so is an unknown
// weighting.
func TestCompareWeightingsAndAITM(t *testing.T) {
	dir, spec := genData(t, 12000, "")
	data, valid := []string{filepath.Join(dir, "train-*.parquet")}, []string{filepath.Join(dir, "test-00000.parquet")}
	res, err := Compare(context.Background(), CompareConfig{
		SpecPath: spec, Data: data, Valid: valid, Seeds: 2, MaxSteps: 4, WorkDir: t.TempDir(),
		Archs: []string{mmoe.ArchMMoE}, Weightings: []string{"fixed", "pcgrad", "metabalance"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 3 || len(res.Runs) != 6 {
		t.Fatalf("%d rows, %d runs: want 3 and 6", len(res.Rows), len(res.Runs))
	}
	for i, w := range []string{"fixed", "pcgrad", "metabalance"} {
		row := res.Rows[i]
		if row.Arch != mmoe.ArchMMoE || row.Weighting != w || res.Runs[2*i].Weighting != w {
			t.Errorf("row %d: %s %s, run %+v", i, row.Arch, row.Weighting, res.Runs[2*i])
		}
		for _, task := range row.Tasks {
			if m := (task.Values[0] + task.Values[1]) / 2; task.Median != m {
				t.Errorf("%s %s: median %v of %v", w, task.Task, task.Median, task.Values)
			}
		}
	}
	// The spec's weighting is replaced: metabalance trains differently from
	// fixed from the same seed (pcgrad may not, without conflicts).
	if slices.Equal(res.Runs[0].Scores, res.Runs[4].Scores) {
		t.Errorf("fixed and metabalance score the same: %v %v", res.Runs[0].Scores, res.Runs[4].Scores)
	}
	if md := res.Markdown(); !strings.Contains(md, "| arch | weighting |") || !strings.Contains(md, "| mmoe | pcgrad |") {
		t.Errorf("markdown:\n%s", md)
	}

	res, err = Compare(context.Background(), CompareConfig{
		SpecPath: spec, Data: data, Valid: valid, Seeds: 1, MaxSteps: 4, WorkDir: t.TempDir(),
		Archs: []string{mmoe.ArchAITM},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 1 || res.Rows[0].Arch != mmoe.ArchAITM || strings.Contains(res.Markdown(), "weighting") {
		t.Errorf("aitm: %+v\n%s", res.Rows, res.Markdown())
	}

	work := t.TempDir()
	_, err = Compare(context.Background(), CompareConfig{
		SpecPath: spec, Data: data, Valid: valid, Seeds: 1, MaxSteps: 4, WorkDir: work, Keep: true,
		Archs: []string{mmoe.ArchMMoE, mmoe.ArchAITM}, Weightings: []string{"pcgrad"},
	})
	if err == nil || !strings.Contains(err.Error(), "aitm pcgrad") || !strings.Contains(err.Error(), "shares none") {
		t.Fatalf("aitm with pcgrad: %v", err)
	}
	if runs, _ := filepath.Glob(filepath.Join(work, "*", "*", "seed*")); len(runs) > 0 {
		t.Errorf("runs started before the refusal: %v", runs)
	}
	_, err = Compare(context.Background(), CompareConfig{SpecPath: spec, Data: data, Valid: valid, Archs: []string{mmoe.ArchMMoE}, Weightings: []string{"dwa"}})
	if !errors.Is(err, ErrCompareConfig) || !strings.Contains(err.Error(), `weighting "dwa"`) {
		t.Errorf("unknown weighting: %v", err)
	}
}
