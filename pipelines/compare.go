package pipelines

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
)

// ErrCompareConfig is wrapped by Compare's configuration errors.
var ErrCompareConfig = errors.New("pipelines: invalid compare configuration")

// CompareConfig configures Compare. Zero fields take the documented
// defaults (or the spec's train: values).
type CompareConfig struct {
	SpecPath string   // the spec whose model: section is the base configuration
	Data     []string // training Parquet files or globs
	Valid    []string // validation Parquet files or globs (required)
	// Archs are the architectures to train. Default: single,
	// shared_bottom, omoe, mmoe, ple.
	Archs []string
	// Weightings are the loss weightings (train.weighting) each
	// architecture is trained with, every pair a row. Default: none, the
	// spec's weighting only (the table has no weighting column).
	Weightings []string
	// Seeds is the number of seeds per architecture; seed s uses the
	// spec's model seed + s. Default: 3.
	Seeds     int
	Epochs    int   // overrides train.epochs
	MaxSteps  int64 // stops each run after this many steps (0: no limit)
	BatchSize int   // overrides train.batch_size
	Workers   int   // overrides train.workers
	// EvalLimit caps the validation rows of each run's evaluations at the
	// end of every epoch but the last (the final evaluation, the one
	// reported, uses all). Default: 0 (all).
	EvalLimit int64
	// WorkDir holds each run's spec copy and bundles; it is removed at the
	// end unless Keep. Default: a new temporary directory.
	WorkDir string
	Keep    bool
	// Progress receives one line per run (nil: none).
	Progress io.Writer
}

// DefaultCompareArchs are the architectures Compare trains by default.
var DefaultCompareArchs = []string{mmoe.ArchSingle, mmoe.ArchSharedBottom, mmoe.ArchOMoE, mmoe.ArchMMoE, mmoe.ArchPLE}

// CompareRun is one trained model.
type CompareRun struct {
	Arch           string    `json:"arch"`
	Weighting      string    `json:"weighting,omitempty"` // CompareConfig.Weightings' entry, if any
	Seed           uint64    `json:"seed"`
	Steps          int64     `json:"steps"`
	Seconds        float64   `json:"seconds"`
	ExamplesPerSec float64   `json:"examples_per_sec"`
	Scores         []float64 `json:"scores"` // per objective (CompareResult.Objectives): AUC, or RMSE for regression
}

// CompareTask is one objective's score over the seeds of one architecture.
// The objectives are the validation metrics' (the tasks, plus the
// conversion-through-click probability of an esmm task, e.g. ctcvr).
type CompareTask struct {
	Task string `json:"task"` // the objective's name

	Metric string    `json:"metric"` // "auc" or "rmse"
	Mean   float64   `json:"mean"`
	Std    float64   `json:"std"` // sample standard deviation (0 for one seed)
	Median float64   `json:"median"`
	Values []float64 `json:"values"`
}

// CompareRow summarises one architecture with one weighting.
type CompareRow struct {
	Arch           string        `json:"arch"`
	Weighting      string        `json:"weighting,omitempty"` // CompareConfig.Weightings' entry, if any
	Params         int           `json:"params"`              // all parameters, embeddings included
	DenseParams    int           `json:"dense_params"`        // without the embeddings
	ExamplesPerSec float64       `json:"examples_per_sec"`
	Tasks          []CompareTask `json:"tasks"`
}

// CompareResult is Compare's table.
type CompareResult struct {
	Spec       string       `json:"spec"`
	Seeds      int          `json:"seeds"`
	Objectives []string     `json:"objectives"`
	Rows       []CompareRow `json:"rows"`
	Runs       []CompareRun `json:"runs"`
}

