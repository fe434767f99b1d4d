package join

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.yaml.in/yaml/v3"

	"github.com/onestone/onestone/features"
)

// Emission modes (Config.Emit).
const (
	// EmitClick trains a clicked impression at its click, with conversion
	// 0, and re-sends it with conversion 1 when its conversion arrives
	// (Kinds Click and Conversion): fresh, with delayed feedback.
	EmitClick = "click"
	// EmitLabel waits for a clicked impression's final label: its
	// conversion, or the end of its conversion window (Kind Final):
	// right, but late. It is the oracle the corrections are measured
	// against.
	EmitLabel = "label"
)

// Delayed-feedback corrections (Config.Correction).
const (
	// CorrectionNone trains the re-sent positives with no correction (the
	// naive baseline). With EmitClick, the conversion task still skips
	// nothing and the other tasks skip the re-sent rows (mtl
	// DelayedResend).
	CorrectionNone = "none"
	// CorrectionFNW is fake-negative weighting (Ktena et al., RecSys 2019)
	// on the conversion task (mtl DelayedFNW). It needs EmitClick.
	CorrectionFNW = "fnw"
)

// Defaults of Config.
const (
	DefaultClickWindow      = 30 * time.Minute
	DefaultConversionWindow = 7 * 24 * time.Hour
	DefaultLateness         = 5 * time.Second
	DefaultMaxSkew          = 5 * time.Second
	DefaultMaxFuture        = time.Hour
	DefaultIdleTimeout      = time.Minute
	DefaultMaxStateBytes    = 512 << 20
)

// Config configures a Join. It is also the join: section of a spec file
// (ParseConfig); zero fields take the documented defaults.
type Config struct {
	// ClickWindow is how long after its impression (in event time) a click
	// counts. Default: 30m.
	ClickWindow time.Duration `yaml:"click_window"`
	// ConversionWindow is how long after its click (in event time) a
	// conversion counts. Default: 7d.
	ConversionWindow time.Duration `yaml:"conversion_window"`
	// Emit is EmitClick (default) or EmitLabel.
	Emit string `yaml:"emit"`
	// Correction is the delayed-feedback correction the trainer applies to
	// the conversion task: CorrectionNone (default) or CorrectionFNW. The
	// join emits the same rows for both; pipelines reads it to configure
	// the task (mtl.TaskConfig.DelayedFeedback).
	Correction string `yaml:"correction"`
	// IDField and TimeField are the keys of the impression id (a string or
	// a number) and of the event time (an integer, milliseconds since the
	// Unix epoch) in all three topics. Defaults: "impression_id", "ts_ms".
	IDField   string `yaml:"id_field"`
	TimeField string `yaml:"time_field"`
	// ClickLabel and ConversionLabel are the keys the join adds to an
	// impression to make it an example (the label columns of the spec's
	// click and conversion tasks). Defaults: "click", "conversion".
	ClickLabel      string `yaml:"click_label"`
	ConversionLabel string `yaml:"conversion_label"`
	// Lateness is how far out of event-time order the events of one
	// partition may come: a partition's watermark is the largest event
	// time it delivered minus Lateness. Default: 5s; negative means 0.
	Lateness time.Duration `yaml:"lateness"`
	// MaxSkew is how much earlier than its impression a click (or than its
	// click a conversion) may be logged, for clocks that disagree; such an
	// event counts as if it came at once. Default: 5s; negative means 0.
	MaxSkew time.Duration `yaml:"max_skew"`
	// MaxFuture rejects events whose time is more than this after the
	// processing time (a client clock far ahead). Default: 1h.
	MaxFuture time.Duration `yaml:"max_future"`
	// IdleTimeout excludes a partition that delivered nothing for this
	// long (processing time) from its topic's watermark, so a stalled
	// partition cannot hold the windows open; when a whole topic is idle
	// its watermark follows the slowest active topic. Default: 1m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// Retention is how long after its window (in event time) a closed
	// impression is remembered, so that a late click or conversion, or a
	// duplicate, is recognised as such rather than as an orphan.
	// Default: ClickWindow; negative means 0.
	Retention time.Duration `yaml:"retention"`
	// MaxStateBytes caps the join state (Stats.StateBytes); when it is
	// exceeded the oldest waiting impression is closed early (see the
	// package doc). Default: 512 MiB.
	MaxStateBytes int64 `yaml:"max_state_bytes"`
	// MaxEventBytes sends longer messages to the dead letters.
	// Default: features.DefaultMaxEventBytes (1 MiB).
	MaxEventBytes int `yaml:"max_event_bytes"`

	// Topics name the three inputs in dead letters. Default:
	// "impressions", "clicks", "conversions".
	Topics [3]string `yaml:"-"`
	// Allocator builds the records the id and time are decoded into.
	// Default: memory.DefaultAllocator.
	Allocator memory.Allocator `yaml:"-"`
}

