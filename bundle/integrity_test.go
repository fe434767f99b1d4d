package bundle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
)

// rewriteManifest replaces dir's manifest with data, and its checksum
// with data's: what a writer of that manifest would have left.
func rewriteManifest(t *testing.T, dir string, data []byte) {
	t.Helper()
	side, err := json.Marshal(sumOf(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestSumFile), side, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readAll reads what a loader reads of the version in dir: the manifest,
// and every file it records, verified.
func readAll(dir string) error {
	m, err := ReadManifest(dir)
	if err != nil {
		return err
	}
	for name := range m.Files {
		if err := Verify(dir, m, name); err != nil {
			return err
		}
	}
	return nil
}

// writeCheckpoint writes a checkpoint (every kind of file a version has)
// and returns its directory.
func writeCheckpoint(t *testing.T) string {
	t.Helper()
	m, model := testModel(t, 1)
	ck := &Checkpoint{Position: json.RawMessage(`{}`)}
	ck.State.Dense.Tensors = map[string][]float32{"w.m": {1, 2, 3}}
	ck.State.Sparse.Counts = map[string][]int32{"e.steps": {4, 5}}
	_, ids := testIDs(t)
	cks := Checkpoints(t.TempDir())
	v, err := WriteCheckpoint(context.Background(), cks, m, model, ids, ck, 0)
	if err != nil {
		t.Fatal(err)
	}
	return cks.Path(v)
}

func TestChecksumsWritten(t *testing.T) {
	dir := writeCheckpoint(t)
	m, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Verified() {
		t.Fatal("a new version is not verified")
	}
	var recorded []string
	for name, sum := range m.Files {
		recorded = append(recorded, name)
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := sumOf(data); got != sum {
			t.Errorf("%s: recorded %+v, the file's is %+v", name, sum, got)
		}
	}
	slices.Sort(recorded)
	if want := []string{IDsFile, OptimizerFile, TrainerFile, WeightsFile}; !slices.Equal(recorded, want) {
		t.Errorf("checksums of %v, want %v", recorded, want)
	}
	// CRC-32C itself: the check value of "123456789" (RFC 3720).
	if got := sumOf([]byte("123456789")).CRC32C; got != "e3069283" {
		t.Errorf("CRC-32C of 123456789 is %s, want e3069283", got)
	}
}

// TestFlippedByteAnywhere: one byte flipped anywhere in any file of a
// version, the manifest and its checksum included, is refused.
func TestFlippedByteAnywhere(t *testing.T) {
	dir := writeCheckpoint(t)
	if err := readAll(dir); err != nil {
		t.Fatal(err)
	}
	m, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ManifestFile, ManifestSumFile, WeightsFile, IDsFile, TrainerFile, OptimizerFile} {
		// The manifest and its checksum are checked by ReadManifest, the
		// others by Verify (readAll does both).
		check := func() error { return Verify(dir, m, name) }
		if name == ManifestFile || name == ManifestSumFile {
			check = func() error { _, err := ReadManifest(dir); return err }
		}
		p := filepath.Join(dir, name)
		orig, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		// flip writes byte i of the file flipped or, back, as it was.
		flip := func(i int, flipped bool) {
			b := orig[i]
			if flipped {
				b ^= 0x10
			}
			if _, err := f.WriteAt([]byte{b}, int64(i)); err != nil {
				t.Fatal(err)
			}
		}
		accepted := 0
		for i := range orig {
			flip(i, true)
			if err := check(); err == nil {
				if accepted++; accepted <= 3 {
					t.Errorf("%s: byte %d of %d flipped: accepted", name, i, len(orig))
				}
			}
			flip(i, false)
		}
		f.Close()
		if accepted > 0 {
			t.Errorf("%s: %d of %d flips accepted", name, accepted, len(orig))
		}
	}
	if err := readAll(dir); err != nil {
		t.Fatalf("after the flips: %v", err)
	}
	// A truncated file is refused by its size, before it is read.
	p := filepath.Join(dir, WeightsFile)
	orig, _ := os.ReadFile(p)
	os.WriteFile(p, orig[:len(orig)/2], 0o644)
	err = readAll(dir)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "truncated or still being copied") {
		t.Errorf("truncated weights: %v", err)
	}
}

