package main

import (
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/serving"
)

// defaultPrecision is the precision serve and score run a model's
// products in unless told: bf16 where the CPU has AVX512_BF16 (about 0.6
// of fp32's CPU per request), else fp32, whatever the bundle was trained
// in. Scores then differ from an fp32 bundle's by bf16's rounding
// (docs/serving.md gives the size); serve and score share the default, so
// the same event scores the same online and offline.
const defaultPrecision = "bf16"

// precisionVar defines the --precision flag of serve and score.
func precisionVar(fs *flag.FlagSet, dst *string) {
	fs.StringVar(dst, "precision", defaultPrecision, "`precision` of the model's products: bf16 (where the CPU has AVX512_BF16, else fp32), fp32, or "+
		serving.PrecisionBundle+" (the one the bundle was trained in)")
}

// listRule is how every list flag reads its values; listVar adds it to the
// flag's usage.
const listRule = "repeatable; a comma also separates values"

// listFlag is the one flag type for lists (data files and globs, columns,
// topics, brokers, architectures): the flag may be repeated, and a comma
// inside a value separates values too, so `--data a.parquet,b.parquet` is
// `--data a.parquet --data b.parquet`. Spaces around values and empty
// values are dropped. The first value given replaces the default rather
// than adding to it. (A glob never needs a comma: filepath.Match has no
// braces.)
type listFlag struct {
	dst *[]string
	set bool // a value was given: the default is gone
}

// listVar defines a list flag writing to dst, whose value on entry is the
// default.
func listVar(fs *flag.FlagSet, dst *[]string, name, usage string) {
	fs.Var(&listFlag{dst: dst}, name, usage+" ("+listRule+")")
}

func (l *listFlag) String() string {
	if l == nil || l.dst == nil {
		return ""
	}
	return strings.Join(*l.dst, ",")
}

func (l *listFlag) Set(v string) error {
	if !l.set {
		*l.dst = nil
		l.set = true
	}
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l.dst = append(*l.dst, s)
		}
	}
	return nil
}

// bytesFlag is a size in bytes, given as a number with an optional binary
// unit: 1048576, 512MiB, 4GiB, 4G (K, M, G, T: powers of 1024).
type bytesFlag struct{ dst *int64 }

func (b bytesFlag) String() string {
	if b.dst == nil || *b.dst == 0 {
		return "0"
	}
	return strconv.FormatInt(*b.dst, 10)
}

func (b bytesFlag) Set(v string) error {
	s := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(v), "B"), "i")
	mult := int64(1)
	if s != "" {
		if i := strings.IndexByte("KMGT", s[len(s)-1]); i >= 0 {
			mult = int64(1) << (10 * (i + 1))
			s = s[:len(s)-1]
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return fmt.Errorf("%q is not a size: want bytes, or a number and K, M, G or T (KiB...)", v)
	}
	*b.dst = n * mult
	return nil
}

// maxModelBytesVar defines --max-model-bytes, the memory budget of a model
// read from a bundle (bundle.Limits.MaxBytes).
func maxModelBytesVar(fs *flag.FlagSet, dst *int64) {
	fs.Var(bytesFlag{dst}, "max-model-bytes", fmt.Sprintf(
		"refuse a bundle whose model needs more memory than this (tensors plus manifest; e.g. 8GiB); 0: a quarter of this machine's memory, here %d MiB",
		bundle.DefaultMaxBytes()>>20))
}
