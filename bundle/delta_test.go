package bundle

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
)

// trainLike changes model as a training step would: every dense
// parameter, and the given rows of each table (and no other row).
func trainLike(model *mmoe.Model, rows [][]int32, by float32) {
	for _, p := range model.Params() {
		for i := range p.Data {
			p.Data[i] += by * float32(i%7-3)
		}
	}
	for f, e := range model.Embeddings() {
		for _, r := range rows[f] {
			for k := range e.Dim {
				e.Data[int(r)*e.Dim+k] -= by * float32(k+1)
			}
		}
	}
}

// sameBits fails unless a and b hold the same tensors, bit for bit.
func sameBits(t *testing.T, what string, a, b *mmoe.Model) {
	t.Helper()
	pa, pb := a.Params(), b.Params()
	ea, eb := a.Embeddings(), b.Embeddings()
	if len(pa) != len(pb) || len(ea) != len(eb) {
		t.Fatalf("%s: %d/%d tensors against %d/%d", what, len(pa), len(ea), len(pb), len(eb))
	}
	check := func(name string, x, y []float32) {
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
				t.Fatalf("%s: %s[%d] is %v, want %v", what, name, i, x[i], y[i])
			}
		}
	}
	for i := range pa {
		check(pa[i].Name, pa[i].Data, pb[i].Data)
	}
	for i := range ea {
		check(ea[i].Name, ea[i].Data, eb[i].Data)
	}
}

func readBack(t *testing.T, dir string, base *Base) (*Manifest, *mmoe.Model, error) {
	t.Helper()
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, nil, err
	}
	spec, err := features.ParseSpec(strings.NewReader(m.Spec))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := features.NewTransformer(spec, nil, features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	model, err := ReadModelFrom(dir, m, tr.Layout(), []string{"ctr", "cvr"}, Limits{}, base)
	return m, model, err
}

// deltaChain writes a snapshot v1 and deltas v2, v3 of a model trained in
// between, then the same model in full as v4, and returns the store and
// the model as it is at v3 (and v4).
func deltaChain(t *testing.T) (*Dir, *mmoe.Model) {
	t.Helper()
	return deltaChainCodec(t, CodecNone)
}

// deltaChainCodec is deltaChain with the deltas stored with codec.
func deltaChainCodec(t *testing.T, codec string) (*Dir, *mmoe.Model) {
	t.Helper()
	ctx := context.Background()
	d := NewDir(t.TempDir())
	m, model := testModel(t, 3)
	snap := *m
	if _, err := Write(ctx, d, &snap, model, nil); err != nil {
		t.Fatal(err)
	}
	parent := &snap
	for i, rows := range [][][]int32{{{1, 7, 99, 100}, {}}, {{0, 7}, {3, 4, 5}}} {
		trainLike(model, rows, float32(i+1)/64)
		dm := *m
		dm.Step += int64(i + 1)
		v, err := WriteDelta(ctx, d, &dm, model, nil, parent, rows, codec)
		if err != nil {
			t.Fatal(err)
		}
		if dm.Delta == nil || dm.Delta.Parent != parent.Version || dm.Delta.Snapshot != "v00000001" || v != dm.Version {
			t.Fatalf("delta %s: %+v", v, dm.Delta)
		}
		parent = &dm
	}
	full := *m
	if _, err := Write(ctx, d, &full, model, nil); err != nil {
		t.Fatal(err)
	}
	return d, model
}

