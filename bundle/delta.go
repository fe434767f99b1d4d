package bundle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/tensorfile"
	"github.com/onestone/onestone/mmoe"
)

// DeltaFile is a delta version's data, in the layout of optimizer.bin
// (internal/tensorfile): every dense parameter whole, and for each
// embedding table the rows changed since the parent version and their
// values (docs/formats.md, "Delta").
const DeltaFile = "delta.bin"

// Name prefixes of the tensors in DeltaFile.
const (
	deltaDense  = "dense/"
	deltaRows   = "rows/"
	deltaValues = "values/"
)

// ErrChain is wrapped by every error about a delta whose chain cannot be
// followed back to its snapshot: a parent missing, incomplete, corrupt or
// not the one the delta was written against (another manifest checksum,
// another snapshot, another model), or a delta file that does not match
// its model.
var ErrChain = errors.New("bundle: broken delta chain")

// Delta is the delta member of a delta version's manifest.
type Delta struct {
	// Parent is the version the delta was computed against: applying it
	// to Parent's weights gives this version's.
	Parent string `json:"parent"`
	// ParentManifest is the size and CRC-32C of Parent's manifest file
	// (Manifest.Sum), so that a delta is never applied to another
	// version of the same name.
	ParentManifest FileSum `json:"parent_manifest"`
	// Snapshot is the full version the chain starts from.
	Snapshot string `json:"snapshot"`
	// Rows is the number of embedding rows the delta carries
	// (informative).
	Rows int64 `json:"rows"`
	// Codec is how DeltaFile's bytes are stored: CodecNone ("", left
	// out) or CodecZstd. Files records the checksum of the bytes stored.
	Codec string `json:"codec,omitempty"`
	// Decoded is the size and CRC-32C of DeltaFile once decoded, checked
	// after decompression; set with a Codec.
	Decoded *FileSum `json:"decoded,omitempty"`
}

// IsDelta reports whether the version is a delta.
func (m *Manifest) IsDelta() bool { return m.Delta != nil }

// snapshotOf is the snapshot a version's chain starts from: itself for a
// full version.
func (m *Manifest) snapshotOf() string {
	if m.Delta != nil {
		return m.Delta.Snapshot
	}
	return m.Version
}

// WriteDelta publishes model as a new version of s that is a delta of
// parent (a version of s, written or read: its Version and Sum are
// known): DeltaFile holds every dense parameter of model and, for each
// embedding table f, the rows rows[f] (increasing, within the table)
// with their values in model; every other row must be unchanged since
// parent. The id maps of the exact tables ids (nil or empty when the
// spec has none) are written whole (IDsFile), as Write does. m is the new
// version's manifest, complete as for Write (sample scores included: a
// reader checks them on the model the chain gives); WriteDelta sets
// m.Delta. DeltaFile is stored with codec (CodecNone or CodecZstd). It
// returns the version's name.
func WriteDelta(ctx context.Context, s Store, m *Manifest, model *mmoe.Model, ids *features.IDTables, parent *Manifest, rows [][]int32, codec string) (string, error) {
	if parent == nil || versionNumber(parent.Version) == 0 || parent.sum.CRC32C == "" {
		return "", errors.New("bundle: delta: the parent is not a written or read version")
	}
	if err := CheckCodec(codec); err != nil {
		return "", err
	}
	embs := model.Embeddings()
	if len(rows) != len(embs) {
		return "", fmt.Errorf("bundle: delta: rows of %d tables for a model of %d", len(rows), len(embs))
	}
	var n int64
	for i, e := range embs {
		for j, r := range rows[i] {
			if r < 0 || int(r) >= e.Rows || (j > 0 && r <= rows[i][j-1]) {
				return "", fmt.Errorf("bundle: delta: %s: row %d out of order or of the table's %d", e.Name, r, e.Rows)
			}
		}
		n += int64(len(rows[i]))
	}
	m.Delta = &Delta{Parent: parent.Version, ParentManifest: parent.sum, Snapshot: parent.snapshotOf(), Rows: n, Codec: codec}
	write := func(w io.Writer) error {
		t := tensorfile.Tensors{F32: map[string][]float32{}, I32: map[string][]int32{}}
		for _, p := range model.Params() {
			t.F32[deltaDense+p.Name] = p.Data
		}
		for i, e := range embs {
			vals := make([]float32, 0, len(rows[i])*e.Dim)
			for _, r := range rows[i] {
				vals = append(vals, e.Data[int(r)*e.Dim:(int(r)+1)*e.Dim]...)
			}
			t.I32[deltaRows+e.Name] = rows[i]
			t.F32[deltaValues+e.Name] = vals
		}
		return tensorfile.Write(w, t)
	}
	if codec != CodecNone {
		var raw bytes.Buffer
		if err := write(&raw); err != nil {
			return "", err
		}
		stored, err := encodeDelta(codec, raw.Bytes())
		if err != nil {
			return "", err
		}
		sum := sumOf(raw.Bytes())
		m.Delta.Decoded = &sum
		write = func(w io.Writer) error {
			_, err := w.Write(stored)
			return err
		}
	}
	files := []File{{Name: DeltaFile, Write: write}}
	return writeFiles(ctx, s, m, append(files, idsFile(ids)...))
}

