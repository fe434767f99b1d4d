package serving

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/kernels"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
)

// Bundle is a loaded, validated model bundle: the manifest plus everything
// rebuilt from it. A Bundle is read-only after loading and safe for
// concurrent use.
type Bundle struct {
	// Dir is the bundle directory it was loaded from.
	Dir      string
	Manifest *bundle.Manifest
	// Spec and Stats are the parsed feature spec and fitted statistics.
	Spec  *features.Spec
	Stats *features.Stats
	// Transformer is the serving transform: the training transform without
	// labels, sample weight or group key.
	Transformer *features.Transformer
	Model       *mmoe.Model
	Tasks       *mtl.TaskSet
	// SampleCheck says how the sample's scores were compared: SampleExact,
	// SampleTolerance, or SampleNone (no sample).
	SampleCheck string
	// Precision is the precision the model was trained and its sample
	// scored in (the manifest's; fp32 when it has none).
	Precision kernels.Precision

	servingSpec *features.Spec
}

// How LoadBundle compared the sample's scores (Bundle.SampleCheck).
const (
	// SampleExact: bit for bit, the arithmetic being the writer's
	// (Manifest.SampleKernel equals Kernel()).
	SampleExact = "exact"
	// SampleTolerance: within SampleAbsTol + SampleRelTol·|recorded|, the
	// arithmetic being another (another kernel or architecture, or a
	// bundle that does not say).
	SampleTolerance = "tolerance"
	// SampleNone: the bundle has no sample.
	SampleNone = "none"
)

// The tolerance of the sample check under other arithmetic: a score may
// differ from the recorded one by SampleAbsTol + SampleRelTol·|recorded|.
// Kernels differ in the order they sum products and in fusing
// multiply-adds, which moves a float32 score by a few units in the last
// place per layer (docs/formats.md gives the measured differences); a
// model misread (a wrong transform, other weights) moves it by far more.
const (
	SampleAbsTol = 1e-5
	SampleRelTol = 1e-4
)

// Kernel names this build's scoring arithmetic as Manifest.SampleKernel
// records it: the GEMM kernel (kernels.Impl: avx512, avx2, go) and the
// architecture, whose compiler may fuse multiply-adds in the portable
// kernel (arm64 does, amd64 does not).
func Kernel() string { return kernels.Impl() + "/" + runtime.GOARCH }

// ErrBundle is wrapped by every error of LoadBundle that is about the
// bundle's contents (as opposed to, say, a missing directory): a bundle that
// does not parse, does not match its checksums or itself, does not fit the
// memory budget, or scores its own sample differently.
var ErrBundle = errors.New("serving: invalid bundle")

// loadHook, when set (by tests only), runs at the start of every
// LoadBundleLimits: the place to inject a panic.
var loadHook func(dir string)

// errPanic marks a load that panicked (and was recovered).
var errPanic = errors.New("serving: panic while loading")

// ErrSample is wrapped by the error about a bundle that does not reproduce
// its sample's scores.
var ErrSample = errors.New("serving: the bundle does not reproduce its sample's scores")

func bundleErr(dir, what string, err error) error {
	if err == nil {
		return fmt.Errorf("serving: bundle %s: %s: %w", dir, what, ErrBundle)
	}
	return fmt.Errorf("serving: bundle %s: %s: %w: %w", dir, what, ErrBundle, err)
}

// LoadBundle is LoadBundleLimits within the default bundle.Limits.
func LoadBundle(dir string) (*Bundle, error) {
	return LoadBundleLimits(dir, bundle.Limits{})
}