// A chain of deltas read back gives the model bit for bit, as the full
// bundle of the same weights does; from a Base (a model loaded before)
// too, and the base is left unchanged.
func TestDeltaChainBitIdentical(t *testing.T) {
	d, want := deltaChain(t)
	m3, got, err := readBack(t, d.Path("v00000003"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !m3.IsDelta() || m3.Files[DeltaFile].Size == 0 || m3.Files[WeightsFile].Size != 0 {
		t.Fatalf("v3's manifest: delta %+v files %v", m3.Delta, m3.Files)
	}
	sameBits(t, "v3 from its chain", got, want)
	_, full, err := readBack(t, d.Path("v00000004"), nil)
	if err != nil {
		t.Fatal(err)
	}
	sameBits(t, "v3 against the full v4", got, full)

	m2, base, err := readBack(t, d.Path("v00000002"), nil)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := base.Clone()
	_, fromBase, err := readBack(t, d.Path("v00000003"), &Base{Manifest: m2, Model: base})
	if err != nil {
		t.Fatal(err)
	}
	sameBits(t, "v3 from the base v2", fromBase, want)
	sameBits(t, "the base after the apply", base, before)

	// A base of another version's content under the parent's name is
	// not used: the chain is read from the snapshot.
	other := *m2
	other.sum = sumOf([]byte("another manifest"))
	zero, _ := base.Clone()
	trainLike(zero, make([][]int32, 2), 1)
	_, notBase, err := readBack(t, d.Path("v00000003"), &Base{Manifest: &other, Model: zero})
	if err != nil {
		t.Fatal(err)
	}
	sameBits(t, "v3 with a base of the wrong content", notBase, want)
}

// A chain that cannot be followed is refused (ErrChain): a parent
// missing, a delta file corrupt, a parent replaced by another version of
// the same name.
func TestDeltaChainBroken(t *testing.T) {
	for _, c := range []struct {
		name   string
		break_ func(t *testing.T, d *Dir)
		also   error
	}{
		{"parent missing", func(t *testing.T, d *Dir) { os.RemoveAll(d.Path("v00000002")) }, os.ErrNotExist},
		{"snapshot missing", func(t *testing.T, d *Dir) { os.RemoveAll(d.Path("v00000001")) }, os.ErrNotExist},
		{"parent's delta corrupt", func(t *testing.T, d *Dir) {
			p := filepath.Join(d.Path("v00000002"), DeltaFile)
			b, _ := os.ReadFile(p)
			b[len(b)-1] ^= 1
			os.WriteFile(p, b, 0o600)
		}, ErrCorrupt},
		{"parent replaced", func(t *testing.T, d *Dir) {
			// v4 (full, other weights) copied in as v2: complete and
			// valid, but not the version v3 was written against.
			os.RemoveAll(d.Path("v00000002"))
			copyDir(t, d.Path("v00000004"), d.Path("v00000002"))
		}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, _ := deltaChain(t)
			c.break_(t, d)
			_, _, err := readBack(t, d.Path("v00000003"), nil)
			if !errors.Is(err, ErrChain) || (c.also != nil && !errors.Is(err, c.also)) {
				t.Fatalf("read: %v, want ErrChain and %v", err, c.also)
			}
			if _, _, err := readBack(t, d.Path("v00000004"), nil); err != nil {
				t.Fatalf("the full v4 beside it: %v", err)
			}
		})
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Mkdir(to, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(from)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// Pruning keeps the chains of the versions it keeps and of latest, in
// a directory and in a bucket.
func TestPruneKeepsChains(t *testing.T) {
	b, _ := testBucket(t)
	for _, d := range []Store{NewDir(t.TempDir()), b} {
		t.Run(fmt.Sprintf("%T", d), func(t *testing.T) { pruneKeepsChains(t, d) })
	}
}

func pruneKeepsChains(t *testing.T, d Store) {
	ctx := context.Background()
	m, model := testModel(t, 5)
	var parent *Manifest
	publish := func(delta bool, keep int) string {
		t.Helper()
		nm := *m
		var v string
		var err error
		if delta {
			v, err = PublishDelta(ctx, d, &nm, model, nil, parent, [][]int32{{1}, {2}}, CodecNone, keep)
		} else {
			v, err = Publish(ctx, d, &nm, model, nil, keep)
		}
		if err != nil {
			t.Fatal(err)
		}
		parent = &nm
		return v
	}
	publish(false, 2) // v1
	for range 3 {
		publish(true, 2) // v2..v4
	}
	if vs := versions(t, d); !slices.Equal(vs, []string{"v00000001", "v00000002", "v00000003", "v00000004"}) {
		t.Fatalf("keep 2 of a chain: %v", vs)
	}
	publish(false, 2) // v5
	if vs := versions(t, d); !slices.Equal(vs, []string{"v00000001", "v00000002", "v00000003", "v00000004", "v00000005"}) {
		t.Fatalf("keep 2 (v4, a delta, and v5): %v", vs)
	}
	publish(true, 2) // v6
	if vs := versions(t, d); !slices.Equal(vs, []string{"v00000005", "v00000006"}) {
		t.Fatalf("keep 2 after a snapshot and its delta: %v", vs)
	}
	// latest naming an old delta keeps its chain.
	publish(true, 0)  // v7
	publish(true, 0)  // v8
	publish(false, 0) // v9
	if err := d.SetLatest(ctx, "v00000007"); err != nil {
		t.Fatal(err)
	}
	if err := Prune(ctx, d, 1); err != nil {
		t.Fatal(err)
	}
	if vs := versions(t, d); !slices.Equal(vs, []string{"v00000005", "v00000006", "v00000007", "v00000009"}) {
		t.Fatalf("keep 1 with latest at the delta v7: %v", vs)
	}
	local, ok := d.(*Dir)
	if !ok {
		local = NewDir(t.TempDir())
		if _, err := FetchChain(ctx, d, "v00000007", local, Limits{}); err != nil {
			t.Fatal(err)
		}
		if _, err := FetchChain(ctx, d, "v00000009", local, Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range []string{"v00000007", "v00000009"} {
		if _, _, err := readBack(t, local.Path(v), nil); err != nil {
			t.Errorf("%s after pruning: %v", v, err)
		}
	}
	// A latest pointer left naming a version that is gone does not stop
	// pruning.
	if err := d.SetLatest(ctx, "v00000009"); err != nil {
		t.Fatal(err)
	}
	if dir, ok := d.(*Dir); ok {
		os.RemoveAll(dir.Path("v00000009"))
		if err := Prune(ctx, d, 1); err != nil {
			t.Fatalf("prune with latest dangling: %v", err)
		}
		if vs := versions(t, d); !slices.Equal(vs, []string{"v00000005", "v00000006", "v00000007"}) {
			t.Fatalf("keep 1 with latest dangling: %v", vs)
		}
	}
}

// The touched rows WriteDelta takes must be increasing and within the
// tables, and the parent a version.
func TestWriteDeltaChecks(t *testing.T) {
	ctx := context.Background()
	d := NewDir(t.TempDir())
	m, model := testModel(t, 5)
	snap := *m
	if _, err := Write(ctx, d, &snap, model, nil); err != nil {
		t.Fatal(err)
	}
	for _, rows := range [][][]int32{{{2, 1}, {}}, {{101}, {}}, {{-1}, {}}, {{1}}} {
		dm := *m
		if _, err := WriteDelta(ctx, d, &dm, model, nil, &snap, rows, CodecNone); err == nil {
			t.Errorf("rows %v accepted", rows)
		}
	}
	dm := *m
	if _, err := WriteDelta(ctx, d, &dm, model, nil, m, [][]int32{{}, {}}, CodecNone); err == nil {
		t.Error("a parent never written accepted")
	}
	if vs := versions(t, d); len(vs) != 1 {
		t.Errorf("refused deltas left versions: %v", vs)
	}
}