// deltaData is a delta file read and checked against a model.
type deltaData struct {
	f32 map[string][]float32
	i32 map[string][]int32
}

// readDelta reads the delta file of the version in dir (m its manifest),
// checking its size and checksum, then every tensor against model: each
// dense parameter whole, each table's rows increasing within it and
// their values. Errors wrap ErrChain (and ErrCorrupt for a checksum).
func readDelta(dir string, m *Manifest, model *mmoe.Model, lim Limits) (*deltaData, error) {
	if m.Files == nil {
		return nil, fmt.Errorf("%w: %s: a delta must record checksums", ErrChain, dir)
	}
	want, ok := m.Files[DeltaFile]
	if !ok {
		return nil, fmt.Errorf("%w: %w: %s: %s has no checksum in %s", ErrChain, ErrCorrupt, dir, DeltaFile, ManifestFile)
	}
	if want.Size > lim.maxBytes() {
		return nil, fmt.Errorf("%w: %s: %s has %s, the budget is %s", ErrTooLarge, dir, DeltaFile, formatBytes(want.Size), formatBytes(lim.maxBytes()))
	}
	if err := Verify(dir, m, DeltaFile); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrChain, err)
	}
	t, err := readDeltaFile(dir, m.Delta, want, lim)
	if err != nil {
		return nil, err
	}
	f32, i32 := t.F32, t.I32
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s: %s", ErrChain, dir, DeltaFile, fmt.Sprintf(format, args...))
	}
	params, embs := model.Params(), model.Embeddings()
	if len(f32) != len(params)+len(embs) || len(i32) != len(embs) || len(t.I64) > 0 || len(t.U64) > 0 {
		return nil, bad("%d float and %d integer tensors, the model wants %d and %d", len(f32), len(i32), len(params)+len(embs), len(embs))
	}
	for _, p := range params {
		if v, ok := f32[deltaDense+p.Name]; !ok || len(v) != len(p.Data) {
			return nil, bad("dense parameter %s missing or not of %d values", p.Name, len(p.Data))
		}
	}
	for _, e := range embs {
		rows, ok := i32[deltaRows+e.Name]
		vals, ok2 := f32[deltaValues+e.Name]
		if !ok || !ok2 || len(vals) != len(rows)*e.Dim {
			return nil, bad("table %s: rows or values missing, or %d values for %d rows of %d", e.Name, len(vals), len(rows), e.Dim)
		}
		for j, r := range rows {
			if r < 0 || int(r) >= e.Rows || (j > 0 && r <= rows[j-1]) {
				return nil, bad("table %s: row %d out of order or of the table's %d", e.Name, r, e.Rows)
			}
		}
	}
	return &deltaData{f32: f32, i32: i32}, nil
}

