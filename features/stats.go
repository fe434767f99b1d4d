package features

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/onestone/onestone/internal/fileutil"
)

// StatsVersion is the format version written in stats files.
const StatsVersion = 1

// DefaultQuantileSample is the default FitConfig.QuantileSample.
const DefaultQuantileSample = 200000

// Stats are the statistics fitted on training data in one pass, as the
// transforms of a spec need them. Stats marshal to JSON (the stats file
// written beside the spec, and part of a model bundle). A Stats is not
// modified by this package after Finish or LoadStats and is safe for
// concurrent reads.
type Stats struct {
	Version int `json:"version"`
	// Rows is the number of rows fitted.
	Rows int64 `json:"rows"`
	// Seed and QuantileSample are the FitConfig the stats were fitted with.
	Seed           uint64 `json:"seed"`
	QuantileSample int    `json:"quantile_sample"`
	// Fields holds the statistics of each spec field, by name.
	Fields map[string]*FieldStats `json:"fields"`
	// Labels holds the statistics of each label column, by column name,
	// when the fitted records held labels.
	Labels map[string]*LabelStats `json:"labels,omitempty"`
}

// FieldStats are the statistics of one field.
type FieldStats struct {
	Kind Kind `json:"kind"`
	// Nulls counts rows whose value is missing: null (or NaN/Inf for
	// numeric fields); for multi_categorical, null lists.
	Nulls int64 `json:"nulls"`
	// Values counts the values seen (for multi_categorical, the non-null
	// list items; for numeric, the finite values; for vector, the
	// vectors that are not missing).
	Values int64 `json:"values"`
	// Numeric is set for numeric fields, and for vector fields (the
	// statistics of all their items).
	Numeric *NumericStats `json:"numeric,omitempty"`
	// Vector is set for vector fields: the statistics of each dimension.
	Vector *VectorStats `json:"vector,omitempty"`
	// Vocab is set for fields in vocabulary mode.
	Vocab *VocabStats `json:"vocab,omitempty"`
	// Boundaries are set for bucketized fields: strictly increasing quantile
	// boundaries; a value x gets id 1 + (number of boundaries <= x).
	Boundaries []float64 `json:"boundaries,omitempty"`
	// Sampled is the number of values the boundaries were computed from
	// (bucketized fields; at most FitConfig.QuantileSample).
	Sampled int `json:"sampled,omitempty"`
}

// NumericStats summarise the finite values of a numeric field.
type NumericStats struct {
	Mean float64 `json:"mean"`
	// Std is the population standard deviation (Welford's algorithm).
	Std float64 `json:"std"`
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// VocabStats is a fitted vocabulary: Values[i] has id i+1.
type VocabStats struct {
	// Values in id order: by descending count, ties by ascending value.
	Values []string `json:"values"`
	// Counts[i] is the number of times Values[i] was seen.
	Counts []int64 `json:"counts"`
	// Distinct is the number of distinct values seen before min_count and
	// max_size were applied.
	Distinct int64 `json:"distinct"`
}

// LabelStats summarise a label column.
type LabelStats struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"` // positive rate for binary labels
}

// LoadStats reads a stats file.
func LoadStats(path string) (*Stats, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("features: read stats: %w", err)
	}
	var s Stats
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, errorf(ErrStats, "features: stats %s: %v", path, err)
	}
	if s.Version != StatsVersion {
		return nil, errorf(ErrStats, "features: stats %s: version %d, want %d", path, s.Version, StatsVersion)
	}
	for name, f := range s.Fields {
		if f == nil {
			return nil, errorf(ErrStats, "features: stats %s: field %q: null", path, name)
		}
		if f.Vector != nil && len(f.Vector.Mean) != len(f.Vector.Std) {
			return nil, errorf(ErrStats, "features: stats %s: field %q: %d vector means but %d stds", path, name, len(f.Vector.Mean), len(f.Vector.Std))
		}
		if f.Vocab != nil && len(f.Vocab.Values) != len(f.Vocab.Counts) {
			return nil, errorf(ErrStats, "features: stats %s: field %q: %d vocab values but %d counts", path, name, len(f.Vocab.Values), len(f.Vocab.Counts))
		}
		for i := 1; i < len(f.Boundaries); i++ {
			if !(f.Boundaries[i-1] < f.Boundaries[i]) {
				return nil, errorf(ErrStats, "features: stats %s: field %q: boundaries not strictly increasing at %d", path, name, i)
			}
		}
	}
	return &s, nil
}

// Save writes the stats as indented JSON to path atomically and durably
// (internal/fileutil.WriteFile: a temporary file in the same directory,
// fsynced, renamed over path, the directory fsynced).
func (s *Stats) Save(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("features: encode stats: %w", err)
	}
	b = append(b, '\n')
	err = fileutil.WriteFile(path, 0o644, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
	if err != nil {
		return fmt.Errorf("features: save stats: %w", err)
	}
	return nil
}

// FitConfig configures a Fitter.
type FitConfig struct {
	// Seed seeds the reservoir sampling of bucketized fields. Default: 0.
	Seed uint64
	// QuantileSample is the reservoir size per bucketized field: boundaries
	// are exact quantiles of a uniform sample of at most this many values.
	// Default: DefaultQuantileSample (200000).
	QuantileSample int
}