// Compare trains the spec's model once per architecture and seed, on the
// same data and training settings, and tabulates each task's validation
// score per objective (AUC for binary objectives — an esmm task gives its
// conditional and its joint probability, e.g. cvr and ctcvr — RMSE for
// regression) as mean ± std and median
// over seeds, with parameter counts and training throughput. With
// Weightings, every architecture is trained with each weighting (the
// spec's train.weighting replaced), each pair a row. Every
// architecture is a variant of the spec's model: section
// (mmoe.Config.ForArch): embedding dimension, expert and tower widths and
// activation are kept; the expert counts are set for the architecture
// (the spec's experts for mmoe, omoe, cgc and ple — so their parameter
// counts differ, as they would in a user's own choice; one network for
// shared_bottom; one network per task for single and soft). A
// train.soft_penalty applies to soft only. Every
// architecture's configuration is checked (model and trainer built)
// before the first run starts. The runs are sequential; each uses
// TrainBatch on a copy of the spec under WorkDir.
func Compare(ctx context.Context, cfg CompareConfig) (*CompareResult, error) {
	if cfg.Archs == nil {
		cfg.Archs = DefaultCompareArchs
	}
	if cfg.Seeds == 0 {
		cfg.Seeds = 3
	}
	switch {
	case cfg.SpecPath == "":
		return nil, fmt.Errorf("pipelines: compare: no spec: %w", ErrCompareConfig)
	case len(cfg.Data) == 0:
		return nil, fmt.Errorf("pipelines: compare: no training data: %w", ErrCompareConfig)
	case len(cfg.Valid) == 0:
		return nil, fmt.Errorf("pipelines: compare: no validation data (the table is of validation scores): %w", ErrCompareConfig)
	case cfg.Seeds < 1:
		return nil, fmt.Errorf("pipelines: compare: seeds %d < 1: %w", cfg.Seeds, ErrCompareConfig)
	case len(cfg.Archs) == 0:
		return nil, fmt.Errorf("pipelines: compare: no architectures: %w", ErrCompareConfig)
	}
	seen := map[string]bool{}
	for _, a := range cfg.Archs {
		if !slices.Contains(mmoe.Archs, a) {
			return nil, fmt.Errorf("pipelines: compare: arch %q: want one of %v: %w", a, mmoe.Archs, ErrCompareConfig)
		}
		if seen[a] {
			return nil, fmt.Errorf("pipelines: compare: arch %q given twice: %w", a, ErrCompareConfig)
		}
		seen[a] = true
	}
	weightings := []string{""} // "": the spec's
	if len(cfg.Weightings) > 0 {
		weightings = cfg.Weightings
		seen := map[string]bool{}
		for _, w := range weightings {
			if _, ok := mtl.KnownWeightings[w]; !ok {
				return nil, fmt.Errorf("pipelines: compare: weighting %q: not a known weighting: %w", w, ErrCompareConfig)
			}
			if seen[w] {
				return nil, fmt.Errorf("pipelines: compare: weighting %q given twice: %w", w, ErrCompareConfig)
			}
			seen[w] = true
		}
	}
	type variant struct{ arch, weighting, dir, name string }
	var variants []variant
	for _, a := range cfg.Archs {
		for _, w := range weightings {
			v := variant{arch: a, weighting: w, dir: a, name: a}
			if w != "" {
				v.dir, v.name = filepath.Join(a, w), a+" "+w
			}
			variants = append(variants, v)
		}
	}
	// The base setup (fits and saves the statistics if missing).
	base, err := LoadSetup(cfg.SpecPath, fitForTraining(ctx, cfg.Data, nil, false, nil))
	if err != nil {
		return nil, err
	}
	if err := checkTaskColumns(base.Spec, cfg.Data); err != nil {
		return nil, err
	}
	statsText, err := os.ReadFile(features.StatsPath(cfg.SpecPath))
	if err != nil {
		return nil, fmt.Errorf("pipelines: compare: %w", err)
	}
	work := cfg.WorkDir
	if work == "" {
		if work, err = os.MkdirTemp("", "onestone-compare-"); err != nil {
			return nil, fmt.Errorf("pipelines: compare: %w", err)
		}
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, fmt.Errorf("pipelines: compare: %w", err)
	}
	if !cfg.Keep {
		defer os.RemoveAll(work)
	}
	// Write and check every variant's spec before training.
	specs := map[string]string{}
	res := &CompareResult{Spec: cfg.SpecPath, Seeds: cfg.Seeds}
	for _, v := range variants {
		arch := v.arch
		mc := base.Model.ForArch(arch)
		path := filepath.Join(work, v.dir, "spec.yaml")
		if err := writeArchSpec(path, base.SpecText, mc, arch == mmoe.ArchSoft, v.weighting); err != nil {
			return nil, err
		}
		if err := os.WriteFile(features.StatsPath(path), statsText, 0o644); err != nil {
			return nil, fmt.Errorf("pipelines: compare: %w", err)
		}
		s, err := LoadSetup(path, nil)
		if err != nil {
			return nil, fmt.Errorf("pipelines: compare: %s: %w", v.name, err)
		}
		m, err := s.NewModel()
		if err != nil {
			return nil, fmt.Errorf("pipelines: compare: %s: %w", v.name, err)
		}
		tc := s.Train
		tc.BatchSize, tc.Workers = 1, 1 // only checking the configuration
		tr, err := mtl.NewTrainer(m, s.Tasks, tc)
		if err != nil {
			return nil, fmt.Errorf("pipelines: compare: %s: %w", v.name, err)
		}
		tr.Close()
		specs[v.dir] = path
		res.Rows = append(res.Rows, CompareRow{Arch: arch, Weighting: v.weighting, Params: m.NumParams(), DenseParams: m.NumDenseParams()})
	}
	for ri, v := range variants {
		arch := v.arch
		row := &res.Rows[ri]
		var scores [][]float64
		var kinds []string
		for si := range cfg.Seeds {
			seed := base.Model.Seed + uint64(si)
			path := specs[v.dir]
			if si > 0 {
				mc := base.Model.ForArch(arch)
				mc.Seed = seed
				if err := writeArchSpec(path, base.SpecText, mc, arch == mmoe.ArchSoft, v.weighting); err != nil {
					return nil, err
				}
			}
			out := filepath.Join(work, v.dir, fmt.Sprintf("seed%d", si))
			tres, err := TrainBatch(ctx, TrainBatchConfig{
				SpecPath: path, Data: cfg.Data, Valid: cfg.Valid, Out: out,
				Epochs: cfg.Epochs, MaxSteps: cfg.MaxSteps, BatchSize: cfg.BatchSize, Workers: cfg.Workers,
				EvalLimit: cfg.EvalLimit, KeepCheckpoints: 1,
			})
			if err != nil {
				return nil, fmt.Errorf("pipelines: compare: %s seed %d: %w", v.name, seed, err)
			}
			run := CompareRun{Arch: arch, Weighting: v.weighting, Seed: seed, Steps: tres.Steps, Seconds: tres.Seconds, ExamplesPerSec: tres.ExamplesPerSec}
			if tres.Final == nil {
				return nil, fmt.Errorf("pipelines: compare: %s seed %d: no validation result", v.name, seed)
			}
			if res.Objectives == nil {
				for _, m := range tres.Final.Metrics {
					res.Objectives = append(res.Objectives, m.Objective)
				}
			}
			if len(tres.Final.Metrics) != len(res.Objectives) {
				return nil, fmt.Errorf("pipelines: compare: %s seed %d: %d objectives, the first run had %d", v.name, seed, len(tres.Final.Metrics), len(res.Objectives))
			}
			if scores == nil {
				scores = make([][]float64, len(res.Objectives))
				kinds = make([]string, len(res.Objectives))
			}
			for t, m := range tres.Final.Metrics {
				score := m.AUC
				if m.Kind == mtl.KindRegression {
					score = m.RMSE
				}
				kinds[t] = m.Kind
				run.Scores = append(run.Scores, score)
				scores[t] = append(scores[t], score)
			}
			row.ExamplesPerSec += tres.ExamplesPerSec / float64(cfg.Seeds)
			res.Runs = append(res.Runs, run)
			if cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "compare: %s seed %d: %d steps in %.1fs (%.0f ex/s): %s\n", v.name, seed, tres.Steps, tres.Seconds, tres.ExamplesPerSec, FormatMetrics(tres.Final.Metrics))
			}
		}
		for t, name := range res.Objectives {
			metric := "auc"
			if kinds[t] == mtl.KindRegression {
				metric = "rmse"
			}
			mean, std := meanStd(scores[t])
			row.Tasks = append(row.Tasks, CompareTask{Task: name, Metric: metric, Mean: mean, Std: std, Median: median(scores[t]), Values: scores[t]})
		}
	}
	return res, nil
}

