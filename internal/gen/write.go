package gen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/onestone/onestone/internal/auc"
	"github.com/parquet-go/parquet-go"
	"golang.org/x/sync/errgroup"
)

// Config configures Generate.
type Config struct {
	// Dir is the output directory, created if missing. Required.
	Dir string
	// Rows is the total number of impressions, train and test. Default: 2,000,000.
	Rows int64
	// Users and Items are the population sizes. Default: 20,000 each.
	Users, Items int
	// Skew makes the picks of users and items Zipf-like (NewSkewedWorld).
	// Default: none.
	Skew Skew
	// IDEffects in [0, MaxIDEffects] is the strength of the effects only
	// the user and item ids reveal (World.AddIDEffects): the standard
	// deviation of each hidden term on the CTR logit. Default: 0, none
	// (the data of earlier versions, bit for bit).
	IDEffects float64
	// Seed makes the output reproducible. Default: 0 (a valid seed).
	Seed uint64
	// TaskCorr in [-1, 1] is how much of the CVR logit's structure is shared
	// with the CTR logit. Default: 0 (independent).
	TaskCorr float64
	// TestFrac in (0, 1) is the share of rows in test-00000.parquet.
	// Default: 0.1.
	TestFrac float64
	// Files is the number of train files. Default: 4.
	Files int
	// RowGroupRows is the number of rows per Parquet row group. Default: 131072.
	RowGroupRows int64
	// Workers is the number of files written at once. Default: GOMAXPROCS.
	Workers int
	// Cart adds the add-to-cart step between click and conversion (columns
	// cart and true_cart; see CartEvent), for funnels of three steps such
	// as AITM's. Default: false.
	Cart bool
	// ItemVectors, when positive, adds the column item_vec: a content
	// vector of this many numbers per item (World.DrawItemVectors), and a
	// vector field for it in the spec. Not with Cart. Default: 0, none.
	ItemVectors int
	// MaxAUCRows bounds the test rows kept in memory to compute the ceiling
	// AUC (24 bytes each, and about 30 more while it is computed). Default:
	// 4,000,000.
	MaxAUCRows int
}

// Validate reports whether the configuration is usable.
func (c *Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("gen: Config.Dir is empty")
	case c.Rows < 0:
		return fmt.Errorf("gen: Config.Rows %d is negative", c.Rows)
	case c.Users < 0 || c.Items < 0:
		return fmt.Errorf("gen: Config.Users %d or Items %d is negative", c.Users, c.Items)
	case !(c.TaskCorr >= -1 && c.TaskCorr <= 1):
		return fmt.Errorf("gen: Config.TaskCorr %v outside [-1, 1]", c.TaskCorr)
	case !(c.TestFrac >= 0 && c.TestFrac < 1):
		return fmt.Errorf("gen: Config.TestFrac %v outside [0, 1)", c.TestFrac)
	case c.Skew.Validate() != nil:
		return c.Skew.Validate()
	case !(c.IDEffects >= 0 && c.IDEffects <= MaxIDEffects):
		return fmt.Errorf("gen: Config.IDEffects %v outside [0, %d]", c.IDEffects, MaxIDEffects)
	case c.ItemVectors < 0 || c.ItemVectors > MaxItemVectors:
		return fmt.Errorf("gen: Config.ItemVectors %d outside [0, %d]", c.ItemVectors, MaxItemVectors)
	case c.ItemVectors > 0 && c.Cart:
		return errors.New("gen: Config.ItemVectors and Cart cannot be set together")
	case c.Files < 0 || c.RowGroupRows < 0 || c.Workers < 0 || c.MaxAUCRows < 0:
		return errors.New("gen: Config.Files, RowGroupRows, Workers and MaxAUCRows must not be negative")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Rows == 0 {
		c.Rows = 2_000_000
	}
	if c.Users == 0 {
		c.Users = 20_000
	}
	if c.Items == 0 {
		c.Items = 20_000
	}
	if c.TestFrac == 0 {
		c.TestFrac = 0.1
	}
	if c.Files == 0 {
		c.Files = 4
	}
	if c.RowGroupRows == 0 {
		c.RowGroupRows = 131072
	}
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.MaxAUCRows == 0 {
		c.MaxAUCRows = 4_000_000
	}
	return c
}

// FileSummary describes one written file.
type FileSummary struct {
	Path        string  `json:"path"`
	Rows        int64   `json:"rows"`
	Clicks      int64   `json:"clicks"`
	Conversions int64   `json:"conversions"`
	Carts       int64   `json:"carts,omitempty"` // with Config.Cart
	CTR         float64 `json:"ctr"`             // clicks / rows
	CVR         float64 `json:"cvr_given_click"` // conversions / clicks
}