// readDeltaFile reads the tensors of DeltaFile in dir (verified against
// want, its checksum in the manifest), decoding them with d's codec and
// checking the decoded bytes against d.Decoded. Errors wrap ErrChain.
func readDeltaFile(dir string, d *Delta, want FileSum, lim Limits) (tensorfile.Tensors, error) {
	path := filepath.Join(dir, DeltaFile)
	if d.Codec == CodecNone {
		f, err := os.Open(path)
		if err != nil {
			return tensorfile.Tensors{}, fmt.Errorf("%w: %s: %w", ErrChain, dir, err)
		}
		defer f.Close()
		t, err := tensorfile.Read(f)
		if err != nil {
			return t, fmt.Errorf("%w: %s: %s: %w", ErrChain, dir, DeltaFile, err)
		}
		return t, nil
	}
	if err := CheckCodec(d.Codec); err != nil {
		return tensorfile.Tensors{}, fmt.Errorf("%w: %s: %w", ErrChain, dir, err)
	}
	if d.Decoded == nil {
		return tensorfile.Tensors{}, fmt.Errorf("%w: %w: %s: codec %s without the decoded checksum", ErrChain, ErrCorrupt, dir, d.Codec)
	}
	stored, err := os.ReadFile(path)
	if err != nil {
		return tensorfile.Tensors{}, fmt.Errorf("%w: %s: %w", ErrChain, dir, err)
	}
	if int64(len(stored)) != want.Size { // changed since Verify
		return tensorfile.Tensors{}, fmt.Errorf("%w: %w: %s: %s has %d bytes, %s records %d", ErrChain, ErrCorrupt, dir, DeltaFile, len(stored), ManifestFile, want.Size)
	}
	raw, err := decodeDelta(d.Codec, stored, *d.Decoded, lim.maxBytes())
	if err != nil {
		return tensorfile.Tensors{}, fmt.Errorf("%w: %s: %s (%s): %w", ErrChain, dir, DeltaFile, d.Codec, err)
	}
	if got := sumOf(raw); got != *d.Decoded {
		return tensorfile.Tensors{}, fmt.Errorf("%w: %w: %s: %s decoded (%s): %d bytes of CRC-32C %s, %s records %d bytes of %s",
			ErrChain, ErrCorrupt, dir, DeltaFile, d.Codec, got.Size, got.CRC32C, ManifestFile, d.Decoded.Size, d.Decoded.CRC32C)
	}
	t, err := tensorfile.Read(bytes.NewReader(raw))
	if err != nil {
		return t, fmt.Errorf("%w: %s: %s: %w", ErrChain, dir, DeltaFile, err)
	}
	return t, nil
}

// apply writes the delta into model (checked by readDelta).
func (d *deltaData) apply(model *mmoe.Model) {
	for _, p := range model.Params() {
		copy(p.Data, d.f32[deltaDense+p.Name])
	}
	for _, e := range model.Embeddings() {
		vals := d.f32[deltaValues+e.Name]
		for j, r := range d.i32[deltaRows+e.Name] {
			copy(e.Data[int(r)*e.Dim:(int(r)+1)*e.Dim], vals[j*e.Dim:(j+1)*e.Dim])
		}
	}
}

// Base is a version already loaded, which a delta chain may start from
// instead of its snapshot: a server's model. Its Model is only read,
// unless Writable.
type Base struct {
	Manifest *Manifest
	Model    *mmoe.Model
	// Writable says that no one reads Model any more (a model a server
	// served before the one it serves now): a chain that passes through
	// its version is applied to Model itself, without the copy of the
	// whole model a read-only base costs; a full version, or the copy of
	// a read-only base a chain starts from, of the same sizes is written
	// into its storage (ReadModelFrom). After a read it was
	// given to, Model is in an unknown state and must be dropped.
	// Default: false.
	//
	// A Writable base without a Manifest is storage only (mmoe.Model.Spare):
	// no chain starts from it, a full version may be read into it.
	Writable bool
	// Next is another base, tried as well (a server passes the model it
	// serves, read-only, with the model it served before, writable, as
	// Next). A writable base the chain passes through is preferred.
	Next *Base
}

// bases lists b and the bases after it.
func (b *Base) bases() []*Base {
	var out []*Base
	for ; b != nil; b = b.Next {
		if b.Manifest != nil && b.Model != nil {
			out = append(out, b)
		}
	}
	return out
}

// storage returns the model of a Writable base (of b and its Next)
// whose storage a model of m's configuration, layout and heads would take
// exactly, or nil.
func (b *Base) storage(m *Manifest, layout features.Layout, heads []string) *mmoe.Model {
	for x := b; x != nil; x = x.Next {
		if x.Writable && x.Model != nil && x.Model.Fits(m.Model, layout, heads) {
			return x.Model
		}
	}
	return nil
}

// matches reports whether the delta member d was written against b's
// version.
func (b *Base) matches(d *Delta) bool {
	return b.Manifest.Version == d.Parent && b.Manifest.sum == d.ParentManifest && b.Manifest.snapshotOf() == d.Snapshot
}

// link is one version of a chain: its directory and manifest.
type link struct {
	dir string
	m   *Manifest
}

