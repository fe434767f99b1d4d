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
	"time"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
)

// FormatVersion is the bundle format this build writes and reads. A reader
// refuses a manifest of any other format version (docs/formats.md,
// "Version rules").
const FormatVersion = 1

// File names inside a bundle or checkpoint directory, and inside a root.
const (
	// ManifestFile is the manifest, the last file a version gets: a
	// version directory without it is not complete.
	ManifestFile = "bundle.json"
	// WeightsFile holds the model's tensors in the safetensors layout.
	WeightsFile = "weights.safetensors"
	// TrainerFile and OptimizerFile are a checkpoint's training state.
	TrainerFile   = "trainer.json"
	OptimizerFile = "optimizer.bin"
	// LatestLink is the symlink under a root that names the newest
	// published version.
	LatestLink = "latest"
	// CheckpointDir is the directory under a training output root that
	// holds the checkpoints; published bundles go to the root itself.
	CheckpointDir = "checkpoints"
)

// ErrNoBundle is returned when a root holds no complete bundle.
var ErrNoBundle = errors.New("bundle: no complete bundle")

// Manifest is bundle.json: everything needed to rebuild the transform and
// the model, besides the weights.
type Manifest struct {
	// FormatVersion is the bundle format (FormatVersion when written).
	FormatVersion int `json:"format_version"`
	// Version is the version's name. It is not in the file (a version is
	// named by its directory, known only once it is published):
	// ReadManifest and Write set it.
	Version string    `json:"version"`
	Created time.Time `json:"created"`
	// Spec is the feature spec's YAML text, exactly as parsed.
	Spec string `json:"spec"`
	// Stats are the fitted feature statistics (features.Stats as JSON).
	Stats json.RawMessage `json:"stats"`
	// Model is the effective model configuration.
	Model mmoe.Config `json:"model"`
	// Tasks are the task definitions, in head order.
	Tasks []mtl.TaskConfig `json:"tasks"`
	// Objectives are the scores this model produces (e.g. ctr, cvr, ctcvr).
	Objectives []string `json:"objectives"`
	// Precision is the precision of the products the model was trained
	// and its Sample scored in: "fp32" or "bf16" (bf16 operands, float32
	// sums). Empty means fp32 (bundles written before the field).
	Precision string `json:"precision,omitempty"`
	// Metrics are the evaluation results on validation data, if any.
	Metrics json.RawMessage `json:"metrics,omitempty"`
	// Position is where in its data the model was trained to (an
	// ingest.Position as JSON).
	Position json.RawMessage `json:"position,omitempty"`
	// Step and Examples count the optimizer steps and examples trained on.
	Step     int64 `json:"step"`
	Examples int64 `json:"examples"`
	// Sample holds a few raw events (JSON objects, spec columns) with the
	// scores this model gave them when it was written: a loader re-scores
	// them and refuses the bundle on any difference (beyond a tolerance
	// when its arithmetic differs from SampleKernel).
	Sample []SampleEvent `json:"sample,omitempty"`
	// SampleKernel names the arithmetic that computed the sample's scores,
	// "<kernel>/<GOARCH>" (kernels.Impl: "avx512/amd64", "go/arm64"):
	// serving.FillSampleScores sets it.
	SampleKernel string `json:"sample_kernel,omitempty"`
	// Files are the size and CRC-32C of every other file of the version,
	// by name (weights.safetensors, ids.bin with exact tables, and a
	// checkpoint's trainer.json and optimizer.bin). Write sets them; the manifest's own are in
	// ManifestSumFile. Nil in a version written before checksums: such a
	// version is read without verification (Verified).
	Files map[string]FileSum `json:"files,omitempty"`
	// Delta, when set, makes the version a delta: it holds no weights
	// file but DeltaFile, the changes since its parent version, and is
	// read by applying its chain onto its snapshot (ReadModel). Nil for
	// a full version (a snapshot).
	Delta *Delta `json:"delta,omitempty"`

	// size is the manifest file's length (ReadManifest), which counts
	// toward Limits.MaxBytes.
	size int64
	// sum is the manifest file's size and checksum, as its version's
	// ManifestSumFile records it: known once written or read.
	sum FileSum
}

// Sum is the size and CRC-32C of the manifest's file, once written
// (Write, WriteDelta) or read: what a delta of this version records as
// its parent's (Delta.ParentManifest).
func (m *Manifest) Sum() FileSum { return m.sum }

// Verified reports whether the version records checksums, so that its
// files are verified when read (Verify). Versions written before
// checksums are not.
func (m *Manifest) Verified() bool { return m.Files != nil }

// SampleEvent is one raw event and its expected scores, objective by
// objective in Manifest.Objectives order.
type SampleEvent struct {
	Event  json.RawMessage `json:"event"`
	Scores []float32       `json:"scores"`
}

// File is one file of a version: its name and the function that writes
// its content.
type File struct {
	Name  string
	Write func(w io.Writer) error
}

