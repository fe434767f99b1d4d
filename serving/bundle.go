package serving

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/fileutil"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
)

// FormatVersion is the bundle format this build writes and reads.
const FormatVersion = 1

// File names inside a bundle directory.
const (
	ManifestFile = "bundle.json"
	WeightsFile  = "weights.safetensors"
	// LatestLink is the symlink under a bundle root that names the newest
	// published version.
	LatestLink = "latest"
)

// ErrNoBundle is returned when a root holds no complete bundle.
var ErrNoBundle = errors.New("serving: no complete bundle")

// Manifest is bundle.json: everything needed to rebuild the transform and
// the model, besides the weights.
type Manifest struct {
	FormatVersion int       `json:"format_version"`
	Version       string    `json:"version"`
	Created       time.Time `json:"created"`
	// Spec is the feature spec's YAML text, exactly as parsed.
	Spec string `json:"spec"`
	// Stats are the fitted feature statistics.
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

// Bundle is a loaded, validated model bundle: the manifest plus everything
// rebuilt from it. A Bundle is read-only after loading and safe for
// concurrent use.
type Bundle struct {
	// Dir is the bundle directory it was loaded from.
	Dir      string
	Manifest *Manifest
	// Spec and Stats are the parsed feature spec and fitted statistics.
	Spec  *features.Spec
	Stats *features.Stats
	// Transformer is the serving transform: the training transform without
	// labels, sample weight or group key.
	Transformer *features.Transformer
	Model       *mmoe.Model
	Tasks       *mtl.TaskSet

	servingSpec *features.Spec
}

// FileWriter writes one file of a bundle or checkpoint.
type FileWriter func(w io.Writer) error

// WriteDir writes a new numbered version directory under root atomically
// (internal/fileutil.PublishDir): the files go to a temporary directory
// inside root, each is fsynced, then the directory is renamed to
// root/<version> and root is fsynced. A reader therefore sees a whole
// version or none. It returns the new directory. Versions are "v" and
// eight digits, one more than the highest present.
func WriteDir(root string, files map[string]FileWriter) (dir string, err error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	fs := make([]fileutil.File, len(names))
	for i, n := range names {
		fs[i] = fileutil.File{Name: n, Write: files[n]}
	}
	dir, err = fileutil.PublishDir(root, fs, func() (string, error) {
		vs, err := versions(root)
		if err != nil {
			return "", err
		}
		next := 1
		if len(vs) > 0 {
			next = versionNumber(vs[len(vs)-1]) + 1
		}
		return fmt.Sprintf("v%08d", next), nil
	})
	if err != nil {
		return "", fmt.Errorf("serving: bundle root %s: %w", root, err)
	}
	return dir, nil
}

// versions lists the complete version directories under root (those holding
// a bundle.json), oldest first.
func versions(root string) ([]string, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("serving: %w", err)
	}
	var vs []string
	for _, e := range ents {
		if e.IsDir() && versionNumber(e.Name()) > 0 {
			vs = append(vs, e.Name())
		}
	}
	slices.SortFunc(vs, func(a, b string) int { return versionNumber(a) - versionNumber(b) })
	return vs, nil
}

func versionNumber(name string) int {
	if len(name) < 2 || name[0] != 'v' {
		return 0
	}
	n, err := strconv.Atoi(name[1:])
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

// Versions lists the complete versions under root, oldest first.
func Versions(root string) ([]string, error) {
	vs, err := versions(root)
	if err != nil {
		return nil, err
	}
	out := vs[:0]
	for _, v := range vs {
		if _, err := os.Stat(filepath.Join(root, v, ManifestFile)); err == nil {
			out = append(out, v)
		}
	}
	return out, nil
}

// Resolve turns a user's --model argument into a bundle directory: a
// directory holding bundle.json is itself; a root gives its newest complete
// version; a "latest" link is followed.
//
// A directory reached through a symlink (root/latest) is returned as its
// target, so its base name is the version.
func Resolve(path string) (string, error) {
	if _, err := os.Stat(filepath.Join(path, ManifestFile)); err == nil {
		if real, err := filepath.EvalSymlinks(path); err == nil {
			return real, nil
		}
		return path, nil
	}
	vs, err := Versions(path)
	if err != nil {
		return "", err
	}
	if len(vs) == 0 {
		return "", fmt.Errorf("%w under %s", ErrNoBundle, path)
	}
	return filepath.Join(path, vs[len(vs)-1]), nil
}

// SetLatest points root/latest at version dir, atomically (a new symlink
// renamed over the old).
func SetLatest(root, dir string) error {
	tmp := filepath.Join(root, ".latest.tmp")
	os.Remove(tmp)
	if err := os.Symlink(filepath.Base(dir), tmp); err != nil {
		return fmt.Errorf("serving: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(root, LatestLink)); err != nil {
		return fmt.Errorf("serving: %w", err)
	}
	if err := fileutil.SyncDir(root); err != nil {
		return fmt.Errorf("serving: %w", err)
	}
	return nil
}

// Prune removes all but the newest keep versions under root, never the one
// that latest points to. Leftover temporary directories are removed too.
func Prune(root string, keep int) error {
	vs, err := Versions(root)
	if err != nil || keep <= 0 || len(vs) <= keep {
		return err
	}
	latest, _ := os.Readlink(filepath.Join(root, LatestLink))
	for _, v := range vs[:len(vs)-keep] {
		if v == latest {
			continue
		}
		if err := os.RemoveAll(filepath.Join(root, v)); err != nil {
			return fmt.Errorf("serving: prune: %w", err)
		}
	}
	return nil
}

// ManifestWriter encodes m as indented JSON.
func ManifestWriter(m *Manifest) FileWriter {
	return func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(m)
	}
}

// WriteBundle publishes model and its manifest as a new version under root,
// with any extra files (a checkpoint's optimizer state), and returns the
// directory. m.Version and m.FormatVersion are set from the directory name.
//
// Sample events without scores are scored first with FillSampleScores, so
// the bundle carries the check LoadBundle runs.
func WriteBundle(root string, m *Manifest, model *mmoe.Model, extra map[string]FileWriter) (string, error) {
	for _, s := range m.Sample {
		if s.Scores == nil {
			if err := FillSampleScores(m, model); err != nil {
				return "", err
			}
			break
		}
	}
	m.FormatVersion = FormatVersion
	if m.Created.IsZero() {
		m.Created = time.Now().UTC()
	}
	files := map[string]FileWriter{
		WeightsFile: model.SaveSafetensors,
	}
	for n, fw := range extra {
		files[n] = fw
	}
	// The version is the directory's name, known only after the atomic
	// rename, so it is not written into the manifest: ReadManifest fills
	// Version from the directory name.
	m.Version = ""
	files[ManifestFile] = ManifestWriter(m)
	dir, err := WriteDir(root, files)
	if err != nil {
		return "", err
	}
	m.Version = filepath.Base(dir)
	return dir, nil
}

// ReadManifest reads dir/bundle.json.
func ReadManifest(dir string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("serving: bundle %s: %w", dir, err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("serving: bundle %s: %s: %w", dir, ManifestFile, err)
	}
	if m.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("serving: bundle %s: format version %d, this build reads %d", dir, m.FormatVersion, FormatVersion)
	}
	m.Version = filepath.Base(dir)
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		m.Version = filepath.Base(real) // root/latest names its target
	}
	return &m, nil
}
