package features

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"go.yaml.in/yaml/v3"
)

// Sentinel errors. Errors returned by this package wrap one of them where a
// caller may want to branch on the cause.
var (
	// ErrSpec: the feature spec is malformed or inconsistent.
	ErrSpec = errors.New("features: invalid spec")
	// ErrSchema: a record lacks a column the spec needs, or a column has a
	// type the field cannot take.
	ErrSchema = errors.New("features: schema mismatch")
	// ErrValue: a value is invalid where no default applies (a null or
	// out-of-range label, a null or negative sample weight).
	ErrValue = errors.New("features: invalid value")
	// ErrStats: the fitted statistics are missing something the spec needs,
	// or the stats file is malformed.
	ErrStats = errors.New("features: invalid stats")
)

// kindError is an error with its own message that unwraps to a sentinel.
type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func errorf(kind error, format string, args ...any) error {
	return &kindError{msg: fmt.Sprintf(format, args...), kind: kind}
}

// Kind is the kind of a feature field.
type Kind string

// Field kinds.
const (
	// Categorical: one value per row, hashed into buckets or looked up in a
	// fitted vocabulary; becomes a sparse (embedding) field.
	Categorical Kind = "categorical"
	// MultiCategorical: a list of values per row, pooled (mean or sum).
	MultiCategorical Kind = "multi_categorical"
	// Numeric: a number; a dense column, or a sparse field when bucketized.
	Numeric Kind = "numeric"
	// Vector: a fixed-length list of numbers (a pretrained embedding);
	// Dim dense columns, standardised as Normalize says (see vector.go).
	Vector Kind = "vector"
)

// Transform is the transform of a numeric field.
type Transform string

// Numeric transforms.
const (
	// TransformNone passes the value through.
	TransformNone Transform = "none"
	// TransformLog1p maps x to sign(x)*log1p(|x|) (log1p(x) for x >= 0).
	TransformLog1p Transform = "log1p"
	// TransformStandardize maps x to (x-mean)/std with fitted mean and std
	// (std 0 is treated as 1).
	TransformStandardize Transform = "standardize"
	// TransformBucketize maps x to a bucket id from fitted quantile
	// boundaries: 1 + the number of boundaries <= x; 0 for null/NaN.
	TransformBucketize Transform = "bucketize"
)

// TaskKind is the kind of a training objective.
type TaskKind string

// Task kinds.
const (
	// TaskBinary: a 0/1 label, logistic loss.
	TaskBinary TaskKind = "binary"
	// TaskESMM: entire-space multi-task model: the task's probability is
	// multiplied by its parent's, and the product is trained against the
	// label (e.g. click-and-convert) over all impressions.
	TaskESMM TaskKind = "esmm"
	// TaskRegression: a real-valued label, squared error.
	TaskRegression TaskKind = "regression"
)

// Vocab configures a fitted vocabulary.
type Vocab struct {
	// MinCount drops values seen fewer times. Default: 1.
	MinCount int64 `json:"min_count"`
	// MaxSize keeps at most this many values (the most frequent). Default: 0,
	// no limit.
	MaxSize int `json:"max_size,omitempty"`
}

// Field is one input feature of the spec.
type Field struct {
	// Name is the column name in the events.
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Buckets: hash buckets of a categorical or multi-categorical field in
	// hash mode (ids 1..Buckets, 0 = null), or the number of quantile
	// buckets of a bucketized numeric field. 0 when unused.
	Buckets int `json:"buckets,omitempty"`
	// Vocab is set for a categorical or multi-categorical field in
	// vocabulary mode.
	Vocab *Vocab `json:"vocab,omitempty"`
	// Exact is set for a categorical or multi-categorical field with an
	// exact table: an id → row map with admission and eviction (see
	// Exact and IDTable).
	Exact *Exact `json:"exact,omitempty"`
	// Side is SideContext (default) or SideCandidate.
	Side Side `json:"side"`
	// Pooling of a multi-categorical field: PoolMean (default) or PoolSum;
	// PoolNone for other kinds.
	Pooling Pooling `json:"pooling"`
	// Transform of a numeric field. Default: TransformNone.
	Transform Transform `json:"transform,omitempty"`
	// MissingIndicator adds a dense column "<name>.missing" for a numeric,
	// non-bucketized field or a vector field. Default: true.
	MissingIndicator bool `json:"missing_indicator"`
	// Default is the value (after the transform) used for null, NaN and Inf.
	// Default: 0 (for standardize, 0 is the mean).
	Default float64 `json:"default"`
	// Dim is the length of every value of a vector field; 0 for other kinds.
	Dim int `json:"dim,omitempty"`
	// Normalize is the standardisation of a vector field: NormalizeNone
	// (default), NormalizePerDim or NormalizeGlobal; "" for other kinds.
	Normalize Normalize `json:"normalize,omitempty"`
	// Line is the line of the field in the spec's YAML text (0 if unknown).
	Line int `json:"-"`
}