// TestUnverifiedVersion: a version from before checksums (no files
// member, no sidecar) is still read, unverified; a manifest recording
// checksums without its sidecar is not.
func TestUnverifiedVersion(t *testing.T) {
	dir := writeCheckpoint(t)
	raw, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, ManifestSumFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadManifest(dir); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("checksums without the sidecar: %v", err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "files")
	old, _ := json.Marshal(doc)
	os.WriteFile(filepath.Join(dir, ManifestFile), old, 0o644)
	m, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Verified() {
		t.Error("a version without checksums is verified")
	}
	for _, name := range []string{WeightsFile, TrainerFile} {
		if err := Verify(dir, m, name); err != nil {
			t.Errorf("unverified %s: %v", name, err)
		}
	}
	if _, err := ReadCheckpoint(dir); err != nil {
		t.Errorf("an unverified checkpoint: %v", err)
	}
}

// allocated runs f and returns the bytes it allocated on the heap.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// layoutOf builds the layout of m's spec, as a loader does.
func layoutOf(t *testing.T, m *Manifest) features.Layout {
	t.Helper()
	spec, err := features.ParseSpec(strings.NewReader(m.Spec))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := features.NewTransformer(spec, nil, features.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Layout()
}

// TestReadModelLimits: a manifest whose spec asks for 2,000,000,000
// buckets is refused without allocating, over the budget, and also with a
// budget it fits (the weights do not agree); a model over a small budget
// is refused before its weights are read.
func TestReadModelLimits(t *testing.T) {
	d := NewDir(t.TempDir())
	m, model := testModel(t, 1)
	v, err := Write(context.Background(), d, m, model, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := d.Path(v)
	heads := []string{"ctr", "cvr"}
	m, err = ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadModel(dir, m, layoutOf(t, m), heads, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	model.SaveSafetensors(&a)
	got.SaveSafetensors(&b)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("the model read back differs")
	}
	fp, _ := mmoe.SizeOf(m.Model, layoutOf(t, m), heads)
	if _, err := ReadModel(dir, m, layoutOf(t, m), heads, Limits{MaxBytes: fp.Bytes()}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("tensors alone fill the budget: %v, want ErrTooLarge", err)
	}
	if _, err := ReadModel(dir, m, layoutOf(t, m), heads, Limits{MaxBytes: -1}); err == nil {
		t.Error("a negative budget is accepted")
	}

	raw, _ := os.ReadFile(filepath.Join(dir, ManifestFile))
	huge := strings.Replace(string(raw), `user_id, kind: categorical, buckets: 100}`, `user_id, kind: categorical, buckets: 2000000000}`, 1)
	if huge == string(raw) {
		t.Fatal("bucket count not found in the manifest")
	}
	rewriteManifest(t, dir, []byte(huge))
	m, err = ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		lim  Limits
		want error
	}{{Limits{}, ErrTooLarge}, {Limits{MaxBytes: math.MaxInt64}, mmoe.ErrFormat}} {
		var err error
		n := allocated(func() { _, err = ReadModel(dir, m, layoutOf(t, m), heads, tc.lim) })
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), dir) {
			t.Errorf("budget %d: %v, want %v naming the directory", tc.lim.MaxBytes, err, tc.want)
		}
		if n > 16<<20 {
			t.Errorf("budget %d: allocated %d MiB before refusing", tc.lim.MaxBytes, n>>20)
		}
	}
	// The manifest itself counts: one larger than the budget is not read.
	if _, err := ReadManifestLimits(dir, Limits{MaxBytes: int64(len(huge)) - 1}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("manifest over the budget: %v", err)
	}
}

func TestDefaultMaxBytes(t *testing.T) {
	n := DefaultMaxBytes()
	if n <= 0 {
		t.Fatalf("DefaultMaxBytes %d", n)
	}
	if mem := totalMemory(); mem > 0 && n > mem/4 {
		t.Errorf("DefaultMaxBytes %d is more than a quarter of the machine's %d", n, mem)
	}
}