// LoadBundleLimits loads the bundle in dir and validates it, in this
// order: the manifest (within lim, its checksum, its format), the feature
// spec and fitted statistics, the id maps of its exact tables if it has
// any (bundle.ReadIDs: their memory against lim, ids.bin's size and
// checksum, its content against the spec; the serving Transformer is
// built from these three), the tasks and objectives, the model configuration, the model's
// size against lim, the weights file's size and checksum, its header
// against the configuration (every tensor present with its shape, no
// extra ones: nothing is allocated for the model before this), and
// finally the manifest's sample events are re-scored through the serving
// path (Scorer) and must give the recorded scores: to the last bit when
// this build's arithmetic is the writer's (Kernel), within the sample
// tolerance otherwise. Every failure is an error naming the directory
// and the check that failed; those about the contents wrap ErrBundle,
// and also bundle.ErrCorrupt, bundle.ErrTooLarge, mmoe.ErrFormat or
// ErrSample when that is the cause. A panic while loading is an error
// wrapping ErrBundle too.
func LoadBundleLimits(dir string, lim bundle.Limits) (b *Bundle, err error) {
	return LoadBundleFrom(dir, lim, nil)
}

// LoadBundleFrom is LoadBundleLimits, where a delta version's chain may
// start from base, a bundle loaded before (a server's model), when the
// chain passes through base's version: the deltas after it are applied to
// a copy of base's model, which stays unchanged and may keep serving
// meanwhile. base may be nil. A delta whose chain is broken (a parent
// missing, corrupt, or not the one it was written against) is an error
// wrapping ErrBundle and bundle.ErrChain. The sample check then proves
// the chain applied: its scores were recorded on the trainer's model.
func LoadBundleFrom(dir string, lim bundle.Limits, base *Bundle) (b *Bundle, err error) {
	return loadBundle(dir, lim, base, nil)
}

// loadBundle is LoadBundleFrom, where a delta's chain may also start
// from spare, a bundle loaded before whose model nothing uses any more:
// when the chain passes through spare's version, the deltas after it are
// applied onto spare's model itself (the new bundle's Model is then
// spare's), without a copy of base's; otherwise a model of the same
// sizes is written into spare's storage (bundle.Base.Writable). A spare
// without a Manifest is storage only (mmoe.Model.Spare). After the call
// spare's model may be in any state and must be dropped. spare may be
// nil.
func loadBundle(dir string, lim bundle.Limits, base, spare *Bundle) (b *Bundle, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, bundleErr(dir, "loading", fmt.Errorf("%w: %v\n%s", errPanic, r, debug.Stack()))
		}
	}()
	if loadHook != nil {
		loadHook(dir)
	}
	m, err := bundle.ReadManifestLimits(dir, lim)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrBundle, err) // it names dir
	}
	b, err = assemble(dir, m, func(spec *features.Spec) (*features.IDTables, error) {
		return bundle.ReadIDs(dir, m, spec, lim)
	})
	if err != nil {
		return nil, err
	}
	// The configuration alone first: a bad config is reported as such even
	// when the weights file is missing too.
	if err := m.Model.Validate(); err != nil {
		return nil, bundleErr(dir, "model config", err)
	}
	var from *bundle.Base
	if base != nil && base.Model != nil {
		from = &bundle.Base{Manifest: base.Manifest, Model: base.Model}
	}
	if spare != nil && spare.Model != nil {
		from = &bundle.Base{Manifest: spare.Manifest, Model: spare.Model, Writable: true, Next: from}
	}
	model, err := bundle.ReadModelFrom(dir, m, b.Transformer.Layout(), b.Tasks.Heads(), lim, from)
	if err != nil {
		var pe *fs.PathError
		switch {
		case errors.Is(err, bundle.ErrChain), errors.Is(err, bundle.ErrCorrupt), errors.Is(err, mmoe.ErrFormat), errors.Is(err, bundle.ErrTooLarge):
			return nil, fmt.Errorf("%w: %w", ErrBundle, err) // it names dir
		case errors.As(err, &pe):
			return nil, fmt.Errorf("serving: bundle %s: %w", dir, err)
		}
		return nil, bundleErr(dir, "model config", err)
	}
	b.Model = model
	if err := b.checkSample(); err != nil {
		return nil, err
	}
	return b, nil
}

// NewBundle builds a Bundle from a manifest, a model and the id maps of
// its exact tables (nil when the spec has none) in memory (no files):
// what LoadBundle does after reading them, including the sample check.
// Dir is set to "(memory)". A trainer can serve a model it holds this
// way; the model and ids must not be trained further while it is served.
func NewBundle(m *bundle.Manifest, model *mmoe.Model, ids *features.IDTables) (*Bundle, error) {
	b, err := assemble("(memory)", m, given(ids))
	if err != nil {
		return nil, err
	}
	b.Model = model
	if err := b.checkSample(); err != nil {
		return nil, err
	}
	return b, nil
}