// Sparse reports whether the field becomes a sparse (embedding) input.
func (f *Field) Sparse() bool {
	switch f.Kind {
	case Numeric:
		return f.Transform == TransformBucketize
	case Vector:
		return false
	}
	return true
}

// Task is one training objective. Beyond its label (and mask) column,
// this package only parses a task's keys; package mtl gives them their
// meaning (mtl.TaskConfig documents each).
type Task struct {
	Name  string   `json:"name"`
	Kind  TaskKind `json:"kind"`
	Label string   `json:"label"` // label column
	// Parent names the previous step of the funnel: the binary or esmm
	// task an esmm task's probability is multiplied with, or the binary
	// task before a binary one (AITM's chain).
	Parent string `json:"parent,omitempty"`
	// Mask names the column whose non-zero rows are the task's sample
	// space: another task's label or any numeric or bool column. Training
	// batches carry it among the labels (Layout.Labels), as 1 where it is
	// non-zero and 0 where it is zero or null.
	Mask string `json:"mask,omitempty"`
	// Counterfactual, CounterfactualWeight and IPWClip configure ESCM²'s
	// counterfactual risk of an esmm task; CalibratorWeight AITM's
	// calibrator of a binary task with a parent (see mtl.TaskConfig).
	Counterfactual       string  `json:"counterfactual,omitempty"`
	CounterfactualWeight float64 `json:"counterfactual_weight,omitempty"`
	IPWClip              float64 `json:"ipw_clip,omitempty"`
	CalibratorWeight     float64 `json:"calibrator_weight,omitempty"`
}

// Spec is a parsed feature spec: the fields, tasks, group key and sample
// weight sections of a spec file (see docs/spec.md). A Spec is not modified
// by this package after parsing and is safe for concurrent reads.
type Spec struct {
	Fields []Field `json:"fields"`
	Tasks  []Task  `json:"tasks"`
	// GroupKey is the column whose hashed value groups rows for GAUC; "" for none.
	GroupKey string `json:"group_key,omitempty"`
	// SampleWeight is the numeric column holding per-row weights; "" for none.
	SampleWeight string `json:"sample_weight,omitempty"`
}

// maxBuckets keeps ids within int32.
const maxBuckets = math.MaxInt32 - 1

// StatsPath returns the path of the fitted statistics of a spec file: the
// spec's path with its extension replaced by ".stats.json"
// ("conf/spec.yaml" -> "conf/spec.stats.json").
func StatsPath(specPath string) string {
	ext := filepath.Ext(specPath)
	return strings.TrimSuffix(specPath, ext) + ".stats.json"
}