// chain follows the parents of the delta in dir (manifest m) through
// the versions beside it, back to its snapshot, or to a base (of
// base.bases()) when a parent is that base's version (same manifest
// checksum): a writable base is preferred when the chain reaches it. It
// returns the snapshot and nil, or nil and the base the chain starts
// from, and the deltas to apply, oldest first. Each parent must be
// complete, match its checksums, be the version the child was written
// against (Delta.ParentManifest), belong to the same snapshot and
// describe the same model (spec, statistics, model configuration,
// tasks); errors wrap ErrChain.
func chain(dir string, m *Manifest, base *Base, lim Limits) (snap *link, from *Base, deltas []link, err error) {
	root := filepath.Dir(dir)
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		root = filepath.Dir(real)
	}
	bases := base.bases()
	// oldestWritable is the lowest version number of a writable base: the
	// walk goes on past a read-only base while it may still reach one.
	oldestWritable := 0
	for _, b := range bases {
		if n := versionNumber(b.Manifest.Version); b.Writable && (oldestWritable == 0 || n < oldestWritable) {
			oldestWritable = n
		}
	}
	cur := link{dir, m}
	deltas = []link{cur}
	var found *Base // a read-only base the chain passes through
	var foundDeltas int
	for {
		d := cur.m.Delta
		if versionNumber(d.Parent) == 0 || versionNumber(d.Parent) >= versionNumber(cur.m.Version) {
			if found != nil {
				break
			}
			return nil, nil, nil, fmt.Errorf("%w: %s: parent %q is not an older version", ErrChain, cur.dir, d.Parent)
		}
		var hit *Base
		for _, b := range bases {
			if b.matches(d) && (hit == nil || b.Writable) {
				hit = b
			}
		}
		if hit != nil {
			if err := sameModel(hit.Manifest, m); err != nil {
				return nil, nil, nil, fmt.Errorf("%w: %s: %w", ErrChain, cur.dir, err)
			}
			if hit.Writable || versionNumber(d.Parent) <= oldestWritable || oldestWritable == 0 {
				from = hit
				break
			}
			if found == nil {
				found, foundDeltas = hit, len(deltas)
			}
		}
		pdir := filepath.Join(root, d.Parent)
		pm, err := ReadManifestLimits(pdir, lim)
		if err == nil && pm.sum != d.ParentManifest {
			err = fmt.Errorf("%w: %s: parent %s is not the version it was written against (manifest %s of %d bytes, the delta records %s of %d)",
				ErrChain, cur.dir, d.Parent, pm.sum.CRC32C, pm.sum.Size, d.ParentManifest.CRC32C, d.ParentManifest.Size)
		} else if err == nil && pm.snapshotOf() != d.Snapshot {
			err = fmt.Errorf("%w: %s: parent %s belongs to snapshot %s, the delta to %s", ErrChain, cur.dir, d.Parent, pm.snapshotOf(), d.Snapshot)
		} else if err == nil {
			if e := sameModel(pm, m); e != nil {
				err = fmt.Errorf("%w: %s: parent %s: %w", ErrChain, cur.dir, d.Parent, e)
			}
		} else {
			err = fmt.Errorf("%w: %s: parent %s: %w", ErrChain, cur.dir, d.Parent, err)
		}
		if err != nil {
			if found != nil {
				break // the chain up to the read-only base holds
			}
			return nil, nil, nil, err
		}
		if pm.Delta == nil || (found != nil && versionNumber(pm.Version) <= oldestWritable) {
			if found != nil {
				break // the writable base is not on this chain
			}
			snap = &link{pdir, pm}
			break
		}
		cur = link{pdir, pm}
		deltas = append(deltas, cur)
	}
	if from == nil && found != nil {
		from, snap, deltas = found, nil, deltas[:foundDeltas]
	}
	slices.Reverse(deltas)
	return snap, from, deltas, nil
}

// sameModel reports an error when a and b describe models of other
// tensors or another transform.
func sameModel(a, b *Manifest) error {
	switch {
	case a.Spec != b.Spec:
		return errors.New("another feature spec")
	case !bytes.Equal(bytes.TrimSpace(a.Stats), bytes.TrimSpace(b.Stats)):
		return errors.New("other fitted statistics")
	case !reflect.DeepEqual(a.Model, b.Model):
		return errors.New("another model configuration")
	case !reflect.DeepEqual(a.Tasks, b.Tasks):
		return errors.New("other tasks")
	}
	return nil
}

