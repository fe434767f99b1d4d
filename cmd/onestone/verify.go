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
	"strings"
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
complete version under it, and under its checkpoints/ directory; or an
object store URL (s3://, gs://, azblob://BUCKET/PREFIX): then every complete
version there, fetched with its delta chain into a temporary directory.
Each is loaded as 'onestone serve' loads it (checksums, memory budget,
weights, sample; a delta through its chain to its snapshot), and a
checkpoint's training state is verified too. Exits 1 when
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
	// Parent and Snapshot name a delta's parent and snapshot.
	Parent   string `json:"parent,omitempty"`
	Snapshot string `json:"snapshot,omitempty"`
	Error    string `json:"error,omitempty"`
}

func verifyFlags(fs *flag.FlagSet) runFunc {
	asJSON := fs.Bool("json", false, "print a JSON array, one object per version")
	var lim bundle.Limits
	maxModelBytesVar(fs, &lim.MaxBytes)
	return func(ctx context.Context, out, _ io.Writer, args []string) error {
		if len(args) == 0 {
			return usagef("no bundle or root given")
		}
		var ts []target
		for _, p := range args {
			t, cleanup, err := versionDirs(ctx, p, lim)
			if err != nil {
				return err
			}
			defer cleanup()
			ts = append(ts, t...)
		}
		var vs []verdict
		refused := 0
		var prev *serving.Bundle // the version before, a delta's likely base
		for _, t := range ts {
			if err := ctx.Err(); err != nil {
				return err
			}
			v := verdict{Dir: t.name, Error: errString(t.err)}
			if t.err == nil {
				var b *serving.Bundle
				if prev != nil && filepath.Dir(prev.Dir) != filepath.Dir(t.dir) {
					prev = nil
				}
				v, b = verifyOne(t.dir, lim, prev)
				v.Dir = t.name
				if b != nil {
					prev = b
				}
			}
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
				if v.Parent != "" {
					detail += fmt.Sprintf(" delta of %s (snapshot %s)", v.Parent, v.Snapshot)
				}
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

// target is a version to verify: its name for the output, and the local
// directory holding it (or the error that kept it from being fetched).
type target struct {
	name, dir string
	err       error
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// versionDirs lists the versions a PATH names, oldest first: itself when
// it holds a manifest, else the complete versions under it and its
// checkpoints. An object store URL gives its complete versions, each
// fetched with its delta chain (bundle.FetchChain, every checksum
// checked) into a temporary directory that cleanup removes.
func versionDirs(ctx context.Context, p string, lim bundle.Limits) (ts []target, cleanup func(), err error) {
	cleanup = func() {}
	if bundle.IsURL(p) && !strings.HasPrefix(p, "file://") {
		return remoteVersions(ctx, p, lim)
	}
	p = strings.TrimPrefix(p, "file://")
	if _, err := os.Stat(filepath.Join(p, bundle.ManifestFile)); err == nil {
		return []target{{name: p, dir: p}}, cleanup, nil
	}
	for _, d := range []*bundle.Dir{bundle.NewDir(p), bundle.Checkpoints(p)} {
		vs, err := d.Versions(ctx)
		if err != nil {
			return nil, nil, err
		}
		for _, v := range vs {
			ts = append(ts, target{name: d.Path(v), dir: d.Path(v)})
		}
	}
	if len(ts) == 0 {
		return nil, nil, fmt.Errorf("%w under %s", bundle.ErrNoBundle, p)
	}
	return ts, cleanup, nil
}

// remoteVersions is versionDirs for an object store.
func remoteVersions(ctx context.Context, u string, lim bundle.Limits) ([]target, func(), error) {
	s, err := bundle.OpenStore(ctx, u)
	if err != nil {
		return nil, nil, err
	}
	if c, ok := s.(io.Closer); ok {
		defer c.Close()
	}
	vs, err := s.Versions(ctx)
	if err != nil {
		return nil, nil, err
	}
	if len(vs) == 0 {
		return nil, nil, fmt.Errorf("%w under %s", bundle.ErrNoBundle, s)
	}
	tmp, err := os.MkdirTemp("", "onestone-verify-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(tmp) }
	local := bundle.NewDir(tmp)
	var ts []target
	for _, v := range vs {
		dir, err := bundle.FetchChain(ctx, s, v, local, lim)
		if ctx.Err() != nil {
			cleanup()
			return nil, nil, ctx.Err()
		}
		ts = append(ts, target{name: s.Path(v), dir: dir, err: err})
	}
	return ts, cleanup, nil
}

// verifyOne loads dir as the server would (a delta through its chain,
// from base when the chain passes through it), then verifies the other
// files its manifest records (a checkpoint's training state). It returns
// the bundle when it loads.
func verifyOne(dir string, lim bundle.Limits, base *serving.Bundle) (verdict, *serving.Bundle) {
	v := verdict{Dir: dir}
	b, err := serving.LoadBundleFrom(dir, lim, base)
	if err == nil {
		v.Verified, v.SampleCheck = b.Manifest.Verified(), b.SampleCheck
		if d := b.Manifest.Delta; d != nil {
			v.Parent, v.Snapshot = d.Parent, d.Snapshot
		}
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
		return v, nil
	}
	v.OK = true
	return v, b
}
