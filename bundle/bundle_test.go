package bundle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
)

const testSpec = `fields:
  - {name: user_id, kind: categorical, buckets: 100}
  - {name: item_id, kind: categorical, buckets: 100, side: candidate}
  - {name: price, kind: numeric, transform: log1p, missing_indicator: false, side: candidate}
tasks:
  - {name: ctr, kind: binary, label: click}
  - {name: cvr, kind: esmm, label: conv, parent: ctr}
`

// testModel returns a manifest and a small randomly initialised model.
func testModel(t *testing.T, seed uint64) (*Manifest, *mmoe.Model) {
	t.Helper()
	spec, err := features.ParseSpec(strings.NewReader(testSpec))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := features.NewTransformer(spec, nil, features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := mtl.NewTaskSet([]mtl.TaskConfig{{Name: "ctr", Kind: mtl.KindBinary, Label: "click"}, {Name: "cvr", Kind: mtl.KindESMM, Label: "conv", Parent: "ctr"}})
	if err != nil {
		t.Fatal(err)
	}
	model, err := mmoe.New(mmoe.Config{EmbeddingDim: 4, Experts: 2, ExpertHidden: []int{8}, Tower: []int{4}, Seed: seed}, tr.Layout(), []string{"ctr", "cvr"})
	if err != nil {
		t.Fatal(err)
	}
	m := &Manifest{
		Spec: testSpec, Stats: json.RawMessage("null"), Model: model.Config(),
		Tasks: ts.Configs(), Objectives: ts.Objectives(), Step: 7, Examples: 700,
		Position: json.RawMessage(`{"file":"a.parquet","row":700}`),
		Sample:   []SampleEvent{{Event: json.RawMessage(`{"user_id":1,"item_id":2,"price":3.5}`), Scores: []float32{0.25, 0.5, 0.125}}},
	}
	return m, model
}

// mustJSON encodes v compactly (raw JSON members too), for comparisons.
func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func versions(t *testing.T, s Store) []string {
	t.Helper()
	vs, err := s.Versions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func TestWriteAndRead(t *testing.T) {
	ctx := context.Background()
	d := NewDir(filepath.Join(t.TempDir(), "models", "demo"))
	m, model := testModel(t, 1)
	v, err := Write(ctx, d, m, model, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v != "v00000001" || m.Version != v || m.FormatVersion != FormatVersion || m.Created.IsZero() {
		t.Fatalf("version %q, manifest version %q, format %d, created %v", v, m.Version, m.FormatVersion, m.Created)
	}
	if n := names(t, d.Path(v)); !slices.Equal(n, []string{ManifestFile, ManifestSumFile, WeightsFile}) {
		t.Errorf("bundle holds %v", n)
	}
	// The version is named by its directory, not written in the file.
	raw, err := os.ReadFile(filepath.Join(d.Path(v), ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk map[string]any
	if err := json.Unmarshal(raw, &onDisk); err != nil {
		t.Fatal(err)
	}
	if onDisk["version"] != "" || onDisk["format_version"] != float64(FormatVersion) {
		t.Errorf("on disk: version %v, format_version %v", onDisk["version"], onDisk["format_version"])
	}

	got, err := ReadManifest(d.Path(v))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Created.Equal(m.Created) {
		t.Errorf("created %v, wrote %v", got.Created, m.Created)
	}
	if a, b := mustJSON(t, got), mustJSON(t, m); !bytes.Equal(a, b) {
		t.Errorf("read back\n%s\nwrote\n%s", a, b)
	}
	var want bytes.Buffer
	if err := model.SaveSafetensors(&want); err != nil {
		t.Fatal(err)
	}
	if w, _ := os.ReadFile(filepath.Join(d.Path(v), WeightsFile)); !bytes.Equal(w, want.Bytes()) {
		t.Errorf("weights file of %d bytes differs from the model's %d", len(w), want.Len())
	}

	// A second version counts up.
	m2, _ := testModel(t, 2)
	if v2, err := Write(ctx, d, m2, model, nil); err != nil || v2 != "v00000002" {
		t.Fatalf("second write: %q, %v", v2, err)
	}
}

func TestWriteRefusesUnscoredSample(t *testing.T) {
	d := NewDir(t.TempDir())
	m, model := testModel(t, 1)
	m.Sample[0].Scores = nil
	if _, err := Write(context.Background(), d, m, model, nil); err == nil || !strings.Contains(err.Error(), "FillSampleScores") {
		t.Fatalf("error %v, want one pointing at FillSampleScores", err)
	}
	if vs := versions(t, d); len(vs) != 0 {
		t.Errorf("published %v", vs)
	}
}

func TestReadManifestFormatVersion(t *testing.T) {
	d := NewDir(t.TempDir())
	m, model := testModel(t, 1)
	v, err := Write(context.Background(), d, m, model, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(d.Path(v), ManifestFile)
	raw, _ := os.ReadFile(p)
	for _, fv := range []int{0, FormatVersion + 1} {
		edited := bytes.Replace(raw, fmt.Appendf(nil, `"format_version": %d`, FormatVersion), fmt.Appendf(nil, `"format_version": %d`, fv), 1)
		if bytes.Equal(edited, raw) {
			t.Fatal("format_version not found in the manifest")
		}
		rewriteManifest(t, d.Path(v), edited)
		if _, err := ReadManifest(d.Path(v)); err == nil || !strings.Contains(err.Error(), "format version") {
			t.Errorf("format version %d: error %v, want a refusal", fv, err)
		}
	}
}

var errHalfWay = errors.New("disk full")

// halfThenFail writes part of a file and fails.
func halfThenFail(w io.Writer) error {
	w.Write([]byte("half a fi"))
	return errHalfWay
}

func content(s string) func(io.Writer) error {
	return func(w io.Writer) error { _, err := io.WriteString(w, s); return err }
}

// A version whose writer fails half-way is not visible, and leaves
// nothing behind; a cancelled context stops between files.
func TestNewVersionFailsHalfWay(t *testing.T) {
	ctx := context.Background()
	d := NewDir(t.TempDir())
	_, err := d.NewVersion(ctx, []File{{"a", content("whole")}, {"b", halfThenFail}, {ManifestFile, content("{}")}})
	if !errors.Is(err, errHalfWay) {
		t.Fatalf("error %v, want the writer's", err)
	}
	if n := names(t, d.Root()); len(n) != 0 {
		t.Errorf("a failed version left %v", n)
	}

	cctx, cancel := context.WithCancel(ctx)
	first := func(w io.Writer) error { cancel(); return content("x")(w) }
	_, err = d.NewVersion(cctx, []File{{"a", first}, {ManifestFile, content("{}")}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if n := names(t, d.Root()); len(n) != 0 {
		t.Errorf("a cancelled version left %v", n)
	}

	for _, bad := range []string{"", ".hidden", "sub/file", ".."} {
		if _, err := d.NewVersion(ctx, []File{{bad, content("x")}}); err == nil {
			t.Errorf("file name %q accepted", bad)
		}
	}
}

// Numbering: one more than the highest version directory, complete or not;
// Versions lists only complete ones, in numeric order.
func TestVersions(t *testing.T) {
	ctx := context.Background()
	d := NewDir(filepath.Join(t.TempDir(), "missing"))
	if vs := versions(t, d); len(vs) != 0 {
		t.Fatalf("a missing root lists %v", vs)
	}
	if _, err := Newest(ctx, d); !errors.Is(err, ErrNoBundle) {
		t.Fatalf("Newest on a missing root: %v, want ErrNoBundle", err)
	}
	manifest := []File{{ManifestFile, content("{}")}}
	for range 2 {
		if _, err := d.NewVersion(ctx, manifest); err != nil {
			t.Fatal(err)
		}
	}
	// Half-copied by hand (no manifest), junk, and a complete v10.
	for _, p := range []string{"v00000003", "v00000010", "vx", "v-1", "v0", ".tmp-123", "checkpoints"} {
		os.MkdirAll(d.Path(p), 0o755)
	}
	os.WriteFile(filepath.Join(d.Path("v00000010"), ManifestFile), []byte("{}"), 0o644)
	if vs := versions(t, d); !slices.Equal(vs, []string{"v00000001", "v00000002", "v00000010"}) {
		t.Fatalf("versions %v", vs)
	}
	v, err := d.NewVersion(ctx, manifest)
	if err != nil || v != "v00000011" {
		t.Fatalf("next version %q, %v; want v00000011", v, err)
	}
	if newest, err := Newest(ctx, d); err != nil || newest != "v00000011" {
		t.Fatalf("Newest %q, %v", newest, err)
	}
}

// Concurrent publishers each get their own version.
func TestNewVersionConcurrent(t *testing.T) {
	d := NewDir(t.TempDir())
	const writers, each = 4, 5
	var mu sync.Mutex
	var got []string
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				v, err := d.NewVersion(context.Background(), []File{{"who", content(fmt.Sprint(w, i))}, {ManifestFile, content("{}")}})
				if err != nil {
					errs[w] = err
					return
				}
				mu.Lock()
				got = append(got, v)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if len(slices.Compact(slices.Clone(got))) != writers*each {
		t.Fatalf("versions handed out twice: %v", got)
	}
	if vs := versions(t, d); !slices.Equal(vs, got) || vs[len(vs)-1] != versionName(writers*each) {
		t.Fatalf("listed %v, published %v", vs, got)
	}
}

func TestLatest(t *testing.T) {
	ctx := context.Background()
	d := NewDir(t.TempDir())
	if l, err := d.Latest(ctx); err != nil || l != "" {
		t.Fatalf("no link: %q, %v", l, err)
	}
	for _, v := range []string{"v00000001", "v00000002"} {
		if _, err := d.NewVersion(ctx, []File{{ManifestFile, content("{}")}}); err != nil {
			t.Fatal(err)
		}
		if err := d.SetLatest(ctx, v); err != nil {
			t.Fatal(err)
		}
		if l, err := d.Latest(ctx); err != nil || l != v {
			t.Fatalf("latest %q, %v; want %s", l, err, v)
		}
		// The link resolves to the version, named as its target.
		dir, err := Resolve(filepath.Join(d.Root(), LatestLink))
		if err != nil || filepath.Base(dir) != v {
			t.Fatalf("Resolve(latest) = %q, %v", dir, err)
		}
	}
	if err := d.SetLatest(ctx, "../elsewhere"); err == nil {
		t.Error("SetLatest accepted a path")
	}
	// Something else than a symlink named latest names no version.
	other := NewDir(t.TempDir())
	os.Mkdir(other.Path(LatestLink), 0o755)
	if l, err := other.Latest(ctx); err != nil || l != "" {
		t.Fatalf("latest as a directory: %q, %v", l, err)
	}
}

func TestResolve(t *testing.T) {
	ctx := context.Background()
	d := NewDir(t.TempDir())
	if _, err := Resolve(d.Root()); !errors.Is(err, ErrNoBundle) {
		t.Fatalf("empty root: %v, want ErrNoBundle", err)
	}
	for range 3 {
		if _, err := d.NewVersion(ctx, []File{{ManifestFile, content("{}")}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.SetLatest(ctx, "v00000002"); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ path, want string }{
		{d.Root(), d.Path("v00000003")}, // the newest, whatever latest says
		{d.Path("v00000001"), d.Path("v00000001")},
		{filepath.Join(d.Root(), LatestLink), d.Path("v00000002")},
	}
	for _, c := range cases {
		got, err := Resolve(c.path)
		if err != nil {
			t.Fatalf("Resolve(%s): %v", c.path, err)
		}
		// t.TempDir may sit behind a symlink itself.
		if want, _ := filepath.EvalSymlinks(c.want); got != c.want && got != want {
			t.Errorf("Resolve(%s) = %s, want %s", c.path, got, c.want)
		}
	}
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	d := NewDir(t.TempDir())
	for range 6 {
		if _, err := d.NewVersion(ctx, []File{{ManifestFile, content("{}")}}); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(d.Path("v00000007"), 0o755) // being copied in: no manifest yet
	if err := d.SetLatest(ctx, "v00000002"); err != nil {
		t.Fatal(err)
	}
	if err := Prune(ctx, d, 0); err != nil || len(versions(t, d)) != 6 {
		t.Fatalf("keep 0 pruned: %v, %v", versions(t, d), err)
	}
	if err := Prune(ctx, d, 2); err != nil {
		t.Fatal(err)
	}
	if vs := versions(t, d); !slices.Equal(vs, []string{"v00000002", "v00000005", "v00000006"}) {
		t.Fatalf("after pruning to 2: %v (latest is v00000002)", vs)
	}
	if _, err := os.Stat(d.Path("v00000007")); err != nil {
		t.Errorf("pruning removed an incomplete version: %v", err)
	}
	if err := d.Remove(ctx, ".."); err == nil {
		t.Error("Remove accepted a path")
	}
}

// Publish is Write, SetLatest and Prune.
func TestPublish(t *testing.T) {
	ctx := context.Background()
	d := NewDir(t.TempDir())
	m, model := testModel(t, 1)
	var last string
	for range 4 {
		v, err := Publish(ctx, d, m, model, nil, 3)
		if err != nil {
			t.Fatal(err)
		}
		last = v
	}
	if l, _ := d.Latest(ctx); l != last || last != "v00000004" {
		t.Fatalf("latest %q after publishing %q", l, last)
	}
	if vs := versions(t, d); !slices.Equal(vs, []string{"v00000002", "v00000003", "v00000004"}) {
		t.Fatalf("kept %v", vs)
	}
}

func TestCheckpoint(t *testing.T) {
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "out")
	cks := Checkpoints(out)
	if cks.Root() != filepath.Join(out, CheckpointDir) {
		t.Fatalf("checkpoints at %s", cks.Root())
	}
	m, model := testModel(t, 1)
	m.Sample = nil
	ck := &Checkpoint{
		State: mtl.TrainerState{
			Step:      7,
			Dense:     mtl.State{Tensors: map[string][]float32{"experts.0.weight.m": {1, 2}, "experts.0.weight.v": {3}}, Counters: map[string]int64{"step": 7}},
			Sparse:    mtl.State{Tensors: map[string][]float32{"emb.user_id.acc": {4, 5, 6}}, Counts: map[string][]int32{"emb.user_id.steps": {1, 0, 2}}},
			Weighting: mtl.State{Values: map[string][]float64{"log_var": {0.5, -0.25}}},
		},
		Epoch: 2, Position: json.RawMessage(`{"file":"b.parquet","row":12}`), Examples: 700,
		BestKey: math.Inf(-1), Best: "", Frozen: true,
	}
	var vs []string
	for range 3 {
		v, err := WriteCheckpoint(ctx, cks, m, model, nil, ck, 2)
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	if got := versions(t, cks); !slices.Equal(got, vs[1:]) {
		t.Fatalf("kept checkpoints %v, want %v", got, vs[1:])
	}
	if got := versions(t, NewDir(out)); len(got) != 0 {
		t.Fatalf("a checkpoint was published as a bundle: %v", got)
	}
	dir := cks.Path(vs[2])
	if n := names(t, dir); !slices.Equal(n, []string{ManifestFile, ManifestSumFile, OptimizerFile, TrainerFile, WeightsFile}) {
		t.Errorf("checkpoint holds %v", n)
	}
	got, err := ReadCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := *ck
	want.BestKey = -math.MaxFloat64 // JSON has no -Inf
	if a, b := mustJSON(t, got), mustJSON(t, &want); !bytes.Equal(a, b) {
		t.Errorf("read back\n%s\nwrote\n%s", a, b)
	}
	// The tensors are not in the JSON: optimizer.bin holds them.
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"dense tensors", got.State.Dense.Tensors, want.State.Dense.Tensors},
		{"sparse tensors", got.State.Sparse.Tensors, want.State.Sparse.Tensors},
		{"sparse counts", got.State.Sparse.Counts, want.State.Sparse.Counts},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: read back %v, wrote %v", c.name, c.got, c.want)
		}
	}
	if len(got.State.Dense.Counts)+len(got.State.Weighting.Tensors) != 0 {
		t.Errorf("state read back has tensors nobody wrote: %+v", got.State)
	}
	if ck.BestKey != math.Inf(-1) {
		t.Error("WriteCheckpoint changed the caller's Checkpoint")
	}
	if _, err := ReadManifest(dir); err != nil {
		t.Errorf("a checkpoint's manifest: %v", err)
	}

	os.Remove(filepath.Join(dir, OptimizerFile))
	if _, err := ReadCheckpoint(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("without optimizer.bin: %v", err)
	}
	if _, err := ReadCheckpoint(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("not a checkpoint: %v", err)
	}
}

// Init creates the root durably, and reports what is in the way.
func TestInit(t *testing.T) {
	base := t.TempDir()
	d := NewDir(filepath.Join(base, "models", "live"))
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	if n := names(t, d.Root()); len(n) != 0 {
		t.Errorf("Init left %v in the root", n)
	}
	if err := Checkpoints(d.Root()).Init(); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o644)
	for _, root := range []string{file, filepath.Join(file, "models")} {
		if err := NewDir(root).Init(); err == nil {
			t.Errorf("Init(%s) with a file in the way succeeded", root)
		}
		// Publishing reports it too.
		if _, err := NewDir(root).NewVersion(context.Background(), []File{{ManifestFile, content("{}")}}); err == nil {
			t.Errorf("NewVersion under %s succeeded", root)
		}
	}
}