// LoadSpec reads and parses a spec file.
func LoadSpec(path string) (*Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("features: read spec: %w", err)
	}
	s, err := ParseSpec(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ParseSpec parses a YAML spec strictly: unknown keys, unknown kinds,
// duplicate names, a missing task and inconsistent settings are errors that
// name the field and its line, and wrap ErrSpec. The top-level sections
// "model", "train" and "join" belong to other packages and are skipped.
func ParseSpec(r io.Reader) (*Spec, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(r)
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, errorf(ErrSpec, "features: spec: empty document")
		}
		return nil, errorf(ErrSpec, "features: spec: %v", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, errorf(ErrSpec, "features: spec: want one YAML document, found more")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) != 1 {
			return nil, errorf(ErrSpec, "features: spec: empty document")
		}
		root = root.Content[0]
	}
	root = deref(root)
	if root.Kind != yaml.MappingNode {
		return nil, errorf(ErrSpec, "features: spec line %d: want a mapping at the top level, found %s", root.Line, nodeKind(root))
	}
	s := &Spec{}
	var fieldsNode, tasksNode *yaml.Node
	err := eachPair(root, "spec", func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "fields":
			fieldsNode = v
		case "tasks":
			tasksNode = v
		case "group_key":
			s.GroupKey, err = scalarString(v, "group_key")
		case "sample_weight":
			s.SampleWeight, err = scalarString(v, "sample_weight")
		case "model", "train", "join":
			// parsed by mmoe, mtl/pipelines and ingest/join
		default:
			err = errorf(ErrSpec, "features: spec line %d: unknown top-level key %q (want fields, tasks, group_key, sample_weight, model, train, join)", k.Line, key)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if fieldsNode == nil {
		return nil, errorf(ErrSpec, "features: spec: no fields")
	}
	if tasksNode == nil {
		return nil, errorf(ErrSpec, "features: spec: no tasks (want at least one)")
	}
	if err := parseSeq(fieldsNode, "fields", func(n *yaml.Node) error {
		f, err := parseField(n)
		if err != nil {
			return err
		}
		s.Fields = append(s.Fields, f)
		return nil
	}); err != nil {
		return nil, err
	}
	if err := parseSeq(tasksNode, "tasks", func(n *yaml.Node) error {
		t, err := parseTask(n)
		if err != nil {
			return err
		}
		s.Tasks = append(s.Tasks, t)
		return nil
	}); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "an empty document"
}

// eachPair calls fn for each key of a mapping node, rejecting duplicate keys.
func eachPair(m *yaml.Node, where string, fn func(key string, k, v *yaml.Node) error) error {
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := deref(m.Content[i]), deref(m.Content[i+1])
		if k == nil || k.Kind != yaml.ScalarNode {
			return errorf(ErrSpec, "features: spec line %d: %s: want a plain key", m.Line, where)
		}
		if seen[k.Value] {
			return errorf(ErrSpec, "features: spec line %d: %s: duplicate key %q", k.Line, where, k.Value)
		}
		seen[k.Value] = true
		if v == nil {
			return errorf(ErrSpec, "features: spec line %d: %s: key %q has no value", k.Line, where, k.Value)
		}
		if err := fn(k.Value, k, v); err != nil {
			return err
		}
	}
	return nil
}

func parseSeq(n *yaml.Node, what string, fn func(*yaml.Node) error) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return errorf(ErrSpec, "features: spec line %d: %s: want a list, found %s", n.Line, what, nodeKind(n))
	}
	for _, c := range n.Content {
		if err := fn(deref(c)); err != nil {
			return err
		}
	}
	return nil
}

func scalarString(v *yaml.Node, what string) (string, error) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		return "", errorf(ErrSpec, "features: spec line %d: %s: want a string, found %s", v.Line, what, nodeKind(v))
	}
	return v.Value, nil
}

func scalarInt(v *yaml.Node, what string) (int64, error) {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!int" {
		return 0, errorf(ErrSpec, "features: spec line %d: %s: want an integer, found %s", v.Line, what, nodeKind(v))
	}
	var x int64
	if err := v.Decode(&x); err != nil {
		return 0, errorf(ErrSpec, "features: spec line %d: %s: %q is not a 64-bit integer", v.Line, what, v.Value)
	}
	return x, nil
}

func scalarFloat(v *yaml.Node, what string) (float64, error) {
	if v.Kind != yaml.ScalarNode || (v.Tag != "!!int" && v.Tag != "!!float") {
		return 0, errorf(ErrSpec, "features: spec line %d: %s: want a number, found %s", v.Line, what, nodeKind(v))
	}
	var x float64
	if err := v.Decode(&x); err != nil {
		return 0, errorf(ErrSpec, "features: spec line %d: %s: %q is not a number", v.Line, what, v.Value)
	}
	return x, nil
}

func scalarBool(v *yaml.Node, what string) (bool, error) {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" {
		return false, errorf(ErrSpec, "features: spec line %d: %s: want true or false, found %s", v.Line, what, nodeKind(v))
	}
	var x bool
	if err := v.Decode(&x); err != nil {
		return false, errorf(ErrSpec, "features: spec line %d: %s: %q is not a bool", v.Line, what, v.Value)
	}
	return x, nil
}