// Validate reports whether the configuration is usable.
func (c FitConfig) Validate() error {
	if c.QuantileSample < 0 {
		return fmt.Errorf("features: FitConfig.QuantileSample %d is negative", c.QuantileSample)
	}
	return nil
}

// Fitter computes Stats in one streaming pass over record batches. Memory is
// bounded by the reservoirs (QuantileSample values per bucketized field) and
// the distinct values of vocabulary fields (counted exactly). A Fitter is
// not safe for concurrent use.
type Fitter struct {
	spec   *Spec
	cfg    FitConfig
	rng    *rand.Rand
	rows   int64
	fields []fieldFit
	labels []labelFit
	buf    []byte
}

type fieldFit struct {
	f        *Field
	nulls    int64
	values   int64
	mean, m2 float64
	min, max float64
	// vocabulary counting: index into counts, keys owned by the map
	index  map[string]int32
	keys   []string
	counts []int64
	// reservoir
	sample []float64
	seen   int64
	// vector fields
	vec *vectorFit
}

type labelFit struct {
	col   string
	kind  TaskKind
	count int64
	sum   float64
}

// NewFitter returns a Fitter for a valid spec.
func NewFitter(spec *Spec, cfg FitConfig) (*Fitter, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.QuantileSample == 0 {
		cfg.QuantileSample = DefaultQuantileSample
	}
	ft := &Fitter{spec: spec, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed))}
	for i := range spec.Fields {
		f := &spec.Fields[i]
		ff := fieldFit{f: f, min: math.Inf(1), max: math.Inf(-1)}
		if f.Vocab != nil {
			ff.index = map[string]int32{}
		}
		if f.Kind == Vector {
			ff.vec = newVectorFit(f)
		}
		ft.fields = append(ft.fields, ff)
	}
	seen := map[string]bool{}
	for _, t := range spec.Tasks {
		if !seen[t.Label] {
			seen[t.Label] = true
			ft.labels = append(ft.labels, labelFit{col: t.Label, kind: t.Kind})
		}
	}
	return ft, nil
}

// Add accumulates the rows of a record. The record must hold every field
// column; label columns, when present, are validated (as the Transformer
// does) and summarised; the sample weight, when present, is validated; a
// dense numeric value or vector item beyond float32's range, and a vector
// of another length than its dim, are refused. A row fault is a
// *RowError (the checks of NewChecker; a source can drop such rows first).
// After an error the Fitter holds part of the record: discard it.
func (ft *Fitter) Add(rec arrow.RecordBatch) error {
	n := int(rec.NumRows())
	for i := range ft.fields {
		ff := &ft.fields[i]
		a, err := recordColumn(rec, ff.f.Name)
		if err != nil {
			return err
		}
		switch ff.f.Kind {
		case Categorical:
			c, ok := makeTextCol(a, false)
			if !ok {
				return typeErr(ff.f.Name, wantCategorical, a.DataType())
			}
			for r := 0; r < n; r++ {
				if c.isNull(r) {
					ff.nulls++
					continue
				}
				ff.values++
				if ff.index != nil {
					ft.count(ff, &c, r)
				}
			}
		case MultiCategorical:
			c, ok := makeListCol(a)
			if !ok {
				return typeErr(ff.f.Name, wantMulti, a.DataType())
			}
			for r := 0; r < n; r++ {
				if c.nulls && c.arr.IsNull(r) {
					ff.nulls++
					continue
				}
				lo, hi := c.span(r)
				for j := lo; j < hi; j++ {
					if c.child.isNull(j) {
						continue
					}
					ff.values++
					if ff.index != nil {
						ft.count(ff, &c.child, j)
					}
				}
			}
		case Vector:
			if err := ff.addVector(rec, n); err != nil {
				return err
			}
		case Numeric:
			c, ok := makeNumCol(a)
			if !ok {
				return typeErr(ff.f.Name, wantNumeric, a.DataType())
			}
			bucketize := ff.f.Transform == TransformBucketize
			for r := 0; r < n; r++ {
				v, ok := c.value(r)
				if !ok || !finite(v) {
					ff.nulls++
					continue
				}
				if !bucketize && !fits32(v) {
					return rowErr(ff.f.Name, r, FaultRange, "%v is beyond float32's range", v)
				}
				ff.values++
				d := v - ff.mean
				ff.mean += d / float64(ff.values)
				ff.m2 += d * (v - ff.mean)
				ff.min = min(ff.min, v)
				ff.max = max(ff.max, v)
				if bucketize {
					ff.seen++
					if len(ff.sample) < ft.cfg.QuantileSample {
						ff.sample = append(ff.sample, v)
					} else if j := ft.rng.Int64N(ff.seen); j < int64(len(ff.sample)) {
						ff.sample[j] = v
					}
				}
			}
		}
	}
	for i := range ft.labels {
		l := &ft.labels[i]
		a, err := recordColumn(rec, l.col)
		if err != nil {
			continue // labels are optional when fitting
		}
		c, ok := makeNumCol(a)
		if !ok {
			return typeErr(l.col, "label "+wantNumeric, a.DataType())
		}
		for r := 0; r < n; r++ {
			v, err := labelValue(&c, r, l.col, l.kind)
			if err != nil {
				return err
			}
			l.count++
			l.sum += float64(v)
		}
	}
	if w := ft.spec.SampleWeight; w != "" {
		if a, err := recordColumn(rec, w); err == nil {
			c, ok := makeNumCol(a)
			if !ok {
				return typeErr(w, "sample weight "+wantNumeric, a.DataType())
			}
			for r := 0; r < n; r++ {
				if _, err := weightValue(&c, r, w); err != nil {
					return err
				}
			}
		}
	}
	if g := ft.spec.GroupKey; g != "" {
		if a, err := recordColumn(rec, g); err == nil {
			if _, ok := makeTextCol(a, true); !ok {
				return typeErr(g, "group key "+wantCategorical, a.DataType())
			}
		}
	}
	ft.rows += int64(n)
	return nil
}

