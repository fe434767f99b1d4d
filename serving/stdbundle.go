package serving

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
)

// StdSpec returns the feature spec of the standard benchmark workload
// (docs: BENCHMARKS.md): 26 categorical fields c0..c25 hashed into 100,000
// buckets (c0-c12 context, c13-c25 candidate), 13 numeric context fields
// d0..d12 (log1p, no missing indicator), tasks ctr (label click) and cvr
// (esmm over ctr, label conv).
func StdSpec() string {
	var b strings.Builder
	b.WriteString("fields:\n")
	for i := range 26 {
		side := "context"
		if i >= 13 {
			side = "candidate"
		}
		fmt.Fprintf(&b, "  - {name: c%d, kind: categorical, buckets: 100000, side: %s}\n", i, side)
	}
	for i := range 13 {
		fmt.Fprintf(&b, "  - {name: d%d, kind: numeric, transform: log1p, missing_indicator: false}\n", i)
	}
	b.WriteString("tasks:\n  - {name: ctr, kind: binary, label: click}\n  - {name: cvr, kind: esmm, label: conv, parent: ctr}\n")
	return b.String()
}

// StdManifest returns a manifest and a randomly initialised model (weights
// from seed) of the standard workload: embedding dim 16, 8 experts [256,
// 128], towers [64], with 8 random sample events. It is for load tests and
// benchmarks of the serving path, where trained weights do not matter.
func StdManifest(seed uint64) (*Manifest, *mmoe.Model, error) {
	spec, err := features.ParseSpec(strings.NewReader(StdSpec()))
	if err != nil {
		return nil, nil, err
	}
	tr, err := features.NewTransformer(spec, nil, features.TransformerConfig{})
	if err != nil {
		return nil, nil, err
	}
	tasks := []mtl.TaskConfig{{Name: "ctr", Kind: mtl.KindBinary, Label: "click"}, {Name: "cvr", Kind: mtl.KindESMM, Label: "conv", Parent: "ctr"}}
	ts, err := mtl.NewTaskSet(tasks)
	if err != nil {
		return nil, nil, err
	}
	model, err := mmoe.New(mmoe.Config{Seed: seed}, tr.Layout(), []string{"ctr", "cvr"})
	if err != nil {
		return nil, nil, err
	}
	m := &Manifest{Spec: StdSpec(), Model: model.Config(), Tasks: ts.Configs(), Objectives: ts.Objectives()}
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	for range 8 {
		ev := stdAppend(nil, r, 0, 39)
		m.Sample = append(m.Sample, SampleEvent{Event: ev})
	}
	return m, model, nil
}

// stdAppend appends a JSON object with the std fields [lo, hi) of the
// order c0..c25, d0..d12 (0-12 context categoricals, 13-25 candidate
// categoricals, 26-38 numeric).
func stdAppend(b []byte, r *rand.Rand, lo, hi int) []byte {
	b = append(b, '{')
	b = stdMembers(b, r, lo, hi)
	return append(b, '}')
}

func stdMembers(b []byte, r *rand.Rand, lo, hi int) []byte {
	for i := lo; i < hi; i++ {
		if i > lo {
			b = append(b, ',')
		}
		if i < 26 {
			b = append(b, `"c`...)
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, `":`...)
			// Skewed ids, as real ids are.
			b = strconv.AppendInt(b, int64(r.ExpFloat64()*float64(1000*(i+1))), 10)
		} else {
			b = append(b, `"d`...)
			b = strconv.AppendInt(b, int64(i-26), 10)
			b = append(b, `":`...)
			b = strconv.AppendFloat(b, r.ExpFloat64()*10, 'g', 6, 64)
		}
	}
	return b
}

// StdRequest returns a score request body of the standard workload: one
// context (c0..c12, d0..d12) and n candidates (c13..c25), with random
// values from r and the given extra top-level members (e.g. `"top_k":50`,
// or "").
func StdRequest(r *rand.Rand, n int, extra string) []byte {
	b := []byte(`{"context":{`)
	b = stdMembers(b, r, 0, 13)
	b = append(b, ',')
	b = stdMembers(b, r, 26, 39)
	b = append(b, `},"candidates":[`...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = stdAppend(b, r, 13, 26)
	}
	b = append(b, ']')
	if extra != "" {
		b = append(b, ',')
		b = append(b, extra...)
	}
	return append(b, '}')
}

// NewBundle builds a Bundle from a manifest and a model in memory (no
// files): what LoadBundle does after reading them, including the sample
// check. Dir is set to "(memory)". A trainer can serve a model it holds
// this way; the model must not be trained further while it is served.
func NewBundle(m *Manifest, model *mmoe.Model) (*Bundle, error) {
	b, err := assemble("(memory)", m)
	if err != nil {
		return nil, err
	}
	b.Model = model
	if err := b.checkSample(); err != nil {
		return nil, err
	}
	return b, nil
}