func parseField(n *yaml.Node) (Field, error) {
	f := Field{Line: n.Line, MissingIndicator: true}
	if n.Kind != yaml.MappingNode {
		return f, errorf(ErrSpec, "features: spec line %d: fields: want a mapping per field, found %s", n.Line, nodeKind(n))
	}
	// Find the name first so every later error can name the field.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := deref(n.Content[i]); k != nil && k.Value == "name" {
			if v := deref(n.Content[i+1]); v != nil && v.Kind == yaml.ScalarNode {
				f.Name = v.Value
			}
		}
	}
	where := fmt.Sprintf("field %q", f.Name)
	if f.Name == "" {
		where = "field"
	}
	bad := func(line int, format string, args ...any) error {
		return errorf(ErrSpec, "features: spec line %d: %s: %s", line, where, fmt.Sprintf(format, args...))
	}
	set := map[string]int{} // key -> line
	var order []string
	var kindLine int
	err := eachPair(n, where, func(key string, k, v *yaml.Node) error {
		set[key] = k.Line
		order = append(order, key)
		var err error
		switch key {
		case "name":
			f.Name, err = scalarString(v, where+": name")
		case "kind":
			var s string
			s, err = scalarString(v, where+": kind")
			kindLine = v.Line
			f.Kind = Kind(s)
		case "buckets":
			var b int64
			b, err = scalarInt(v, where+": buckets")
			if err == nil && (b <= 0 || b > maxBuckets) {
				err = bad(v.Line, "buckets must be in [1, %d], found %d", maxBuckets, b)
			}
			f.Buckets = int(b)
		case "vocab":
			f.Vocab, err = parseVocab(v, where)
		case "exact":
			f.Exact, err = parseExact(v, where)
		case "side":
			var s string
			s, err = scalarString(v, where+": side")
			if err == nil {
				if e := f.Side.UnmarshalText([]byte(s)); e != nil {
					err = bad(v.Line, "unknown side %q (want context or candidate)", s)
				}
			}
		case "pooling":
			var s string
			s, err = scalarString(v, where+": pooling")
			if err == nil {
				switch s {
				case "mean":
					f.Pooling = PoolMean
				case "sum":
					f.Pooling = PoolSum
				default:
					err = bad(v.Line, "unknown pooling %q (want mean or sum)", s)
				}
			}
		case "transform":
			var s string
			s, err = scalarString(v, where+": transform")
			f.Transform = Transform(s)
			if err == nil {
				switch f.Transform {
				case TransformNone, TransformLog1p, TransformStandardize, TransformBucketize:
				default:
					err = bad(v.Line, "unknown transform %q (want none, log1p, standardize or bucketize)", s)
				}
			}
		case "missing_indicator":
			f.MissingIndicator, err = scalarBool(v, where+": missing_indicator")
		case "default":
			f.Default, err = scalarFloat(v, where+": default")
			if err == nil && (math.IsNaN(f.Default) || math.IsInf(f.Default, 0)) {
				err = bad(v.Line, "default must be finite, found %v", f.Default)
			}
		case "dim":
			f.Dim, err = parseDim(v, where)
		case "normalize":
			f.Normalize, err = parseNormalize(v, where)
		default:
			err = bad(k.Line, "unknown key %q", key)
		}
		return err
	})
	if err != nil {
		return f, err
	}
	if f.Name == "" {
		return f, bad(n.Line, "missing name")
	}
	// Keys allowed per kind.
	allowed := map[Kind][]string{
		Categorical:      {"name", "kind", "buckets", "vocab", "exact", "side"},
		MultiCategorical: {"name", "kind", "buckets", "vocab", "exact", "side", "pooling"},
		Numeric:          {"name", "kind", "buckets", "side", "transform", "missing_indicator", "default"},
		Vector:           {"name", "kind", "dim", "normalize", "side", "missing_indicator"},
	}
	keys, ok := allowed[f.Kind]
	if !ok {
		if _, has := set["kind"]; !has {
			return f, bad(n.Line, "missing kind (want categorical, multi_categorical, numeric or vector)")
		}
		return f, bad(kindLine, "unknown kind %q (want categorical, multi_categorical, numeric or vector)", f.Kind)
	}
	for _, key := range order {
		if !contains(keys, key) {
			return f, bad(set[key], "key %q does not apply to a %s field", key, f.Kind)
		}
	}
	switch f.Kind {
	case Categorical, MultiCategorical:
		if f.Kind == MultiCategorical && f.Pooling == PoolNone {
			f.Pooling = PoolMean
		}
		if modes(&f) != 1 {
			return f, bad(n.Line, "want exactly one of buckets (hash mode), vocab (vocabulary mode) or exact (exact table)")
		}
	case Numeric:
		if f.Transform == "" {
			f.Transform = TransformNone
		}
		if f.Transform == TransformBucketize {
			if f.Buckets == 0 {
				return f, bad(n.Line, "bucketize needs buckets (the number of quantile buckets)")
			}
			if l, has := set["missing_indicator"]; has {
				return f, bad(l, "missing_indicator does not apply to a bucketized field (null and NaN map to id 0)")
			}
			if l, has := set["default"]; has {
				return f, bad(l, "default does not apply to a bucketized field (null and NaN map to id 0)")
			}
			f.MissingIndicator = false
		} else if l, has := set["buckets"]; has {
			return f, bad(l, "buckets applies to a numeric field only with transform: bucketize")
		}
	case Vector:
		if f.Dim == 0 {
			return f, bad(n.Line, "a vector field needs dim (the length of its values)")
		}
		if f.Normalize == "" {
			f.Normalize = NormalizeNone
		}
	}
	return f, nil
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func parseVocab(v *yaml.Node, where string) (*Vocab, error) {
	if v.Kind != yaml.MappingNode {
		return nil, errorf(ErrSpec, "features: spec line %d: %s: vocab: want a mapping ({min_count: N, max_size: N}), found %s", v.Line, where, nodeKind(v))
	}
	voc := &Vocab{MinCount: 1}
	err := eachPair(v, where+": vocab", func(key string, k, val *yaml.Node) error {
		switch key {
		case "min_count":
			x, err := scalarInt(val, where+": vocab: min_count")
			if err != nil {
				return err
			}
			if x < 1 {
				return errorf(ErrSpec, "features: spec line %d: %s: vocab: min_count must be >= 1, found %d", val.Line, where, x)
			}
			voc.MinCount = x
		case "max_size":
			x, err := scalarInt(val, where+": vocab: max_size")
			if err != nil {
				return err
			}
			if x < 0 || x > maxBuckets {
				return errorf(ErrSpec, "features: spec line %d: %s: vocab: max_size must be in [0, %d] (0 = no limit), found %d", val.Line, where, maxBuckets, x)
			}
			voc.MaxSize = int(x)
		default:
			return errorf(ErrSpec, "features: spec line %d: %s: vocab: unknown key %q (want min_count, max_size)", k.Line, where, key)
		}
		return nil
	})
	return voc, err
}

