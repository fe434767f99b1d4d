// Package pipelines holds the jobs a user runs, composed from the other
// packages: fitting a spec's statistics, batch training from Parquet,
// evaluation, batch scoring to Parquet, architecture comparison and
// streaming training from Kafka. cmd/onestone only parses flags and calls
// them.
package pipelines

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
)

// Setup is everything parsed from one spec file: the feature spec and its
// fitted statistics, the model and training configurations, the tasks and
// the training transform.
type Setup struct {
	SpecPath    string
	SpecText    []byte
	Spec        *features.Spec
	Stats       *features.Stats
	Model       mmoe.Config
	Train       mtl.TrainConfig
	TaskConfigs []mtl.TaskConfig
	Tasks       *mtl.TaskSet
	Transformer *features.Transformer // with labels
}

// section returns the YAML of one top-level section of a spec file, or nil.
func section(text []byte, name string) ([]byte, error) {
	var doc map[string]yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil {
		return nil, err
	}
	n, ok := doc[name]
	if !ok {
		return nil, nil
	}
	return yaml.Marshal(&n)
}

// LoadSetup reads a spec file and its fitted statistics (the file
// features.StatsPath names). When the statistics are missing and fit is
// non-nil, fit is called to produce them first.
func LoadSetup(specPath string, fit func(*features.Spec) (*features.Stats, error)) (*Setup, error) {
	text, err := os.ReadFile(specPath)
	if err != nil {
		return nil, fmt.Errorf("pipelines: spec: %w", err)
	}
	s, err := setupFromText(text, nil)
	if err != nil {
		return nil, fmt.Errorf("pipelines: spec %s: %w", specPath, err)
	}
	s.SpecPath = specPath
	statsPath := features.StatsPath(specPath)
	s.Stats, err = features.LoadStats(statsPath)
	if errors.Is(err, os.ErrNotExist) && fit != nil {
		if s.Stats, err = fit(s.Spec); err == nil {
			err = s.Stats.Save(statsPath)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("pipelines: statistics %s (run 'onestone fit'): %w", statsPath, err)
	}
	if err := s.buildTransform(nil); err != nil {
		return nil, fmt.Errorf("pipelines: spec %s: %w", specPath, err)
	}
	return s, nil
}

// setupFromText parses a spec's text; stats may be nil (set later).
func setupFromText(text []byte, stats *features.Stats) (*Setup, error) {
	spec, err := features.ParseSpec(bytes.NewReader(text))
	if err != nil {
		return nil, err
	}
	s := &Setup{SpecText: text, Spec: spec, Stats: stats}
	msec, err := section(text, "model")
	if err != nil {
		return nil, err
	}
	if s.Model, err = mmoe.ParseConfig(msec); err != nil {
		return nil, err
	}
	if s.Train, err = mtl.ParseTrainConfig(text); err != nil {
		return nil, err
	}
	s.Train = s.Train.WithDefaults()
	for _, t := range spec.Tasks {
		s.TaskConfigs = append(s.TaskConfigs, mtl.TaskConfig{
			Name: t.Name, Kind: string(t.Kind), Label: t.Label, Parent: t.Parent, Mask: t.Mask,
			Counterfactual: t.Counterfactual, CounterfactualWeight: t.CounterfactualWeight, IPWClip: t.IPWClip,
			CalibratorWeight: t.CalibratorWeight,
		})
	}
	if s.Tasks, err = mtl.NewTaskSet(s.TaskConfigs); err != nil {
		return nil, err
	}
	s.Model = withTransfer(s.Model, s.TaskConfigs)
	if stats != nil {
		if err := s.buildTransform(nil); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// withTransfer fills in AIT's transfer (arch aitm, or model.ait) from the
// tasks: each task with a parent receives from its parent's head. It
// leaves other configurations as they are.
func withTransfer(c mmoe.Config, tasks []mtl.TaskConfig) mmoe.Config {
	if c.Arch != mmoe.ArchAITM && !c.AIT {
		return c
	}
	c.Transfer = map[string]string{}
	for _, t := range tasks {
		if t.Parent != "" {
			c.Transfer[t.Name] = t.Parent
		}
	}
	return c
}

// buildTransform builds the training transform with the exact tables ids
// (nil: new empty ones).
func (s *Setup) buildTransform(ids *features.IDTables) error {
	t, err := features.NewTransformer(s.Spec, s.Stats, features.TransformerConfig{Labels: true, IDs: ids})
	if err != nil {
		return err
	}
	if !slices.Equal(t.Layout().Labels, s.Tasks.Columns()) {
		return fmt.Errorf("pipelines: the transform's label columns %v are not the tasks' %v", t.Layout().Labels, s.Tasks.Columns())
	}
	s.Transformer = t
	return nil
}

// NewModel builds a freshly initialised model for the setup.
func (s *Setup) NewModel() (*mmoe.Model, error) {
	return mmoe.New(s.Model, s.Transformer.Layout(), s.heads())
}

// ReadModel builds the setup's model with the weights of a safetensors
// file (mmoe.NewFromSafetensors: no random initialisation to overwrite).
func (s *Setup) ReadModel(r io.Reader) (*mmoe.Model, error) {
	return mmoe.NewFromSafetensors(s.Model, s.Transformer.Layout(), s.heads(), r)
}

// heads are the model's heads: the tasks, in order, then their extra heads
// (mtl.TaskSet.Heads).
func (s *Setup) heads() []string { return s.Tasks.Heads() }

// LoadedModel is a bundle or checkpoint read back for evaluation or
// resumption. Its Setup's transform looks exact ids up in the bundle's id
// maps (IDs).
type LoadedModel struct {
	Dir      string
	Manifest *bundle.Manifest
	Setup    *Setup
	Model    *mmoe.Model
}

// IDs are the exact tables read from the bundle (empty without exact
// fields).
func (lm *LoadedModel) IDs() *features.IDTables { return lm.Setup.Transformer.IDs() }

// LoadModel is LoadModelLimits within the default bundle.Limits.
func LoadModel(path string) (*LoadedModel, error) {
	return LoadModelLimits(path, bundle.Limits{})
}

// LoadModelLimits reads a bundle directory (or the newest under a root,
// or the version an object store's latest pointer names, fetched into a
// temporary directory removed once read: bundle.ResolveLocal; Dir is then
// its URL) with its training setup (the spec it carries), through the checks
// serving.LoadBundle makes of the files: the manifest's checksum and
// format, the id maps of exact tables (bundle.ReadIDs), the model's size
// against lim, the weights' size and checksum,
// and their header against the configuration, all before the model is
// allocated (bundle.ReadModel). A panic while loading is an error.
func LoadModelLimits(path string, lim bundle.Limits) (lm *LoadedModel, err error) {
	defer func() {
		if r := recover(); r != nil {
			lm, err = nil, fmt.Errorf("pipelines: loading %s: panic: %v\n%s", path, r, debug.Stack())
		}
	}()
	dir, name, cleanup, err := bundle.ResolveLocal(context.Background(), path, lim)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	man, err := bundle.ReadManifestLimits(dir, lim)
	if err != nil {
		return nil, err
	}
	var stats features.Stats
	if err := json.Unmarshal(man.Stats, &stats); err != nil {
		return nil, fmt.Errorf("pipelines: bundle %s: stats: %w", dir, err)
	}
	s, err := setupFromText([]byte(man.Spec), nil)
	if err != nil {
		return nil, fmt.Errorf("pipelines: bundle %s: %w", dir, err)
	}
	s.Stats = &stats
	ids, err := bundle.ReadIDs(dir, man, s.Spec, lim)
	if err != nil {
		return nil, fmt.Errorf("pipelines: %w", err)
	}
	if err := s.buildTransform(ids); err != nil {
		return nil, fmt.Errorf("pipelines: bundle %s: %w", dir, err)
	}
	s.Model = man.Model
	m, err := bundle.ReadModel(dir, man, s.Transformer.Layout(), s.heads(), lim)
	if err != nil {
		return nil, fmt.Errorf("pipelines: %w", err)
	}
	return &LoadedModel{Dir: name, Manifest: man, Setup: s, Model: m}, nil
}