// Validate reports whether the configuration is usable.
func (c Config) Validate() error {
	switch {
	case c.ClickWindow < 0 || c.ConversionWindow < 0:
		return fmt.Errorf("join: negative window (click %v, conversion %v)", c.ClickWindow, c.ConversionWindow)
	case c.MaxFuture < 0 || c.IdleTimeout < 0:
		return fmt.Errorf("join: negative max_future %v or idle_timeout %v", c.MaxFuture, c.IdleTimeout)
	case c.MaxStateBytes < 0 || c.MaxEventBytes < 0:
		return fmt.Errorf("join: negative max_state_bytes %d or max_event_bytes %d", c.MaxStateBytes, c.MaxEventBytes)
	}
	switch c.Emit {
	case "", EmitClick, EmitLabel:
	default:
		return fmt.Errorf("join: emit %q: want %q or %q", c.Emit, EmitClick, EmitLabel)
	}
	switch c.Correction {
	case "", CorrectionNone:
	case CorrectionFNW:
		if c.Emit == EmitLabel {
			return fmt.Errorf("join: correction %q corrects rows trained before their label is final; it needs emit %q, not %q", c.Correction, EmitClick, EmitLabel)
		}
	default:
		return fmt.Errorf("join: correction %q: want %q or %q", c.Correction, CorrectionNone, CorrectionFNW)
	}
	d := c.withDefaults()
	names := []string{d.IDField, d.TimeField, d.ClickLabel, d.ConversionLabel}
	for i, n := range names {
		for _, m := range names[:i] {
			if n == m {
				return fmt.Errorf("join: the id, time, click and conversion keys must differ, %q is used twice", n)
			}
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		switch {
		case *d == 0:
			*d = v
		case *d < 0:
			*d = 0
		}
	}
	def(&c.ClickWindow, DefaultClickWindow)
	def(&c.ConversionWindow, DefaultConversionWindow)
	def(&c.Lateness, DefaultLateness)
	def(&c.MaxSkew, DefaultMaxSkew)
	def(&c.MaxFuture, DefaultMaxFuture)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	def(&c.Retention, c.ClickWindow)
	str := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	str(&c.Emit, EmitClick)
	str(&c.Correction, CorrectionNone)
	str(&c.IDField, "impression_id")
	str(&c.TimeField, "ts_ms")
	str(&c.ClickLabel, "click")
	str(&c.ConversionLabel, "conversion")
	for t, n := range [...]string{"impressions", "clicks", "conversions"} {
		str(&c.Topics[t], n)
	}
	if c.MaxStateBytes == 0 {
		c.MaxStateBytes = DefaultMaxStateBytes
	}
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = features.DefaultMaxEventBytes
	}
	if c.Allocator == nil {
		c.Allocator = memory.DefaultAllocator
	}
	return c
}

// WithDefaults returns c with every default filled in.
func (c Config) WithDefaults() Config { return c.withDefaults() }