// given returns ids to assemble (nil: new empty tables of the spec).
func given(ids *features.IDTables) func(*features.Spec) (*features.IDTables, error) {
	return func(spec *features.Spec) (*features.IDTables, error) {
		if ids == nil {
			return features.NewIDTables(spec)
		}
		return ids, nil
	}
}

// assemble parses and checks everything of m but the weights; the exact
// tables of the transform come from readIDs, given the parsed spec.
func assemble(dir string, m *bundle.Manifest, readIDs func(*features.Spec) (*features.IDTables, error)) (*Bundle, error) {
	b := &Bundle{Dir: dir, Manifest: m}
	spec, err := features.ParseSpec(strings.NewReader(m.Spec))
	if err != nil {
		return nil, bundleErr(dir, "feature spec", err)
	}
	b.Spec = spec
	if st, err := parseStats(m.Stats); err != nil {
		return nil, bundleErr(dir, "stats", err)
	} else {
		b.Stats = st
	}
	// Serving reads no labels, weights or group keys.
	ss := *spec
	ss.SampleWeight, ss.GroupKey = "", ""
	b.servingSpec = &ss
	ids, err := readIDs(spec)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) { // as a missing weights file
			return nil, fmt.Errorf("serving: bundle %s: %w", dir, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrBundle, err) // it names dir
	}
	tr, err := features.NewTransformer(b.servingSpec, b.Stats, features.TransformerConfig{IDs: ids})
	if err != nil {
		return nil, bundleErr(dir, "transformer", err)
	}
	b.Transformer = tr
	ts, err := mtl.NewTaskSet(m.Tasks)
	if err != nil {
		return nil, bundleErr(dir, "tasks", err)
	}
	b.Tasks = ts
	specTasks := make([]string, len(spec.Tasks))
	for i, t := range spec.Tasks {
		specTasks[i] = t.Name
	}
	names := taskNames(m.Tasks)
	if !sameSet(specTasks, names) {
		return nil, bundleErr(dir, fmt.Sprintf("tasks %v do not match the spec's tasks %v", names, specTasks), nil)
	}
	if len(m.Objectives) > 0 && !slices.Equal(m.Objectives, ts.Objectives()) {
		return nil, bundleErr(dir, fmt.Sprintf("objectives %v, but the tasks produce %v", m.Objectives, ts.Objectives()), nil)
	}
	if b.Precision, err = kernels.ParsePrecision(m.Precision); err != nil {
		return nil, bundleErr(dir, "precision", err)
	}
	return b, nil
}

func taskNames(ts []mtl.TaskConfig) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// parseStats decodes the manifest's stats strictly; empty or null means
// none (valid when no field needs fitted statistics).
func parseStats(raw json.RawMessage) (*features.Stats, error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		return nil, nil
	}
	var s features.Stats
	dec := json.NewDecoder(bytes.NewReader(t))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, err
	}
	if s.Version != features.StatsVersion {
		return nil, fmt.Errorf("stats version %d, this build reads %d", s.Version, features.StatsVersion)
	}
	for name, f := range s.Fields {
		if f == nil {
			return nil, fmt.Errorf("field %q: null", name)
		}
	}
	return &s, nil
}

// sampleScores scores events through a Scorer, as one request with no
// context, and returns one score row per event in objective order.
// The products run in the bundle's precision exactly (bf16 emulated where
// the CPU lacks it), whatever a server would choose.
func (b *Bundle) sampleScores(events [][]byte) ([][]float32, error) {
	sc, err := NewScorer(b, ScorerConfig{MaxCandidates: max(len(events), 1), Precision: b.Precision.String(), exact: true})
	if err != nil {
		return nil, err
	}
	resp, err := sc.Score(context.Background(), &Request{Candidates: events})
	if err != nil {
		return nil, err
	}
	defer resp.Release()
	out := make([][]float32, len(events))
	for _, r := range resp.Results {
		out[r.Index] = slices.Clone(r.Scores)
	}
	return out, nil
}

