package main

import (
	"flag"
	"slices"
	"strings"
	"testing"

	"github.com/onestone/onestone/serving"
)

func TestListFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"events"}},
		{[]string{"--l", "a"}, []string{"a"}},
		{[]string{"--l", "a,b", "--l", "c"}, []string{"a", "b", "c"}},
		{[]string{"--l", " a , ,b,", "--l", ""}, []string{"a", "b"}},
		{[]string{"--l", "data/train-*.parquet,data/test-0000[0-3].parquet"}, []string{"data/train-*.parquet", "data/test-0000[0-3].parquet"}},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		l := []string{"events"}
		listVar(fs, &l, "l", "things")
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(l, c.want) {
			t.Errorf("%q: %q, want %q", c.args, l, c.want)
		}
	}
}

// TestListFlagsShareOneRule: every flag that takes a list is a listFlag
// and says so in its usage, and no other flag talks of commas or of being
// repeatable.
func TestListFlagsShareOneRule(t *testing.T) {
	lists := map[string]bool{"data": true, "valid": true, "id-column": true, "archs": true, "require": true, "topics": true, "brokers": true}
	for _, n := range commandNames() {
		commands[n].flagSet().VisitAll(func(f *flag.Flag) {
			_, isList := f.Value.(*listFlag)
			if lists[f.Name] && !isList && !(n == "broker" && f.Name == "data") {
				t.Errorf("%s --%s is not a list flag", n, f.Name)
			}
			documented := strings.Contains(f.Usage, listRule)
			stray := strings.Contains(f.Usage, "comma") && !documented || strings.Contains(f.Usage, "repeatable") && !documented
			if isList != documented || stray {
				t.Errorf("%s --%s: list %v, usage %q", n, f.Name, isList, f.Usage)
			}
		})
	}
}

func TestBytesFlag(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{{"0", 0}, {"1048576", 1 << 20}, {"512MiB", 512 << 20}, {"4GiB", 4 << 30}, {"4G", 4 << 30}, {"2T", 2 << 40}, {"7KB", 7 << 10}} {
		var n int64
		if err := (bytesFlag{&n}).Set(c.in); err != nil || n != c.want {
			t.Errorf("%q: %d %v, want %d", c.in, n, err, c.want)
		}
	}
	for _, bad := range []string{"", "-1", "4X", "GiB", "9999999T", "1.5G"} {
		var n int64
		if err := (bytesFlag{&n}).Set(bad); err == nil {
			t.Errorf("%q accepted as %d", bad, n)
		}
	}
}

// TestPrecisionDefault: serve and score run a model in the same precision
// unless told, so that an event scores the same online and offline, and
// "bundle" (the bundle's own) is a value both accept.
func TestPrecisionDefault(t *testing.T) {
	var defs []string
	for _, name := range []string{"serve", "score"} {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		commands[name].flags(fs)
		f := fs.Lookup("precision")
		if f == nil {
			t.Fatalf("%s has no --precision", name)
		}
		defs = append(defs, f.DefValue)
	}
	if defs[0] != defs[1] {
		t.Fatalf("serve --precision defaults to %q, score to %q", defs[0], defs[1])
	}
	if err := (serving.ScorerConfig{Precision: defs[0]}).Validate(); err != nil {
		t.Fatalf("default precision: %v", err)
	}
	if err := (serving.ScorerConfig{Precision: serving.PrecisionBundle}).Validate(); err != nil {
		t.Fatal(err)
	}
}
