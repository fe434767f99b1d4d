package bundle

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/tensorfile"
)

// IDsFile holds the id → row maps of a model's exact tables
// (features.IDTables.State) in the tensorfile layout. A version of a spec
// with exact fields has one; docs/formats.md describes its vectors.
const IDsFile = "ids.bin"

// idsFile is the File of ids' content, or nil when there are no tables.
func idsFile(ids *features.IDTables) []File {
	if ids.Len() == 0 {
		return nil
	}
	return []File{{Name: IDsFile, Write: idsWriter(ids.State())}}
}

// idsWriter writes st in the tensorfile layout.
func idsWriter(st features.IDState) func(io.Writer) error {
	return func(w io.Writer) error {
		return tensorfile.Write(w, tensorfile.Tensors{U64: st.U64, I64: st.I64})
	}
}

// ReadIDs returns the exact tables of spec (the spec m carries, parsed)
// filled from the version in dir: empty tables when spec has no exact
// field. Every check runs before the maps are filled:
//
//   - the maps' memory (features.Exact.MapBytes of every exact field)
//     plus the manifest must fit lim.MaxBytes, else the error wraps
//     ErrTooLarge (the rows themselves are the model's, ReadModel);
//   - ids.bin must exist and have the size and checksum m.Files records
//     (Verify), else the error wraps ErrCorrupt;
//   - its vectors must describe tables of spec exactly
//     (features.IDTables.SetState: lengths, rows in range and used once,
//     unique keys), else the error wraps features.ErrStats.
//
// The tables returned are new: serving builds one per bundle version and
// never changes it.
func ReadIDs(dir string, m *Manifest, spec *features.Spec, lim Limits) (*features.IDTables, error) {
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	var need int64
	for _, f := range spec.Fields {
		if f.Exact != nil {
			need = addSat(need, f.Exact.MapBytes())
		}
	}
	if need == 0 {
		return features.NewIDTables(spec)
	}
	if need, budget := addSat(need, m.size), lim.maxBytes(); need > budget {
		return nil, fmt.Errorf("%w: %s: the id maps of the exact tables need %s, the budget is %s",
			ErrTooLarge, dir, formatBytes(need), formatBytes(budget))
	}
	if err := Verify(dir, m, IDsFile); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(dir, IDsFile))
	if err != nil {
		return nil, fmt.Errorf("bundle: %s: the spec has exact tables: %w", dir, err)
	}
	defer f.Close()
	t, err := tensorfile.Read(f)
	if err != nil {
		return nil, fmt.Errorf("bundle: %s: %s: %w", dir, IDsFile, err)
	}
	if len(t.F32) > 0 || len(t.I32) > 0 {
		return nil, fmt.Errorf("bundle: %s: %s: %w: float32 or int32 vectors", dir, IDsFile, tensorfile.ErrFormat)
	}
	ids, err := features.NewIDTables(spec)
	if err != nil {
		return nil, err
	}
	if err := ids.SetState(features.IDState{U64: t.U64, I64: t.I64}); err != nil {
		return nil, fmt.Errorf("bundle: %s: %s: %w", dir, IDsFile, err)
	}
	return ids, nil
}
