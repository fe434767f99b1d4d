package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/serving"
)

func init() {
	register(command{
		name:    "verify",
		summary: "check bundles and checkpoints as the server would, and say which are refused and why",
		usage: `onestone verify [--json] [--max-model-bytes N] PATH...

Each PATH is a bundle or checkpoint directory, or a root: then every
complete version under it, and under its checkpoints/ directory. Each is
loaded as 'onestone serve' loads it (checksums, memory budget, weights,
sample), and a checkpoint's training state is verified too. Exits 1 when
any is refused. See docs/operations.md.`,
		flags: verifyFlags,
	})
}

// verdict is what verify says of one version.
type verdict struct {
	Dir         string `json:"dir"`
	OK          bool   `json:"ok"`
	Verified    bool   `json:"verified"`               // checksums recorded and matched
	SampleCheck string `json:"sample_check,omitempty"` // exact, tolerance or none
	Error       string `json:"error,omitempty"`
}

func verifyFlags(fs *flag.FlagSet) runFunc {
	asJSON := fs.Bool("json", false, "print a JSON array, one object per version")
	var lim bundle.Limits
	maxModelBytesVar(fs, &lim.MaxBytes)
	return func(ctx context.Context, out, _ io.Writer, args []string) error {
		if len(args) == 0 {
			return usagef("no bundle or root given")
		}
		var dirs []string
		for _, p := range args {
			ds, err := versionDirs(ctx, p)
			if err != nil {
				return err
			}
			dirs = append(dirs, ds...)
		}
		var vs []verdict
		refused := 0
		for _, dir := range dirs {
			if err := ctx.Err(); err != nil {
				return err
			}
			v := verifyOne(dir, lim)
			if !v.OK {
				refused++
			}
			vs = append(vs, v)
		}
		if *asJSON {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			if err := enc.Encode(vs); err != nil {
				return err
			}
		} else {
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			for _, v := range vs {
				state := "ok"
				if !v.OK {
					state = "REFUSED"
				}
				detail := fmt.Sprintf("verified=%v sample=%s", v.Verified, v.SampleCheck)
				if !v.OK {
					detail = v.Error
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Dir, state, detail)
			}
			tw.Flush()
		}
		if refused > 0 {
			return fmt.Errorf("%d of %d versions refused", refused, len(vs))
		}
		return nil
	}
}

// versionDirs lists the directories a PATH names: itself when it holds a
// manifest, else the complete versions under it and its checkpoints.
func versionDirs(ctx context.Context, p string) ([]string, error) {
	if _, err := os.Stat(filepath.Join(p, bundle.ManifestFile)); err == nil {
		return []string{p}, nil
	}
	var dirs []string
	for _, d := range []*bundle.Dir{bundle.NewDir(p), bundle.Checkpoints(p)} {
		vs, err := d.Versions(ctx)
		if err != nil {
			return nil, err
		}
		for _, v := range vs {
			dirs = append(dirs, d.Path(v))
		}
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("%w under %s", bundle.ErrNoBundle, p)
	}
	return dirs, nil
}

// verifyOne loads dir as the server would, then verifies the other files
// its manifest records (a checkpoint's training state).
func verifyOne(dir string, lim bundle.Limits) verdict {
	v := verdict{Dir: dir}
	b, err := serving.LoadBundleLimits(dir, lim)
	if err == nil {
		v.Verified, v.SampleCheck = b.Manifest.Verified(), b.SampleCheck
		for name := range b.Manifest.Files {
			if err = bundle.Verify(dir, b.Manifest, name); err != nil {
				break
			}
		}
	}
	if err == nil {
		if _, statErr := os.Stat(filepath.Join(dir, bundle.TrainerFile)); statErr == nil {
			_, err = bundle.ReadCheckpoint(dir)
		} else if !errors.Is(statErr, os.ErrNotExist) {
			err = statErr
		}
	}
	if err != nil {
		v.Error = err.Error()
		return v
	}
	v.OK = true
	return v
}
