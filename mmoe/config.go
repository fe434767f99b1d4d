package mmoe

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"slices"

	"go.yaml.in/yaml/v3"
)

// Activations accepted in Config.Activation.
const (
	ActReLU = "relu"
	ActTanh = "tanh"
	ActGELU = "gelu" // exact (erf) GELU, as PyTorch's nn.GELU()
)

// Limits that keep a typo in a config from allocating the machine away.
const (
	maxExperts = 1024
	maxWidth   = 1 << 16
	maxLevels  = 64
	maxDim     = 4096
)

// Config is the model: section of a spec file. Zero values mean "default";
// WithDefaults fills them in and Model.Config reports the effective values.
type Config struct {
	// Arch is one of mmoe, omoe, shared_bottom, single, soft, cgc, ple,
	// aitm. Default: "mmoe".
	Arch string `yaml:"arch" json:"arch"`
	// EmbeddingDim is the width of every embedding table. Default: 16.
	EmbeddingDim int `yaml:"embedding_dim" json:"embedding_dim"`
	// Experts is the number of shared experts. Default: 8 for mmoe, omoe,
	// cgc and ple; 1 (and only 1) for shared_bottom; must be 0 for single and
	// soft.
	Experts int `yaml:"experts" json:"experts"`
	// TaskExperts is the number of task-specific experts per task (cgc, ple).
	// Default: 1 for cgc, ple, single and soft (where it must be 1); must be 0
	// for the other archs.
	TaskExperts int `yaml:"task_experts" json:"task_experts"`
	// Levels is the number of stacked extraction levels of ple. Default: 2 for
	// ple, 1 otherwise (where it must be 1).
	Levels int `yaml:"levels" json:"levels"`
	// ExpertHidden are the layer widths of every expert MLP (each layer is
	// Linear + Activation; the last width is the expert's output width).
	// Default (nil): [256, 128]. An empty, non-nil list is an error.
	ExpertHidden []int `yaml:"expert_hidden" json:"expert_hidden"`
	// Tower are the hidden layer widths of each task's tower MLP, before the
	// linear head. Default (nil): [64]. An empty, non-nil list means no tower
	// (the head reads the gate output directly).
	Tower []int `yaml:"tower" json:"tower"`
	// Activation of experts and towers: relu, tanh or gelu. Default: "relu".
	Activation string `yaml:"activation" json:"activation"`
	// Seed seeds the weight initialisation. Default: 0 (a valid seed).
	Seed uint64 `yaml:"seed" json:"seed"`
	// AIT adds AITM's information transfer between the towers of adjacent
	// steps of a funnel (see ait.go) to any architecture: each head whose
	// task has a parent reads an attention over its own tower's output and
	// what its parent passes on. It needs Transfer. Default: false; arch
	// aitm always has it.
	AIT bool `yaml:"ait" json:"ait,omitempty"`
	// Transfer maps each head that receives AIT's transfer to the head it
	// receives it from (the task's parent), for AIT only. It is not a key
	// of the model: section: the caller fills it in from the tasks
	// (pipelines does, from each task's parent), and saved configurations
	// keep it.
	Transfer map[string]string `yaml:"-" json:"transfer,omitempty"`
}

// DefaultConfig returns the standard MMoE: 8 experts [256, 128], ReLU,
// embedding dim 16, towers [64].
func DefaultConfig() Config {
	return Config{}.WithDefaults()
}

// WithDefaults returns c with every zero field replaced by its documented
// default. It does not validate.
func (c Config) WithDefaults() Config {
	if c.Arch == "" {
		c.Arch = ArchMMoE
	}
	if c.EmbeddingDim == 0 {
		c.EmbeddingDim = 16
	}
	c.archDefaults()
	if c.ExpertHidden == nil {
		c.ExpertHidden = []int{256, 128}
	} else {
		c.ExpertHidden = slices.Clone(c.ExpertHidden)
	}
	if c.Tower == nil {
		c.Tower = []int{64}
	} else {
		c.Tower = slices.Clone(c.Tower)
	}
	if c.Activation == "" {
		c.Activation = ActReLU
	}
	c.Transfer = maps.Clone(c.Transfer)
	return c
}

// Validate reports whether c, with its defaults applied, describes a model.
// Errors wrap ErrConfig and name the offending key.
func (c *Config) Validate() error {
	d := c.WithDefaults()
	if !slices.Contains(Archs, d.Arch) {
		return configErr("arch %q: want one of %v", d.Arch, Archs)
	}
	if d.EmbeddingDim < 1 || d.EmbeddingDim > maxDim {
		return configErr("embedding_dim %d: want 1..%d", d.EmbeddingDim, maxDim)
	}
	if d.Experts < 0 || d.Experts > maxExperts {
		return configErr("experts %d: want 0..%d", d.Experts, maxExperts)
	}
	if d.TaskExperts < 0 || d.TaskExperts > maxExperts {
		return configErr("task_experts %d: want 0..%d", d.TaskExperts, maxExperts)
	}
	if d.Levels < 1 || d.Levels > maxLevels {
		return configErr("levels %d: want 1..%d", d.Levels, maxLevels)
	}
	if err := d.validateArch(); err != nil {
		return err
	}
	if len(d.ExpertHidden) == 0 {
		return configErr("expert_hidden: want at least one layer width")
	}
	for i, h := range d.ExpertHidden {
		if h < 1 || h > maxWidth {
			return configErr("expert_hidden[%d] = %d: want 1..%d", i, h, maxWidth)
		}
	}
	for i, h := range d.Tower {
		if h < 1 || h > maxWidth {
			return configErr("tower[%d] = %d: want 1..%d", i, h, maxWidth)
		}
	}
	if _, err := parseActivation(d.Activation); err != nil {
		return err
	}
	return nil
}

// ParseConfig decodes the YAML of a model: section (the mapping under the
// key, not the whole spec) with strict keys, applies defaults and validates.
// Empty input gives DefaultConfig.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, &kindError{msg: "mmoe: config: " + err.Error(), kind: ErrConfig, cause: err}
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c.WithDefaults(), nil
}

type activation uint8

const (
	actNone activation = iota
	actReLU
	actTanh
	actGELU
)

func parseActivation(s string) (activation, error) {
	switch s {
	case ActReLU:
		return actReLU, nil
	case ActTanh:
		return actTanh, nil
	case ActGELU:
		return actGELU, nil
	}
	return actNone, configErr("activation %q: want relu, tanh or gelu", s)
}