func parseTask(n *yaml.Node) (Task, error) {
	var t Task
	if n.Kind != yaml.MappingNode {
		return t, errorf(ErrSpec, "features: spec line %d: tasks: want a mapping per task, found %s", n.Line, nodeKind(n))
	}
	err := eachPair(n, "task", func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "name":
			t.Name, err = scalarString(v, "task: name")
		case "kind":
			var s string
			s, err = scalarString(v, "task: kind")
			t.Kind = TaskKind(s)
		case "label":
			t.Label, err = scalarString(v, "task: label")
		case "parent":
			t.Parent, err = scalarString(v, "task: parent")
		case "mask":
			t.Mask, err = scalarString(v, "task: mask")
		case "counterfactual":
			t.Counterfactual, err = scalarString(v, "task: counterfactual")
		case "counterfactual_weight":
			t.CounterfactualWeight, err = scalarFloat(v, "task: counterfactual_weight")
		case "ipw_clip":
			t.IPWClip, err = scalarFloat(v, "task: ipw_clip")
		case "calibrator_weight":
			t.CalibratorWeight, err = scalarFloat(v, "task: calibrator_weight")
		default:
			err = errorf(ErrSpec, "features: spec line %d: task: unknown key %q (want name, kind, label, parent, mask, counterfactual, counterfactual_weight, ipw_clip, calibrator_weight)", k.Line, key)
		}
		return err
	})
	if err != nil {
		return t, err
	}
	if t.Name == "" {
		return t, errorf(ErrSpec, "features: spec line %d: task: missing name", n.Line)
	}
	return t, nil
}