func (ft *Fitter) count(ff *fieldFit, c *textCol, r int) {
	s, b := c.text(r, ft.buf[:0])
	var k int32
	var ok bool
	if b != nil {
		ft.buf = b
		k, ok = ff.index[string(b)]
		if !ok {
			s = string(b)
		}
	} else {
		k, ok = ff.index[s]
		if !ok {
			s = strings.Clone(s) // s aliases the record's buffer
		}
	}
	if !ok {
		k = int32(len(ff.keys))
		ff.index[s] = k
		ff.keys = append(ff.keys, s)
		ff.counts = append(ff.counts, 0)
	}
	ff.counts[k]++
}

// Finish returns the statistics of all rows added. The Fitter must not be
// used afterwards.
func (ft *Fitter) Finish() (*Stats, error) {
	st := &Stats{
		Version:        StatsVersion,
		Rows:           ft.rows,
		Seed:           ft.cfg.Seed,
		QuantileSample: ft.cfg.QuantileSample,
		Fields:         make(map[string]*FieldStats, len(ft.fields)),
	}
	for i := range ft.fields {
		ff := &ft.fields[i]
		fs := &FieldStats{Kind: ff.f.Kind, Nulls: ff.nulls, Values: ff.values}
		switch {
		case ff.f.Kind == Numeric:
			ns := &NumericStats{Mean: ff.mean}
			if ff.values > 0 {
				ns.Std = math.Sqrt(ff.m2 / float64(ff.values))
				ns.Min, ns.Max = ff.min, ff.max
			}
			if !finite(ns.Mean) || !finite(ns.Std) {
				return nil, errorf(ErrStats, "features: field %q: mean or std overflows float64 (values too large)", ff.f.Name)
			}
			fs.Numeric = ns
			if ff.f.Transform == TransformBucketize {
				fs.Boundaries = quantileBoundaries(ff.sample, ff.f.Buckets)
				fs.Sampled = len(ff.sample)
			}
		case ff.f.Vocab != nil:
			fs.Vocab = buildVocab(ff.keys, ff.counts, *ff.f.Vocab)
		case ff.vec != nil:
			if err := ff.finishVector(fs); err != nil {
				return nil, err
			}
		}
		st.Fields[ff.f.Name] = fs
	}
	for _, l := range ft.labels {
		if l.count == 0 {
			continue
		}
		if st.Labels == nil {
			st.Labels = map[string]*LabelStats{}
		}
		st.Labels[l.col] = &LabelStats{Count: l.count, Mean: l.sum / float64(l.count)}
	}
	return st, nil
}

// quantileBoundaries returns the strictly increasing values sample[k*n/B]
// (k = 1..B-1) of the sorted sample: at most B-1 boundaries, fewer when
// values repeat.
func quantileBoundaries(sample []float64, buckets int) []float64 {
	slices.Sort(sample)
	n := len(sample)
	out := []float64{}
	if n == 0 {
		return out
	}
	for k := 1; k < buckets; k++ {
		v := sample[int(int64(k)*int64(n)/int64(buckets))]
		if v == sample[0] {
			continue // a boundary at the minimum would leave bucket 1 empty
		}
		if len(out) == 0 || v > out[len(out)-1] {
			out = append(out, v)
		}
	}
	return out
}

func buildVocab(keys []string, counts []int64, cfg Vocab) *VocabStats {
	idx := make([]int, 0, len(keys))
	for i := range keys {
		if counts[i] >= cfg.MinCount {
			idx = append(idx, i)
		}
	}
	slices.SortFunc(idx, func(a, b int) int {
		if c := cmp.Compare(counts[b], counts[a]); c != 0 {
			return c
		}
		return strings.Compare(keys[a], keys[b])
	})
	if cfg.MaxSize > 0 && len(idx) > cfg.MaxSize {
		idx = idx[:cfg.MaxSize]
	}
	v := &VocabStats{Values: make([]string, len(idx)), Counts: make([]int64, len(idx)), Distinct: int64(len(keys))}
	for j, i := range idx {
		v.Values[j] = keys[i]
		v.Counts[j] = counts[i]
	}
	return v
}