// checkSample re-scores the manifest's sample and compares: bit for bit
// when this build's arithmetic is the one that recorded the scores,
// within the sample tolerance otherwise.
func (b *Bundle) checkSample() error {
	sample := b.Manifest.Sample
	if len(sample) == 0 {
		b.SampleCheck = SampleNone
		return nil
	}
	b.SampleCheck = SampleTolerance
	if b.Manifest.SampleKernel == Kernel() {
		b.SampleCheck = SampleExact
	}
	events := make([][]byte, len(sample))
	for i, s := range sample {
		events[i] = s.Event
	}
	got, err := b.sampleScores(events)
	if err != nil {
		return bundleErr(b.Dir, "scoring the sample", err)
	}
	objs := b.Tasks.Objectives()
	for i, s := range sample {
		if len(s.Scores) != len(objs) {
			return bundleErr(b.Dir, fmt.Sprintf("sample event %d has %d scores for %d objectives %v", i, len(s.Scores), len(objs), objs), ErrSample)
		}
		for j, want := range s.Scores {
			if sameScore(got[i][j], want, b.SampleCheck == SampleExact) {
				continue
			}
			how := "bit for bit (this build's arithmetic, " + Kernel() + ", wrote it)"
			if b.SampleCheck == SampleTolerance {
				how = fmt.Sprintf("within %g + %g·|score| (it was written by %q, this build is %s)", SampleAbsTol, SampleRelTol, b.Manifest.SampleKernel, Kernel())
			}
			return bundleErr(b.Dir, fmt.Sprintf("sample event %d: objective %q scores %v (bits %#08x), the bundle recorded %v (bits %#08x), compared %s",
				i, objs[j], got[i][j], math.Float32bits(got[i][j]), want, math.Float32bits(want), how), ErrSample)
		}
	}
	return nil
}

// sameScore compares a sample score with the recorded one: bit for bit,
// or within the sample tolerance (NaN matching NaN only, an infinity
// itself only).
func sameScore(got, want float32, exact bool) bool {
	if math.Float32bits(got) == math.Float32bits(want) {
		return true
	}
	if exact {
		return false
	}
	g, w := float64(got), float64(want)
	if math.IsNaN(g) || math.IsNaN(w) || math.IsInf(g, 0) || math.IsInf(w, 0) {
		return math.IsNaN(g) && math.IsNaN(w)
	}
	return math.Abs(g-w) <= SampleAbsTol+SampleRelTol*math.Abs(w)
}

// FillSampleScores sets the Scores of every m.Sample event to what model
// gives it through the serving path (the transform rebuilt from m.Spec and
// m.Stats with the exact tables ids, nil when the spec has none, then a
// Scorer, with products in m.Precision), and m.SampleKernel to the
// arithmetic that computed them (Kernel), so that LoadBundle can check the
// written bundle reproduces them. It also fills m.Objectives from m.Tasks
// when empty. A
// trainer calls it before bundle.Write, which refuses a sample without
// scores.
func FillSampleScores(m *bundle.Manifest, model *mmoe.Model, ids *features.IDTables) error {
	b, err := assemble("(unwritten)", m, given(ids))
	if err != nil {
		return err
	}
	if len(m.Objectives) == 0 {
		m.Objectives = slices.Clone(b.Tasks.Objectives())
	}
	if !slices.Equal(model.Heads(), b.Tasks.Heads()) {
		return fmt.Errorf("serving: model heads %v differ from the heads of the manifest's tasks %v", model.Heads(), b.Tasks.Heads())
	}
	if len(m.Sample) == 0 {
		return nil
	}
	m.SampleKernel = Kernel()
	b.Model = model
	events := make([][]byte, len(m.Sample))
	for i, s := range m.Sample {
		events[i] = s.Event
	}
	got, err := b.sampleScores(events)
	if err != nil {
		return fmt.Errorf("serving: scoring the sample: %w", err)
	}
	for i := range m.Sample {
		m.Sample[i].Scores = got[i]
	}
	return nil
}