// Validate checks the cross-field rules of a spec: unique names, kinds and
// transforms known, bucket counts in range, tasks with labels, ESMM parents
// that are binary tasks, no label used as an input. ParseSpec calls it; call
// it yourself on a Spec built in code or decoded from JSON.
func (s *Spec) Validate() error {
	if s == nil {
		return errorf(ErrSpec, "features: spec: nil")
	}
	if len(s.Fields) == 0 {
		return errorf(ErrSpec, "features: spec: no fields")
	}
	if len(s.Tasks) == 0 {
		return errorf(ErrSpec, "features: spec: no tasks (want at least one)")
	}
	at := func(f *Field) string {
		if f.Line > 0 {
			return fmt.Sprintf("features: spec line %d: field %q", f.Line, f.Name)
		}
		return fmt.Sprintf("features: spec: field %q", f.Name)
	}
	names := map[string]bool{}
	dense := map[string]string{}
	for i := range s.Fields {
		f := &s.Fields[i]
		if f.Name == "" {
			return errorf(ErrSpec, "features: spec: field %d has no name", i)
		}
		if names[f.Name] {
			return errorf(ErrSpec, "%s: duplicate field name", at(f))
		}
		names[f.Name] = true
		if f.Side > SideCandidate {
			return errorf(ErrSpec, "%s: unknown side %d", at(f), f.Side)
		}
		if f.Kind != Vector && (f.Dim != 0 || f.Normalize != "") {
			return errorf(ErrSpec, "%s: dim and normalize apply to vector fields only", at(f))
		}
		switch f.Kind {
		case Categorical, MultiCategorical:
			if modes(f) != 1 {
				return errorf(ErrSpec, "%s: want exactly one of buckets, vocab or exact", at(f))
			}
			if f.Exact != nil {
				if err := f.Exact.Validate(); err != nil {
					return errorf(ErrSpec, "%s: %v", at(f), err)
				}
			}
			if f.Buckets < 0 || f.Buckets > maxBuckets {
				return errorf(ErrSpec, "%s: buckets must be in [1, %d], found %d", at(f), maxBuckets, f.Buckets)
			}
			if f.Vocab != nil && (f.Vocab.MinCount < 1 || f.Vocab.MaxSize < 0 || f.Vocab.MaxSize > maxBuckets) {
				return errorf(ErrSpec, "%s: vocab: want min_count >= 1 and max_size in [0, %d]", at(f), maxBuckets)
			}
			if f.Kind == Categorical && f.Pooling != PoolNone {
				return errorf(ErrSpec, "%s: pooling applies to multi_categorical fields only", at(f))
			}
			if f.Kind == MultiCategorical && f.Pooling != PoolMean && f.Pooling != PoolSum {
				return errorf(ErrSpec, "%s: pooling must be mean or sum", at(f))
			}
		case Numeric:
			switch f.Transform {
			case TransformNone, TransformLog1p, TransformStandardize:
				if f.Buckets != 0 {
					return errorf(ErrSpec, "%s: buckets applies to a numeric field only with transform: bucketize", at(f))
				}
				if math.IsNaN(f.Default) || math.IsInf(f.Default, 0) {
					return errorf(ErrSpec, "%s: default must be finite", at(f))
				}
				if f.MissingIndicator {
					dense[f.Name+".missing"] = f.Name
				}
			case TransformBucketize:
				if f.Buckets <= 0 || f.Buckets > maxBuckets {
					return errorf(ErrSpec, "%s: buckets must be in [1, %d], found %d", at(f), maxBuckets, f.Buckets)
				}
			default:
				return errorf(ErrSpec, "%s: unknown transform %q (want none, log1p, standardize or bucketize)", at(f), f.Transform)
			}
			if f.Vocab != nil || f.Exact != nil || f.Pooling != PoolNone {
				return errorf(ErrSpec, "%s: vocab, exact and pooling do not apply to numeric fields", at(f))
			}
		case Vector:
			if err := f.validateVector(); err != nil {
				return errorf(ErrSpec, "%s: %v", at(f), err)
			}
			if f.MissingIndicator {
				dense[f.Name+".missing"] = f.Name
			}
		default:
			return errorf(ErrSpec, "%s: unknown kind %q (want categorical, multi_categorical, numeric or vector)", at(f), f.Kind)
		}
	}
	for i := range s.Fields {
		f := &s.Fields[i]
		if owner, ok := dense[f.Name]; ok && owner != f.Name {
			return errorf(ErrSpec, "%s: name collides with the missing-indicator column of field %q", at(f), owner)
		}
	}
	tasks := map[string]*Task{}
	for i := range s.Tasks {
		t := &s.Tasks[i]
		if t.Name == "" {
			return errorf(ErrSpec, "features: spec: task %d has no name", i)
		}
		if tasks[t.Name] != nil {
			return errorf(ErrSpec, "features: spec: task %q: duplicate task name", t.Name)
		}
		tasks[t.Name] = t
		switch t.Kind {
		case TaskBinary, TaskESMM, TaskRegression:
		case "":
			return errorf(ErrSpec, "features: spec: task %q: missing kind (want binary, esmm or regression)", t.Name)
		default:
			return errorf(ErrSpec, "features: spec: task %q: unknown kind %q (want binary, esmm or regression)", t.Name, t.Kind)
		}
		if t.Label == "" {
			return errorf(ErrSpec, "features: spec: task %q: missing label column", t.Name)
		}
		if names[t.Label] {
			return errorf(ErrSpec, "features: spec: task %q: label column %q is also an input field", t.Name, t.Label)
		}
		if t.Kind == TaskRegression && t.Parent != "" {
			return errorf(ErrSpec, "features: spec: task %q: parent applies to esmm and binary tasks only", t.Name)
		}
		if t.Mask != "" && t.Mask == t.Label {
			return errorf(ErrSpec, "features: spec: task %q: mask %q is the task's own label", t.Name, t.Mask)
		}
		if t.Mask != "" && (t.Mask == s.GroupKey || t.Mask == s.SampleWeight) {
			return errorf(ErrSpec, "features: spec: task %q: mask %q is the group key or sample weight", t.Name, t.Mask)
		}
	}
	for i := range s.Tasks {
		t := &s.Tasks[i]
		if t.Kind == TaskESMM && t.Parent == "" {
			return errorf(ErrSpec, "features: spec: task %q: esmm needs a parent (the binary task it is multiplied with, e.g. ctr)", t.Name)
		}
		if t.Parent == "" {
			continue
		}
		if t.Parent == t.Name {
			return errorf(ErrSpec, "features: spec: task %q: is its own parent", t.Name)
		}
		p := tasks[t.Parent]
		if p == nil {
			return errorf(ErrSpec, "features: spec: task %q: parent %q is not a task", t.Name, t.Parent)
		}
		if t.Kind == TaskESMM && p.Kind == TaskRegression {
			return errorf(ErrSpec, "features: spec: task %q: parent %q must be a binary or esmm task, found %s", t.Name, t.Parent, p.Kind)
		}
		if t.Kind == TaskBinary && p.Kind != TaskBinary {
			return errorf(ErrSpec, "features: spec: task %q: parent %q must be a binary task (the previous step of the funnel), found %s", t.Name, t.Parent, p.Kind)
		}
	}
	for _, t := range s.Tasks {
		if t.Label == s.GroupKey || t.Label == s.SampleWeight {
			return errorf(ErrSpec, "features: spec: task %q: label column %q is also the group key or sample weight", t.Name, t.Label)
		}
	}
	if s.SampleWeight != "" && s.SampleWeight == s.GroupKey {
		return errorf(ErrSpec, "features: spec: sample_weight and group_key name the same column %q", s.SampleWeight)
	}
	if s.SampleWeight != "" {
		for _, f := range s.Fields {
			if f.Name == s.SampleWeight && f.Kind != Numeric {
				return errorf(ErrSpec, "features: spec: sample_weight %q is a %s field, want a numeric column", s.SampleWeight, f.Kind)
			}
		}
	}
	if s.GroupKey != "" {
		for _, f := range s.Fields {
			if f.Name == s.GroupKey && (f.Kind == MultiCategorical || f.Kind == Vector) {
				return errorf(ErrSpec, "features: spec: group_key %q is a %s field, want a single-valued column", s.GroupKey, f.Kind)
			}
		}
	}
	return nil
}