// yamlConfig is Config as written in a spec: durations as text.
type yamlConfig struct {
	ClickWindow      string `yaml:"click_window"`
	ConversionWindow string `yaml:"conversion_window"`
	Emit             string `yaml:"emit"`
	Correction       string `yaml:"correction"`
	IDField          string `yaml:"id_field"`
	TimeField        string `yaml:"time_field"`
	ClickLabel       string `yaml:"click_label"`
	ConversionLabel  string `yaml:"conversion_label"`
	Lateness         string `yaml:"lateness"`
	MaxSkew          string `yaml:"max_skew"`
	MaxFuture        string `yaml:"max_future"`
	IdleTimeout      string `yaml:"idle_timeout"`
	Retention        string `yaml:"retention"`
	MaxStateBytes    int64  `yaml:"max_state_bytes"`
	MaxEventBytes    int    `yaml:"max_event_bytes"`
}

// ParseConfig parses the join: section of a spec file (its YAML, as a
// mapping; empty input gives the defaults), strictly: an unknown key is an
// error. Durations are Go durations ("90s", "30m", "1h30m") or take a "d"
// for days ("7d", "1d12h"). It returns the validated configuration with
// defaults filled in.
func ParseConfig(data []byte) (Config, error) {
	var y yamlConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&y); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("join: config: %w", err)
	}
	c := Config{Emit: y.Emit, Correction: y.Correction, IDField: y.IDField, TimeField: y.TimeField,
		ClickLabel: y.ClickLabel, ConversionLabel: y.ConversionLabel,
		MaxStateBytes: y.MaxStateBytes, MaxEventBytes: y.MaxEventBytes}
	for _, d := range []struct {
		key string
		in  string
		out *time.Duration
	}{
		{"click_window", y.ClickWindow, &c.ClickWindow},
		{"conversion_window", y.ConversionWindow, &c.ConversionWindow},
		{"lateness", y.Lateness, &c.Lateness},
		{"max_skew", y.MaxSkew, &c.MaxSkew},
		{"max_future", y.MaxFuture, &c.MaxFuture},
		{"idle_timeout", y.IdleTimeout, &c.IdleTimeout},
		{"retention", y.Retention, &c.Retention},
	} {
		if d.in == "" {
			continue
		}
		v, err := ParseDuration(d.in)
		if err != nil {
			return Config{}, fmt.Errorf("join: config: %s: %w", d.key, err)
		}
		*d.out = v
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c.withDefaults(), nil
}

// ParseSpecSection reads the join: section of a whole spec file's YAML
// (other top-level sections are ignored) with ParseConfig. ok is false,
// with the zero Config, when the spec has no join: section: its stream
// reads a single pre-joined topic.
func ParseSpecSection(spec []byte) (c Config, ok bool, err error) {
	var doc struct {
		Join yaml.Node `yaml:"join"`
	}
	if err := yaml.Unmarshal(spec, &doc); err != nil {
		return Config{}, false, fmt.Errorf("join: spec: %w", err)
	}
	if doc.Join.Kind == 0 {
		return Config{}, false, nil
	}
	data, err := yaml.Marshal(&doc.Join)
	if err != nil {
		return Config{}, false, fmt.Errorf("join: spec: %w", err)
	}
	if c, err = ParseConfig(data); err != nil {
		return Config{}, false, fmt.Errorf("%w (in the join: section from line %d)", err, doc.Join.Line)
	}
	return c, true, nil
}

// ParseDuration parses a Go duration ("1h30m") that may start with a whole
// number of days ("7d", "1d12h", "-2d").
func ParseDuration(s string) (time.Duration, error) {
	body, neg := strings.CutPrefix(s, "-")
	days, hasDays := time.Duration(0), false
	if d, rest, ok := strings.Cut(body, "d"); ok {
		hasDays = true
		n, err := strconv.ParseInt(d, 10, 32)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad duration %q: want a whole number of days before \"d\"", s)
		}
		days = time.Duration(n) * 24 * time.Hour
		body = rest
	}
	var v time.Duration
	if body != "" {
		var err error
		if v, err = time.ParseDuration(body); err != nil || v < 0 {
			return 0, fmt.Errorf("bad duration %q", s)
		}
	} else if !hasDays {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	v += days
	if neg {
		v = -v
	}
	return v, nil
}