// writeArchSpec writes text with its model: section replaced by mc,
// unless soft train.soft_penalty removed, and train.weighting set to
// weighting unless it is "".
func writeArchSpec(path string, text []byte, mc mmoe.Config, soft bool, weighting string) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil {
		return fmt.Errorf("pipelines: compare: spec: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return fmt.Errorf("pipelines: compare: spec is not a YAML mapping: %w", ErrCompareConfig)
	}
	root := doc.Content[0]
	var mnode yaml.Node
	if err := mnode.Encode(mc); err != nil {
		return fmt.Errorf("pipelines: compare: %w", err)
	}
	var train *yaml.Node
	found := false
	for i := 0; i+1 < len(root.Content); i += 2 {
		switch root.Content[i].Value {
		case "model":
			root.Content[i+1] = &mnode
			found = true
		case "train":
			if tr := root.Content[i+1]; tr.Kind == yaml.MappingNode {
				train = tr
				for j := 0; !soft && j+1 < len(tr.Content); j += 2 {
					if tr.Content[j].Value == "soft_penalty" {
						tr.Content = slices.Delete(tr.Content, j, j+2)
						break
					}
				}
			}
		}
	}
	if !found {
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "model"}, &mnode)
	}
	if weighting != "" {
		if train == nil {
			train = &yaml.Node{Kind: yaml.MappingNode}
			root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "train"}, train)
		}
		set := false
		for j := 0; j+1 < len(train.Content); j += 2 {
			if train.Content[j].Value == "weighting" {
				train.Content[j+1] = &yaml.Node{Kind: yaml.ScalarNode, Value: weighting}
				set = true
			}
		}
		if !set {
			train.Content = append(train.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "weighting"}, &yaml.Node{Kind: yaml.ScalarNode, Value: weighting})
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return fmt.Errorf("pipelines: compare: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("pipelines: compare: %w", err)
	}
	return os.WriteFile(path, out, 0o644)
}

