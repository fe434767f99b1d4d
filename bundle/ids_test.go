package bundle

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/onestone/onestone/features"
)

const idsSpec = `fields:
  - {name: user_id, kind: categorical, exact: {capacity: 50, admit_after: 2, evict: lru}}
  - {name: item_id, kind: categorical, buckets: 100, side: candidate}
  - {name: tags, kind: multi_categorical, exact: {capacity: 20, ttl: 300}}
tasks:
  - {name: ctr, kind: binary, label: click}
`

// testIDs returns exact tables of idsSpec after a few batches of random
// ids (more than their capacity, so that ids wait, are admitted, evicted
// and expire).
func testIDs(t *testing.T) (*features.Spec, *features.IDTables) {
	t.Helper()
	spec, err := features.ParseSpec(strings.NewReader(idsSpec))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := features.NewIDTables(spec)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	const rows = 64
	for range 20 {
		b := features.Batch{Rows: rows, Sparse: make([]features.SparseColumn, 3)}
		for _, f := range []int{0, 2} {
			col := &b.Sparse[f]
			col.IDs, col.Keys = make([]int32, rows), make([]uint64, rows)
			for i := range col.Keys {
				col.IDs[i], col.Keys[i] = 1, uint64(r.IntN(200))*0x9e3779b97f4a7c15
			}
			if f == 2 {
				col.Offsets = make([]int32, rows+1)
				for i := range col.Offsets {
					col.Offsets[i] = int32(i)
				}
			}
		}
		if _, err := ids.Admit(&b); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range ids.Stats() {
		if s.Rows == 0 || s.Admissions <= int64(s.Rows) {
			t.Fatalf("%s: the test batches did not fill and churn the table: %s", s.Field, s)
		}
	}
	return spec, ids
}

func TestIDsRoundTrip(t *testing.T) {
	spec, ids := testIDs(t)
	m, model := testModel(t, 1)
	d := NewDir(t.TempDir())
	v, err := Write(context.Background(), d, m, model, ids)
	if err != nil {
		t.Fatal(err)
	}
	dir := d.Path(v)
	m, err = ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Files[IDsFile]; !ok {
		t.Fatalf("the manifest records no checksum of %s: %v", IDsFile, m.Files)
	}
	got, err := ReadIDs(dir, m, spec, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if want := ids.State(); !reflect.DeepEqual(got.State(), want) {
		t.Fatalf("read back:\n%v\nwritten:\n%v", got.State(), want)
	}
	if !reflect.DeepEqual(got.Stats(), ids.Stats()) {
		t.Errorf("stats read back %v, written %v", got.Stats(), ids.Stats())
	}

	// A spec without exact fields needs no ids.bin; one with needs it.
	plain, err := features.ParseSpec(strings.NewReader(testSpec))
	if err != nil {
		t.Fatal(err)
	}
	m2, _ := testModel(t, 1)
	v2, err := Write(context.Background(), d, m2, model, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d.Path(v2), IDsFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a version without exact tables has %s (%v)", IDsFile, err)
	}
	m2, err = ReadManifest(d.Path(v2))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ReadIDs(d.Path(v2), m2, plain, Limits{}); err != nil || got.Len() != 0 {
		t.Errorf("no exact fields: %v tables, %v", got.Len(), err)
	}
	if _, err := ReadIDs(d.Path(v2), m2, spec, Limits{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("exact fields and no %s: %v, want ErrCorrupt (no checksum recorded)", IDsFile, err)
	}

	// Another capacity: the maps do not fit the spec's tables.
	other, err := features.ParseSpec(strings.NewReader(strings.Replace(idsSpec, "capacity: 50", "capacity: 10", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadIDs(dir, m, other, Limits{}); !errors.Is(err, features.ErrStats) {
		t.Errorf("a smaller capacity: %v, want features.ErrStats", err)
	}
	// The maps' memory counts against the budget.
	if _, err := ReadIDs(dir, m, spec, Limits{MaxBytes: 1000}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over the budget: %v, want ErrTooLarge", err)
	}
	// A flipped byte.
	p := filepath.Join(dir, IDsFile)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-3] ^= 1
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadIDs(dir, m, spec, Limits{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a flipped byte: %v, want ErrCorrupt", err)
	}
}

// TestIDsInCheckpoint: a checkpoint holds the maps too, and a change of
// ids.bin that keeps its checksum right (a bug in a writer) is still
// refused by the checks of its content.
func TestIDsInCheckpoint(t *testing.T) {
	spec, ids := testIDs(t)
	m, model := testModel(t, 1)
	cks := Checkpoints(t.TempDir())
	v, err := WriteCheckpoint(context.Background(), cks, m, model, ids, &Checkpoint{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := cks.Path(v)
	m, err = ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadIDs(dir, m, spec, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.State(), ids.State()) {
		t.Fatal("the checkpoint's maps differ from the tables written")
	}
	// A duplicated key, checksummed as if written so.
	st := ids.State()
	keys := st.U64["user_id.keys"]
	keys[1] = keys[0]
	bad, err := features.NewIDTables(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.SetState(st); err == nil {
		t.Fatal("SetState accepted a duplicated key")
	}
	p := filepath.Join(dir, IDsFile)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	sw := newSummer(f)
	if err := idsWriter(st)(sw); err != nil {
		t.Fatal(err)
	}
	f.Close()
	m.Files[IDsFile] = sw.sum()
	if _, err := ReadIDs(dir, m, spec, Limits{}); !errors.Is(err, features.ErrStats) {
		t.Errorf("a duplicated key: %v, want features.ErrStats", err)
	}
}

// TestFormatsDocIDs: docs/formats.md lists every vector of ids.bin.
func TestFormatsDocIDs(t *testing.T) {
	doc, err := os.ReadFile(docsFormats)
	if err != nil {
		t.Fatal(err)
	}
	_, ids := testIDs(t)
	st := ids.State()
	var names []string
	for n := range st.U64 {
		names = append(names, n)
	}
	for n := range st.I64 {
		names = append(names, n)
	}
	for _, n := range names {
		_, suffix, _ := strings.Cut(n, ".")
		if !strings.Contains(string(doc), "`<f>."+suffix+"`") {
			t.Errorf("%s does not describe the vector %q", docsFormats, "<f>."+suffix)
		}
	}
	if len(st.I64["user_id.state"]) != 9 || !strings.Contains(string(doc), "9 values: clock") {
		t.Errorf("the .state vector has %d values; the document says 9", len(st.I64["user_id.state"]))
	}
}

// TestIDsInBucket: in an object store ids.bin is published with the
// weights, fetched and checked against its checksum like them (a byte
// changed in the store is refused and nothing is fetched), and removed
// with its version.
func TestIDsInBucket(t *testing.T) {
	ctx := context.Background()
	spec, ids := testIDs(t)
	b, raw := testBucket(t)
	m, model := testModel(t, 1)
	v1, err := Publish(ctx, b, m, model, ids, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := raw.Exists(ctx, v1+"/"+IDsFile); !ok || err != nil {
		t.Fatalf("%s/%s is not in the store (%v)", v1, IDsFile, err)
	}
	dir, err := Fetch(ctx, b, v1, NewDir(t.TempDir()), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	lm, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadIDs(dir, lm, spec, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.State(), ids.State()) {
		t.Fatal("the fetched maps differ from the tables published")
	}

	m2, _ := testModel(t, 2)
	v2, err := Publish(ctx, b, m2, model, ids, 0)
	if err != nil {
		t.Fatal(err)
	}
	data, err := raw.ReadAll(ctx, v2+"/"+IDsFile)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	if err := raw.WriteAll(ctx, v2+"/"+IDsFile, data, nil); err != nil {
		t.Fatal(err)
	}
	local := NewDir(t.TempDir())
	if _, err := Fetch(ctx, b, v2, local, Limits{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Fetch of a changed %s: %v, want ErrCorrupt", IDsFile, err)
	}
	if ents, _ := os.ReadDir(local.Root()); len(ents) != 0 {
		t.Fatalf("the local store holds %v after a refused fetch", ents)
	}

	if err := b.Remove(ctx, v1); err != nil {
		t.Fatal(err)
	}
	if ok, err := raw.Exists(ctx, v1+"/"+IDsFile); ok || err != nil {
		t.Fatalf("%s/%s outlives its version (%v)", v1, IDsFile, err)
	}
}
