package main

import (
	"flag"
	"strings"
)

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
