// Package stdwork is the standard benchmark workload, std, that
// docs/benchmarks.md defines: its feature spec, a model and bundle
// manifest with random weights, score requests and training batches, and
// Bench, the measurement `onestone bench` prints.
//
// It is scaffolding for benchmarks and load tests (`onestone bench`,
// `onestone stdbundle`, the serving benchmarks), kept out of the library
// packages' API.
package stdwork

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
	"github.com/onestone/onestone/serving"
)

// The sizes of the std workload: Fields categorical fields hashed into Rows
// buckets (0-12 context, 13-25 candidate), Dense numeric context features,
// training batches of Batch rows, score requests of Candidates candidates.
// The model is mmoe's default: embedding dim 16, 8 experts [256, 128],
// towers [64], with CTR and ESMM CVR heads.
const (
	Fields     = 26
	Rows       = 100_000
	Dense      = 13
	Batch      = 1024
	Candidates = 500
)

// Spec returns the feature spec of the std workload: categorical fields
// c0..c25 hashed into Rows buckets (c0-c12 context, c13-c25 candidate),
// numeric context fields d0..d12 (log1p, no missing indicator), tasks ctr
// (label click) and cvr (esmm over ctr, label conv).
func Spec() string {
	var b strings.Builder
	b.WriteString("fields:\n")
	for i := range Fields {
		side := "context"
		if i >= Fields/2 {
			side = "candidate"
		}
		fmt.Fprintf(&b, "  - {name: c%d, kind: categorical, buckets: %d, side: %s}\n", i, Rows, side)
	}
	for i := range Dense {
		fmt.Fprintf(&b, "  - {name: d%d, kind: numeric, transform: log1p, missing_indicator: false}\n", i)
	}
	b.WriteString("tasks:\n  - {name: ctr, kind: binary, label: click}\n  - {name: cvr, kind: esmm, label: conv, parent: ctr}\n")
	return b.String()
}

// Manifest returns a bundle manifest and a randomly initialised model
// (weights from seed) of the std workload, with 8 random sample events
// (their scores not filled in: serving.FillSampleScores does that). It is
// for load tests and benchmarks of the serving path, where trained weights
// do not matter.
func Manifest(seed uint64) (*bundle.Manifest, *mmoe.Model, error) {
	m, model, _, err := build(seed)
	return m, model, err
}

// WriteBundle writes a std bundle (random weights from seed, its sample
// events scored through the serving path) as a new version under root and
// returns the version's directory. It is what `onestone bench stdbundle`
// and the load test serve.
func WriteBundle(ctx context.Context, root string, seed uint64) (string, error) {
	m, model, err := Manifest(seed)
	if err != nil {
		return "", err
	}
	if err := serving.FillSampleScores(m, model, nil); err != nil {
		return "", err
	}
	out := bundle.NewDir(root)
	v, err := bundle.Write(ctx, out, m, model, nil)
	if err != nil {
		return "", err
	}
	return out.Path(v), nil
}

// build returns the std manifest, model and task set, and checks the
// model's layout against the sizes above.
func build(seed uint64) (*bundle.Manifest, *mmoe.Model, *mtl.TaskSet, error) {
	spec, err := features.ParseSpec(strings.NewReader(Spec()))
	if err != nil {
		return nil, nil, nil, err
	}
	tr, err := features.NewTransformer(spec, nil, features.TransformerConfig{})
	if err != nil {
		return nil, nil, nil, err
	}
	tasks := []mtl.TaskConfig{{Name: "ctr", Kind: mtl.KindBinary, Label: "click"}, {Name: "cvr", Kind: mtl.KindESMM, Label: "conv", Parent: "ctr"}}
	ts, err := mtl.NewTaskSet(tasks)
	if err != nil {
		return nil, nil, nil, err
	}
	model, err := mmoe.New(mmoe.Config{Seed: seed}, tr.Layout(), []string{"ctr", "cvr"})
	if err != nil {
		return nil, nil, nil, err
	}
	if l := model.Layout(); len(l.Sparse) != Fields || len(l.Dense) != Dense || l.Sparse[0].Cardinality != Rows+1 {
		return nil, nil, nil, fmt.Errorf("stdwork: the std spec has %d sparse fields of %d rows and %d dense, want %d of %d and %d",
			len(l.Sparse), l.Sparse[0].Cardinality, len(l.Dense), Fields, Rows+1, Dense)
	}
	m := &bundle.Manifest{Spec: Spec(), Model: model.Config(), Tasks: ts.Configs(), Objectives: ts.Objectives()}
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	for range 8 {
		ev := appendObject(nil, r, 0, Fields+Dense)
		m.Sample = append(m.Sample, bundle.SampleEvent{Event: ev})
	}
	return m, model, ts, nil
}

// appendObject appends a JSON object with the std fields [lo, hi) of the
// order c0..c25, d0..d12 (0-12 context categoricals, 13-25 candidate
// categoricals, 26-38 numeric).
func appendObject(b []byte, r *rand.Rand, lo, hi int) []byte {
	b = append(b, '{')
	b = appendMembers(b, r, lo, hi)
	return append(b, '}')
}

func appendMembers(b []byte, r *rand.Rand, lo, hi int) []byte {
	for i := lo; i < hi; i++ {
		if i > lo {
			b = append(b, ',')
		}
		if i < Fields {
			b = append(b, `"c`...)
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, `":`...)
			// Skewed ids, as real ids are.
			b = strconv.AppendInt(b, int64(r.ExpFloat64()*float64(1000*(i+1))), 10)
		} else {
			b = append(b, `"d`...)
			b = strconv.AppendInt(b, int64(i-Fields), 10)
			b = append(b, `":`...)
			b = strconv.AppendFloat(b, r.ExpFloat64()*10, 'g', 6, 64)
		}
	}
	return b
}

// Request returns a score request body of the std workload: one context
// (c0..c12, d0..d12) and n candidates (c13..c25), with random values from
// r and the given extra top-level members (e.g. `"top_k":50`, or "").
func Request(r *rand.Rand, n int, extra string) []byte {
	b := []byte(`{"context":{`)
	b = appendMembers(b, r, 0, Fields/2)
	b = append(b, ',')
	b = appendMembers(b, r, Fields, Fields+Dense)
	b = append(b, `},"candidates":[`...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendObject(b, r, Fields/2, Fields)
	}
	b = append(b, ']')
	if extra != "" {
		b = append(b, ',')
		b = append(b, extra...)
	}
	return append(b, '}')
}

// NewBatch makes a random std training batch of n rows, as the transform
// would produce it: ids uniform over the buckets, dense features N(0,1),
// clicks at 5%, conversions at 20% of clicks.
func NewBatch(rng *rand.Rand, n int) *features.Batch {
	b := &features.Batch{Rows: n, DenseWidth: Dense, Dense: make([]float32, n*Dense)}
	for range Fields {
		ids := make([]int32, n)
		for i := range ids {
			ids[i] = 1 + int32(rng.IntN(Rows))
		}
		b.Sparse = append(b.Sparse, features.SparseColumn{IDs: ids})
	}
	for i := range b.Dense {
		b.Dense[i] = float32(rng.NormFloat64())
	}
	click, conv := make([]float32, n), make([]float32, n)
	for i := range click {
		if rng.Float64() < 0.05 {
			click[i] = 1
			if rng.Float64() < 0.2 {
				conv[i] = 1
			}
		}
	}
	b.Labels = [][]float32{click, conv}
	return b
}