// Field returns the field with the given name, or nil.
func (s *Spec) Field(name string) *Field {
	for i := range s.Fields {
		if s.Fields[i].Name == name {
			return &s.Fields[i]
		}
	}
	return nil
}

// Columns returns the raw columns a record must hold, each once: the fields
// in spec order, then the group key, the sample weight and, when labels is
// true, the task labels in task order. It is the projection for ingest.
func (s *Spec) Columns(labels bool) []string {
	var cols []string
	add := func(c string) {
		if c != "" && !contains(cols, c) {
			cols = append(cols, c)
		}
	}
	for _, f := range s.Fields {
		add(f.Name)
	}
	add(s.GroupKey)
	add(s.SampleWeight)
	if labels {
		for _, t := range s.Tasks {
			add(t.Label)
		}
		for _, c := range s.MaskColumns() {
			add(c)
		}
	}
	return cols
}

// MaskColumns returns the tasks' mask columns that are no task's label,
// each once, in task order: the label columns a training batch carries
// after the tasks' labels (Layout.Labels).
func (s *Spec) MaskColumns() []string {
	var cols []string
	for _, t := range s.Tasks {
		if t.Mask == "" || contains(cols, t.Mask) || slices.ContainsFunc(s.Tasks, func(o Task) bool { return o.Label == t.Mask }) {
			continue
		}
		cols = append(cols, t.Mask)
	}
	return cols
}