// Summary is what Generate wrote and the ceiling AUCs on the test file.
type Summary struct {
	Train []FileSummary `json:"train"`
	Test  FileSummary   `json:"test"`
	Spec  string        `json:"spec"`
	// CeilingCTRAUC is the AUC of true_ctr against click on the test file.
	CeilingCTRAUC float64 `json:"ceiling_ctr_auc"`
	// CeilingCTCVRAUC is the AUC of true_ctr*true_cvr against conversion.
	CeilingCTCVRAUC float64 `json:"ceiling_ctcvr_auc"`
	// AUCRows is the number of test rows the AUCs were computed on.
	AUCRows int `json:"auc_rows"`
}

// Generate writes cfg.Files train files train-NNNNN.parquet, one test file
// test-00000.parquet (zstd, dictionary-encoded strings, row groups of
// cfg.RowGroupRows) and spec.yaml into cfg.Dir, streaming rows in bounded
// memory, and returns the summary with the ceiling AUCs.
func Generate(ctx context.Context, cfg Config) (*Summary, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	w, err := NewSkewedWorld(cfg.Seed, cfg.Users, cfg.Items, cfg.TaskCorr, cfg.Skew)
	if err != nil {
		return nil, err
	}
	if err := w.AddIDEffects(cfg.Seed, cfg.IDEffects); err != nil {
		return nil, err
	}
	if cfg.ItemVectors > 0 {
		if err := w.DrawItemVectors(cfg.Seed, cfg.ItemVectors); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("gen: %w", err)
	}
	testRows := max(1, int64(float64(cfg.Rows)*cfg.TestFrac+0.5))
	trainRows := cfg.Rows - testRows
	if trainRows < int64(cfg.Files) {
		return nil, fmt.Errorf("gen: %d rows leave %d train rows for %d files", cfg.Rows, trainRows, cfg.Files)
	}
	sum := &Summary{Train: make([]FileSummary, cfg.Files)}
	var scores testScores
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.Workers)
	// The test file first: it is the one whose AUC is computed.
	g.Go(func() error {
		fs, err := write(gctx, w, cfg, filepath.Join(cfg.Dir, "test-00000.parquet"), 0, testRows, &scores)
		sum.Test = fs
		return err
	})
	for f := range cfg.Files {
		n := trainRows / int64(cfg.Files)
		if int64(f) < trainRows%int64(cfg.Files) {
			n++
		}
		g.Go(func() error {
			path := filepath.Join(cfg.Dir, fmt.Sprintf("train-%05d.parquet", f))
			fs, err := write(gctx, w, cfg, path, uint64(f)+1, n, nil)
			sum.Train[f] = fs
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	sum.AUCRows = len(scores.ctr)
	var scratch auc.Scratch
	if sum.CeilingCTRAUC = auc.AUC(&scratch, scores.ctr, scores.click, nil); math.IsNaN(sum.CeilingCTRAUC) {
		return nil, fmt.Errorf("gen: ceiling CTR AUC: the %d test rows hold one class", sum.AUCRows)
	}
	if sum.CeilingCTCVRAUC = auc.AUC(&scratch, scores.ctcvr, scores.conv, nil); math.IsNaN(sum.CeilingCTCVRAUC) {
		return nil, fmt.Errorf("gen: ceiling CTCVR AUC: the %d test rows hold one class", sum.AUCRows)
	}
	sum.Spec = filepath.Join(cfg.Dir, "spec.yaml")
	if err := os.WriteFile(sum.Spec, []byte(specYAML(cfg.Users, cfg.Items, cfg.Cart, cfg.ItemVectors)), 0o644); err != nil {
		return nil, fmt.Errorf("gen: %w", err)
	}
	return sum, nil
}

// testScores are the true probabilities and the labels (0 or 1) of the
// test rows, for the ceiling AUCs.
type testScores struct {
	ctr, ctcvr  []float64
	click, conv []float32
}

// write writes rows impressions of stream id to path, of the two- or the
// three-step funnel.
func write(ctx context.Context, w *World, cfg Config, path string, id uint64, rows int64, sc *testScores) (FileSummary, error) {
	if cfg.Cart {
		return writeFile(ctx, w, cfg, path, id, rows, sc, (*Stream).NextCart, func(e *CartEvent) (*Event, int32) { return &e.Event, e.Cart })
	}
	if cfg.ItemVectors > 0 {
		return writeFile(ctx, w, cfg, path, id, rows, sc, (*Stream).NextVec, func(e *VecEvent) (*Event, int32) { return &e.Event, 0 })
	}
	return writeFile(ctx, w, cfg, path, id, rows, sc, (*Stream).Next, func(e *Event) (*Event, int32) { return e, 0 })
}

// writeFile writes rows impressions of type T, drawn by next, to path; ev
// gives a row's Event and its cart.
func writeFile[T any](ctx context.Context, w *World, cfg Config, path string, id uint64, rows int64, sc *testScores, next func(*Stream, *T), ev func(*T) (*Event, int32)) (fs FileSummary, err error) {
	fs.Path = path
	f, err := os.Create(path)
	if err != nil {
		return fs, fmt.Errorf("gen: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("gen: %s: %w", path, cerr)
		}
	}()
	pw := parquet.NewGenericWriter[T](f,
		parquet.Compression(&parquet.Zstd),
		parquet.MaxRowsPerRowGroup(cfg.RowGroupRows),
	)
	s := w.NewStream(cfg.Seed, id)
	buf := make([]T, 4096)
	for done := int64(0); done < rows; {
		if err := ctx.Err(); err != nil {
			return fs, err
		}
		n := int(min(int64(len(buf)), rows-done))
		for k := range buf[:n] {
			next(s, &buf[k])
			e, cart := ev(&buf[k])
			fs.Carts += int64(cart)
			fs.Clicks += int64(e.Click)
			fs.Conversions += int64(e.Conversion)
			if sc != nil && len(sc.ctr) < cfg.MaxAUCRows {
				sc.ctr = append(sc.ctr, e.TrueCTR)
				sc.ctcvr = append(sc.ctcvr, e.TrueCTR*e.TrueCVR)
				sc.click = append(sc.click, float32(e.Click))
				sc.conv = append(sc.conv, float32(e.Conversion))
			}
		}
		if _, err := pw.Write(buf[:n]); err != nil {
			return fs, fmt.Errorf("gen: %s: %w", path, err)
		}
		done += int64(n)
	}
	if err := pw.Close(); err != nil {
		return fs, fmt.Errorf("gen: %s: %w", path, err)
	}
	fs.Rows = rows
	if rows > 0 {
		fs.CTR = float64(fs.Clicks) / float64(rows)
	}
	if fs.Clicks > 0 {
		fs.CVR = float64(fs.Conversions) / float64(fs.Clicks)
	}
	return fs, nil
}

// SpecYAML returns the feature spec of the generated columns: user fields
// and device, hour, position and tags on the context side, item fields on
// the candidate side, tasks ctr (binary on click) and cvr (ESMM on
// conversion, parent ctr), grouped by user_id.
func SpecYAML(users, items int) string { return specYAML(users, items, false, 0) }

// specYAML is SpecYAML; with cart, the tasks are AITM's chain instead:
// ctr, cart (binary on cart, parent ctr) and cvr (binary on conversion,
// parent cart), each on every impression, on arch aitm. With vecDim > 0
// the spec has the item_vec vector field.
func specYAML(users, items int, cart bool, vecDim int) string {
	tasks := `tasks:
  - {name: ctr, kind: binary, label: click}
  - {name: cvr, kind: esmm, label: conversion, parent: ctr}
`
	arch := `  arch: mmoe
  experts: 4
`
	if cart {
		tasks = `# The three-step funnel (gen --cart): AITM's chain of tasks, each on
# every impression, with its behavioural-expectation calibrator.
tasks:
  - {name: ctr, kind: binary, label: click}
  - {name: cart, kind: binary, label: cart, parent: ctr, calibrator_weight: 0.6}
  - {name: cvr, kind: binary, label: conversion, parent: cart, calibrator_weight: 0.6}
`
		arch = `  arch: aitm
`
	}
	vecField := ""
	if vecDim > 0 {
		vecField = fmt.Sprintf("  - {name: item_vec, kind: vector, dim: %d, normalize: per_dim, side: candidate}\n", vecDim)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# Feature spec of the data written by "onestone gen" (see internal/gen).
fields:
  - {name: user_id, kind: categorical, buckets: %d, side: context}
  - {name: age, kind: numeric, transform: bucketize, buckets: 10, side: context}
  - {name: user_tags, kind: multi_categorical, vocab: {min_count: 5}, pooling: mean, side: context}
  - {name: user_activity, kind: numeric, transform: log1p, side: context}
  - {name: device, kind: categorical, vocab: {min_count: 1}, side: context}
  - {name: hour, kind: categorical, vocab: {min_count: 1}, side: context}
  - {name: position, kind: categorical, vocab: {min_count: 1}, side: context}
  - {name: item_id, kind: categorical, buckets: %d, side: candidate}
  - {name: category, kind: categorical, vocab: {min_count: 5}, side: candidate}
  - {name: brand, kind: categorical, vocab: {min_count: 5}, side: candidate}
  - {name: price, kind: numeric, transform: log1p, missing_indicator: false, side: candidate}
  - {name: item_popularity, kind: numeric, transform: standardize, missing_indicator: false, side: candidate}
%s%sgroup_key: user_id
# A model sized for this data: it trains 2 M rows in well under a minute on
# 2 cores. Remove these sections for the std defaults (8 experts [256, 128],
# towers [64], embedding dim 16, batch 1024).
model:
%s  expert_hidden: [64, 32]
  tower: [16]
  embedding_dim: 32
train:
  batch_size: 256
  epochs: 1
  embedding: {optimizer: adagrad, lr: 0.1}
`, hashBuckets(users), hashBuckets(items), vecField, tasks, arch)
	return b.String()
}

// hashBuckets gives ids about 1/8 chance of sharing a bucket.
func hashBuckets(n int) int { return max(1000, 4*n) }