// median is the middle value of v (the mean of the two middle ones for an
// even count), NaN for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func meanStd(v []float64) (float64, float64) {
	if len(v) == 0 {
		return math.NaN(), math.NaN()
	}
	var s float64
	for _, x := range v {
		s += x
	}
	mean := s / float64(len(v))
	if len(v) < 2 {
		return mean, 0
	}
	var ss float64
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(v)-1))
}

// Markdown renders the table: one row per architecture (and weighting,
// with a weighting column when there were Weightings), one column per
// task ("0.9412 ± 0.0013 (0.9410)": mean ± std (median)), parameters and
// examples/s.
func (r *CompareResult) Markdown() string {
	var sb strings.Builder
	if len(r.Rows) == 0 {
		return ""
	}
	weighting := r.Rows[0].Weighting != ""
	sb.WriteString("| arch |")
	if weighting {
		sb.WriteString(" weighting |")
	}
	for _, t := range r.Rows[0].Tasks {
		fmt.Fprintf(&sb, " %s %s |", t.Task, t.Metric)
	}
	sb.WriteString(" params | dense params | examples/s |\n|---|")
	if weighting {
		sb.WriteString("---|")
	}
	for range r.Rows[0].Tasks {
		sb.WriteString("---:|")
	}
	sb.WriteString("---:|---:|---:|\n")
	for _, row := range r.Rows {
		fmt.Fprintf(&sb, "| %s |", row.Arch)
		if weighting {
			fmt.Fprintf(&sb, " %s |", row.Weighting)
		}
		for _, t := range row.Tasks {
			fmt.Fprintf(&sb, " %.4f ± %.4f (%.4f) |", t.Mean, t.Std, t.Median)
		}
		fmt.Fprintf(&sb, " %d | %d | %.0f |\n", row.Params, row.DenseParams, row.ExamplesPerSec)
	}
	fmt.Fprintf(&sb, "\n%d seed(s) per row; mean ± sample std (median) over seeds, on the validation data.\n", r.Seeds)
	return sb.String()
}