// jsonFile is a file holding v as indented JSON.
func jsonFile(name string, v any) File {
	return File{Name: name, Write: func(w io.Writer) error {
		data, err := marshalJSON(v)
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}}
}

// marshalJSON is v as indented JSON and a newline.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Write publishes model, the id maps of its exact tables ids (nil or
// empty when the spec has no exact field: no ids.bin is written) and its
// manifest m as a new version of s and returns the version's name. It sets m.FormatVersion, m.Created (when
// zero), m.Files (the checksum of every file it writes, which the
// manifest records; the manifest's own goes to ManifestSumFile) and, once
// published, m.Version.
//
// Every sample event must carry its scores: serving.FillSampleScores
// computes them through the serving path, which serving.LoadBundle checks
// bit for bit.
func Write(ctx context.Context, s Store, m *Manifest, model *mmoe.Model, ids *features.IDTables) (string, error) {
	return write(ctx, s, m, model, idsFile(ids))
}

// write publishes the weights, the extra files and the manifest, last.
func write(ctx context.Context, s Store, m *Manifest, model *mmoe.Model, extra []File) (string, error) {
	m.Delta = nil
	return writeFiles(ctx, s, m, append([]File{{Name: WeightsFile, Write: model.SaveSafetensors}}, extra...))
}

// writeFiles publishes files and the manifest, last, with its checksum
// file after it.
func writeFiles(ctx context.Context, s Store, m *Manifest, data []File) (string, error) {
	for i, ev := range m.Sample {
		if ev.Scores == nil {
			return "", fmt.Errorf("bundle: sample event %d has no scores (serving.FillSampleScores computes them)", i)
		}
	}
	m.FormatVersion = FormatVersion
	if m.Created.IsZero() {
		m.Created = time.Now().UTC()
	}
	// The version is the directory's name, known only after the publish,
	// so it is not written into the manifest: ReadManifest fills it in.
	m.Version = ""
	// Each file is checksummed as it is written; the manifest, written
	// after them, records the sums, and its own sum goes beside it.
	sums := map[string]FileSum{}
	summed := func(f File) File {
		return File{Name: f.Name, Write: func(w io.Writer) error {
			sw := newSummer(w)
			if err := f.Write(sw); err != nil {
				return err
			}
			sums[f.Name] = sw.sum()
			return nil
		}}
	}
	var manifestSum FileSum
	files := make([]File, 0, len(data)+2)
	for _, f := range data {
		files = append(files, summed(f))
	}
	files = append(files,
		File{Name: ManifestFile, Write: func(w io.Writer) error {
			m.Files = sums
			data, err := marshalJSON(m)
			if err != nil {
				return err
			}
			manifestSum = sumOf(data)
			_, err = w.Write(data)
			return err
		}},
		File{Name: ManifestSumFile, Write: func(w io.Writer) error {
			data, err := json.Marshal(manifestSum)
			if err != nil {
				return err
			}
			_, err = w.Write(append(data, '\n'))
			return err
		}})
	v, err := s.NewVersion(ctx, files)
	if err != nil {
		return "", err
	}
	m.Version = v
	m.sum = manifestSum
	return v, nil
}

// ReadManifest reads dir/bundle.json within the default Limits
// (ReadManifestLimits).
func ReadManifest(dir string) (*Manifest, error) {
	return ReadManifestLimits(dir, Limits{})
}

// ReadManifestLimits reads dir/bundle.json and checks it: a file larger
// than lim.MaxBytes is refused before it is read (wrapping ErrTooLarge),
// its bytes must match ManifestSumFile when that exists (and it must
// exist when the manifest records file checksums; wrapping ErrCorrupt),
// the JSON must parse, and the format version must be FormatVersion.
// Version is set to the directory's name (through symlinks: root/latest
// gives its target's).
func ReadManifestLimits(dir string, lim Limits) (*Manifest, error) {
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("bundle: %s: %w", dir, err)
	}
	defer f.Close()
	max := lim.maxBytes()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("bundle: %s: %w", dir, err)
	}
	if st.Size() > max {
		return nil, fmt.Errorf("%w: %s: %s has %s, the budget is %s", ErrTooLarge, dir, ManifestFile, formatBytes(st.Size()), formatBytes(max))
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("bundle: %s: %w", dir, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%w: %s: %s grew past the budget of %s while read", ErrTooLarge, dir, ManifestFile, formatBytes(max))
	}
	summed, err := checkManifestSum(dir, data)
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("bundle: %s: %s: %w", dir, ManifestFile, err)
	}
	if m.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("bundle: %s: format version %d, this build reads %d", dir, m.FormatVersion, FormatVersion)
	}
	if m.Files != nil && !summed {
		return nil, fmt.Errorf("%w: %s: %s records file checksums but %s is missing", ErrCorrupt, dir, ManifestFile, ManifestSumFile)
	}
	m.size = int64(len(data))
	m.sum = sumOf(data)
	m.Version = filepath.Base(dir)
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		m.Version = filepath.Base(real)
	}
	return &m, nil
}