// Schema returns the canonical Arrow schema of records built from JSON
// events (serving, Kafka), with the columns of Columns(labels): categorical
// fields and the group key as utf8, multi-categorical fields as list<utf8>,
// numeric fields and the sample weight as float64, vector fields as
// list<float64>, all nullable; labels as
// float64, not nullable. Records read from Parquet keep their own types;
// the Transformer accepts both.
func (s *Spec) Schema(labels bool) *arrow.Schema {
	var fs []arrow.Field
	for _, c := range s.Columns(labels) {
		var dt arrow.DataType = arrow.BinaryTypes.String
		nullable := true
		if f := s.Field(c); f != nil {
			switch f.Kind {
			case MultiCategorical:
				dt = arrow.ListOf(arrow.BinaryTypes.String)
			case Numeric:
				dt = arrow.PrimitiveTypes.Float64
			case Vector:
				dt = arrow.ListOf(arrow.PrimitiveTypes.Float64)
			}
		} else if c == s.SampleWeight || contains(s.MaskColumns(), c) {
			dt = arrow.PrimitiveTypes.Float64
		} else if c != s.GroupKey {
			dt = arrow.PrimitiveTypes.Float64 // a label
			nullable = false
		}
		fs = append(fs, arrow.Field{Name: c, Type: dt, Nullable: nullable})
	}
	return arrow.NewSchema(fs, nil)
}

// String returns "context" or "candidate".
func (s Side) String() string {
	switch s {
	case SideContext:
		return "context"
	case SideCandidate:
		return "candidate"
	}
	return "side(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText encodes the side as "context" or "candidate".
func (s Side) MarshalText() ([]byte, error) {
	if s > SideCandidate {
		return nil, fmt.Errorf("features: unknown side %d", s)
	}
	return []byte(s.String()), nil
}

// UnmarshalText decodes "context" or "candidate".
func (s *Side) UnmarshalText(b []byte) error {
	switch string(b) {
	case "context":
		*s = SideContext
	case "candidate":
		*s = SideCandidate
	default:
		return fmt.Errorf("features: unknown side %q (want context or candidate)", b)
	}
	return nil
}

// String returns "none", "mean" or "sum".
func (p Pooling) String() string {
	switch p {
	case PoolNone:
		return "none"
	case PoolMean:
		return "mean"
	case PoolSum:
		return "sum"
	}
	return "pooling(" + strconv.Itoa(int(p)) + ")"
}

// MarshalText encodes the pooling as "none", "mean" or "sum".
func (p Pooling) MarshalText() ([]byte, error) {
	if p > PoolSum {
		return nil, fmt.Errorf("features: unknown pooling %d", p)
	}
	return []byte(p.String()), nil
}

// UnmarshalText decodes "none", "mean" or "sum".
func (p *Pooling) UnmarshalText(b []byte) error {
	switch string(b) {
	case "none":
		*p = PoolNone
	case "mean":
		*p = PoolMean
	case "sum":
		*p = PoolSum
	default:
		return fmt.Errorf("features: unknown pooling %q (want none, mean or sum)", b)
	}
	return nil
}