// readDeltaModel is ReadModel for a delta: its chain's snapshot read, or
// the base it starts from (base or one of its Next) cloned, or taken as
// it is when Writable, then each delta applied in order onto that
// model.
func readDeltaModel(dir string, m *Manifest, layout features.Layout, heads []string, lim Limits, base *Base) (*mmoe.Model, error) {
	snap, from, deltas, err := chain(dir, m, base, lim)
	if err != nil {
		return nil, err
	}
	var model *mmoe.Model
	switch {
	case snap != nil:
		if model, err = readWeights(snap.dir, snap.m, layout, heads, lim, base.storage(snap.m, layout, heads)); err != nil {
			return nil, fmt.Errorf("%w: %s: snapshot %s: %w", ErrChain, dir, snap.m.Version, err)
		}
	case from.Writable:
		model = from.Model
	default:
		if model, err = from.Model.CloneInto(base.storage(m, layout, heads)); err != nil {
			return nil, fmt.Errorf("bundle: %s: %w", dir, err)
		}
	}
	for _, l := range deltas {
		d, err := readDelta(l.dir, l.m, model, lim)
		if err != nil {
			return nil, err
		}
		d.apply(model)
	}
	return model, nil
}

// Needs returns the versions of s that reading each of vs needs: each
// of vs and, for a delta, every version from its snapshot up to it (a
// superset of its chain, which a single publisher writes in consecutive
// versions). Pruning keeps them. A version of vs that is not a complete
// version of s (a latest pointer left dangling) needs nothing.
func Needs(ctx context.Context, s Store, vs []string) (map[string]bool, error) {
	need := map[string]bool{}
	all, err := s.Versions(ctx)
	if err != nil {
		return nil, err
	}
	for _, v := range vs {
		if need[v] || !slices.Contains(all, v) {
			continue
		}
		need[v] = true
		d, err := readDeltaMember(ctx, s, v)
		if err != nil {
			return nil, err
		}
		if d == nil {
			continue
		}
		lo, hi := versionNumber(d.Snapshot), versionNumber(v)
		for _, o := range all {
			if n := versionNumber(o); n >= lo && n <= hi {
				need[o] = true
			}
		}
	}
	return need, nil
}

// maxManifestScan bounds what Needs reads of a manifest.
const maxManifestScan = 256 << 20

// readDeltaMember reads the delta member of version v's manifest: nil
// for a full version, and for a manifest that does not parse (which no
// reader would load; Needs keeps it when a delta's range covers it).
func readDeltaMember(ctx context.Context, s Store, v string) (*Delta, error) {
	data, err := readAllLimit(ctx, s, v, ManifestFile, maxManifestScan)
	if err != nil {
		return nil, err
	}
	var m struct {
		Delta *Delta `json:"delta"`
	}
	if json.Unmarshal(data, &m) != nil {
		return nil, nil
	}
	return m.Delta, nil
}

// FetchChain is Fetch for a version that may be a delta: v and every
// version of its chain that dst lacks, back to its snapshot (or to the
// first one dst holds), are fetched, oldest first, each checked as Fetch
// does. A parent missing from s or corrupt there is an error wrapping
// ErrChain. It returns v's directory in dst. The chain's links
// (checksums of the parents' manifests) are checked when the model is
// read (ReadModel).
func FetchChain(ctx context.Context, s Store, v string, dst *Dir, lim Limits) (string, error) {
	var need []string
	for cur := v; ; {
		if _, err := os.Stat(filepath.Join(dst.Path(cur), ManifestFile)); err == nil {
			break
		}
		m, err := ReadStoreManifest(ctx, s, cur, lim)
		if err != nil {
			if cur != v && (errors.Is(err, os.ErrNotExist) || errors.Is(err, ErrCorrupt)) {
				return "", fmt.Errorf("%w: %s %s: parent %s: %w", ErrChain, s, v, cur, err)
			}
			return "", err
		}
		need = append(need, cur)
		if m.Delta == nil {
			break
		}
		if versionNumber(m.Delta.Parent) == 0 || versionNumber(m.Delta.Parent) >= versionNumber(cur) {
			return "", fmt.Errorf("%w: %s %s: parent %q is not an older version", ErrChain, s, cur, m.Delta.Parent)
		}
		cur = m.Delta.Parent
	}
	for i := len(need) - 1; i >= 0; i-- {
		if _, err := Fetch(ctx, s, need[i], dst, lim); err != nil {
			if need[i] != v && errors.Is(err, ErrCorrupt) {
				return "", fmt.Errorf("%w: %s %s: %w", ErrChain, s, v, err)
			}
			return "", err
		}
	}
	return dst.Path(v), nil
}
