package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// onestone runs a command line as the binary does (main is os.Exit of
// run) and returns what it wrote and its exit code.
func onestone(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), code
}

func commandNames() []string {
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// TestHelpExitsZero: -h, --help and help print the usage on stdout and
// exit 0, for the binary and for every command.
func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		out, errOut, code := onestone(t, args...)
		if code != exitOK || errOut != "" || !strings.Contains(out, "commands:") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
		for _, n := range commandNames() {
			if !strings.Contains(out, "\n  "+n+" ") {
				t.Errorf("%q: command list lacks %s:\n%s", args, n, out)
			}
		}
	}
	for _, n := range commandNames() {
		for _, args := range [][]string{{n, "-h"}, {n, "--help"}, {n, "-help"}, {"help", n}} {
			out, errOut, code := onestone(t, args...)
			if code != exitOK || errOut != "" || !strings.HasPrefix(out, "usage: onestone "+n) {
				t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out, errOut)
				continue
			}
			fs := commands[n].flagSet()
			fs.VisitAll(func(f *flag.Flag) {
				listed := false
				for _, end := range []string{" ", "\t", "\n"} {
					listed = listed || strings.Contains(out, "\n  -"+f.Name+end)
				}
				if hidden := f.Usage == ""; listed == hidden {
					t.Errorf("%q: flag -%s listed %v, hidden %v:\n%s", args, f.Name, listed, hidden, out)
				}
			})
		}
	}
}

// TestUsageErrorsExitTwo: no command, an unknown command, a bad flag, a
// bad flag value, a missing required flag and an unexpected argument exit
// 2 with the usage on stderr; a command that fails exits 1 without it.
func TestUsageErrorsExitTwo(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	for _, c := range []struct {
		args []string
		code int
		want []string // in stderr
	}{
		{nil, exitUsage, []string{"usage: onestone <command>", "commands:"}},
		{[]string{"trian"}, exitUsage, []string{`unknown command "trian"`, "commands:"}},
		{[]string{"train", "--no-such-flag"}, exitUsage, []string{"onestone train: flag provided but not defined: -no-such-flag", "usage: onestone train", "-max-steps"}},
		{[]string{"train", "--epochs", "two"}, exitUsage, []string{`invalid value "two" for flag -epochs`, "usage: onestone train"}},
		{[]string{"train", "--spec", "s.yaml"}, exitUsage, []string{"onestone train: --spec, --data and --out are required", "usage: onestone train"}},
		{[]string{"eval", "--model", "m", "--data", "d", "extra"}, exitUsage, []string{`unexpected arguments ["extra"]`, "usage: onestone eval"}},
		{[]string{"bench", "walk"}, exitUsage, []string{`unknown benchmark "walk"`, "usage: onestone bench"}},
		{[]string{"fit", "--spec", missing, "--data", "x.parquet"}, exitFail, []string{"onestone fit: ", "missing.yaml"}},
	} {
		out, errOut, code := onestone(t, c.args...)
		if code != c.code || out != "" {
			t.Errorf("%q: exit %d (want %d), stdout %q", c.args, code, c.code, out)
		}
		for _, w := range c.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%q: stderr lacks %q:\n%s", c.args, w, errOut)
			}
		}
		if c.code == exitFail && strings.Contains(errOut, "usage:") {
			t.Errorf("%q: a failure printed the usage:\n%s", c.args, errOut)
		}
	}
}

// TestDoubleDashEndsFlags: after "--", "--json" is a file name.
func TestDoubleDashEndsFlags(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "--json"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := onestone(t, "inspect", "--", filepath.Join(dir, "--json"))
	if code != exitFail || !strings.Contains(errOut, "--json") {
		t.Errorf("inspect -- --json: exit %d, %s", code, errOut)
	}
}

// TestBenchModeBeforeFlags: `bench gemm --gemm-time 1ms`, the mode first
// and its flags after, as the scripts call it.
func TestBenchModeBeforeFlags(t *testing.T) {
	out, errOut, code := onestone(t, "bench", "gemm", "--gemm-time", "1ms")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep struct {
		Train *struct{}  `json:"train"`
		Gemm  []struct{} `json:"gemm"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Train != nil || len(rep.Gemm) == 0 {
		t.Fatalf("%v: %s", err, out)
	}
}

// TestHelpHidesSecrets: serve's admin token may come from the environment,
// and -h must not print it as the flag's default.
func TestHelpHidesSecrets(t *testing.T) {
	const secret = "s3cr3t-token-value"
	t.Setenv("ONESTONE_ADMIN_TOKEN", secret)
	out, errOut, code := onestone(t, "serve", "-h")
	if code != exitOK {
		t.Fatalf("serve -h: exit %d, stderr %q", code, errOut)
	}
	if strings.Contains(out+errOut, secret) {
		t.Fatalf("serve -h prints the admin token:\n%s", out)
	}
}
