package bundle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

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
	// them and refuses the bundle on any difference.
	Sample []SampleEvent `json:"sample,omitempty"`
}

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
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}}
}

// Write publishes model and its manifest m as a new version of s and
// returns the version's name. It sets m.FormatVersion, m.Created (when
// zero) and, once published, m.Version.
//
// Every sample event must carry its scores: serving.FillSampleScores
// computes them through the serving path, which serving.LoadBundle checks
// bit for bit.
func Write(ctx context.Context, s Store, m *Manifest, model *mmoe.Model) (string, error) {
	return write(ctx, s, m, model, nil)
}

// write publishes the weights, the extra files and the manifest, last.
func write(ctx context.Context, s Store, m *Manifest, model *mmoe.Model, extra []File) (string, error) {
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
	files := make([]File, 0, len(extra)+2)
	files = append(files, File{Name: WeightsFile, Write: model.SaveSafetensors})
	files = append(files, extra...)
	files = append(files, jsonFile(ManifestFile, m))
	v, err := s.NewVersion(ctx, files)
	if err != nil {
		return "", err
	}
	m.Version = v
	return v, nil
}

// ReadManifest reads dir/bundle.json and refuses a format version other
// than FormatVersion. Version is set to the directory's name (through
// symlinks: root/latest gives its target's).
func ReadManifest(dir string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("bundle: %s: %w", dir, err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("bundle: %s: %s: %w", dir, ManifestFile, err)
	}
	if m.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("bundle: %s: format version %d, this build reads %d", dir, m.FormatVersion, FormatVersion)
	}
	m.Version = filepath.Base(dir)
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		m.Version = filepath.Base(real)
	}
	return &m, nil
}
