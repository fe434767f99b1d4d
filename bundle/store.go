package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/fileutil"
	"github.com/onestone/onestone/mmoe"
)

// Store is where the versions of one root live: Dir, a local directory,
// or Bucket, a prefix of an object store bucket (OpenStore opens either).
//
// A version's files appear together or not at all: Versions lists only
// complete versions. Versions are named "v" and eight digits; NewVersion
// takes one more than the highest present. Two publishers, in one process
// or two, never get the same version.
type Store interface {
	// NewVersion writes files, in order, as a new version and returns its
	// name.
	NewVersion(ctx context.Context, files []File) (version string, err error)
	// Versions lists the complete versions, oldest first.
	Versions(ctx context.Context) ([]string, error)
	// Latest returns the version the latest pointer names, or "" when
	// there is none.
	Latest(ctx context.Context) (string, error)
	// SetLatest points latest at version, atomically.
	SetLatest(ctx context.Context, version string) error
	// Remove deletes a version.
	Remove(ctx context.Context, version string) error
	// Open opens the file name of a version for reading; a missing file
	// is an error wrapping os.ErrNotExist.
	Open(ctx context.Context, version, name string) (io.ReadCloser, error)
	// Path names version v where it lives: a directory for a Dir, a URL
	// without its query for a Bucket.
	Path(version string) string
	// String names the store in messages.
	String() string
}

var (
	_ Store = (*Dir)(nil)
	_ Store = (*Bucket)(nil)
)

// Publish writes model, ids and m as a new version of s (Write), points latest
// at it, and removes all but the newest keep versions (Prune; keep <= 0
// keeps all). Once the version is written it returns its name, also with
// an error from SetLatest or Prune.
func Publish(ctx context.Context, s Store, m *Manifest, model *mmoe.Model, ids *features.IDTables, keep int) (string, error) {
	v, err := Write(ctx, s, m, model, ids)
	if err != nil {
		return "", err
	}
	if err := s.SetLatest(ctx, v); err != nil {
		return v, err
	}
	return v, Prune(ctx, s, keep)
}

// PublishDelta is Publish for a delta of parent (WriteDelta), its file
// stored with codec.
func PublishDelta(ctx context.Context, s Store, m *Manifest, model *mmoe.Model, ids *features.IDTables, parent *Manifest, rows [][]int32, codec string, keep int) (string, error) {
	v, err := WriteDelta(ctx, s, m, model, ids, parent, rows, codec)
	if err != nil {
		return "", err
	}
	if err := s.SetLatest(ctx, v); err != nil {
		return v, err
	}
	return v, Prune(ctx, s, keep)
}

// Newest returns the newest complete version of s, or an error wrapping
// ErrNoBundle when there is none.
func Newest(ctx context.Context, s Store) (string, error) {
	vs, err := s.Versions(ctx)
	if err != nil {
		return "", err
	}
	if len(vs) == 0 {
		return "", fmt.Errorf("%w under %s", ErrNoBundle, s)
	}
	return vs[len(vs)-1], nil
}

// Prune removes all but the newest keep complete versions of s, never the
// one latest names, nor a version that one of those needs to be read (a
// delta's chain back to its snapshot: Needs). keep <= 0 keeps all.
// Incomplete versions (a directory without its manifest, which may be a
// writer's) are left alone in a Dir; in a Bucket, where a stopped
// publisher cannot clean up after itself, those older than the newest
// complete version and claimed more than DefaultIncompleteAge ago are
// removed. When a kept version's manifest cannot be read, nothing is
// removed.
func Prune(ctx context.Context, s Store, keep int) error {
	if keep <= 0 {
		return nil
	}
	if b, ok := s.(*Bucket); ok {
		if err := b.pruneIncomplete(ctx, DefaultIncompleteAge); err != nil {
			return fmt.Errorf("bundle: prune: %w", err)
		}
	}
	vs, err := s.Versions(ctx)
	if err != nil || len(vs) <= keep {
		return err
	}
	latest, err := s.Latest(ctx)
	if err != nil {
		return err
	}
	need, err := Needs(ctx, s, append(slices.Clone(vs[len(vs)-keep:]), latest))
	if err != nil {
		return fmt.Errorf("bundle: prune: %w", err)
	}
	for _, v := range vs {
		if need[v] {
			continue
		}
		if err := s.Remove(ctx, v); err != nil {
			return fmt.Errorf("bundle: prune: %w", err)
		}
	}
	return nil
}

// Resolve turns a user's --model argument into a bundle directory: a
// directory holding bundle.json is itself, and a root gives its newest
// complete version (Newest, which need not be the one latest names).
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
	d := NewDir(path)
	v, err := Newest(context.Background(), d)
	if err != nil {
		return "", err
	}
	return d.Path(v), nil
}

// Dir is a Store in a local directory, the root: version v is the
// directory root/v, and latest is the symlink root/latest. Its methods
// are safe for concurrent use. They check ctx before they start (and
// NewVersion before each file) but do not interrupt a file system call.
type Dir struct {
	root string
}

// NewDir returns the store rooted at the directory root, which need not
// exist yet.
func NewDir(root string) *Dir { return &Dir{root: root} }

// Checkpoints returns the store of the checkpoints written beside the
// bundles of the output root out: out/checkpoints.
func Checkpoints(out string) *Dir { return NewDir(filepath.Join(out, CheckpointDir)) }

// Root returns the root directory.
func (d *Dir) Root() string { return d.root }

// String returns the root directory.
func (d *Dir) String() string { return d.root }

// Path returns the directory of version v.
func (d *Dir) Path(v string) string { return filepath.Join(d.root, v) }

// Init creates the root and its missing parents, fsyncing the directory
// holding each one it creates, and checks that a version can be written
// there. NewVersion creates the root too: Init lets a trainer fail before
// it trains.
func (d *Dir) Init() error {
	if err := fileutil.MkdirAll(d.root, 0o755); err != nil {
		return fmt.Errorf("bundle: root %s: %w", d.root, err)
	}
	f, err := os.CreateTemp(d.root, ".writable-")
	if err != nil {
		return fmt.Errorf("bundle: root %s is not writable: %w", d.root, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// NewVersion writes files as a new version directory (fileutil.PublishDir:
// a temporary directory inside the root, each file fsynced, renamed to
// root/<version>, the root fsynced). The root is created when missing,
// durably (fileutil.MkdirAll).
func (d *Dir) NewVersion(ctx context.Context, files []File) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	fs := make([]fileutil.File, len(files))
	for i, f := range files {
		if f.Name == "" || f.Name != filepath.Base(f.Name) || strings.HasPrefix(f.Name, ".") {
			return "", fmt.Errorf("bundle: file name %q is not a plain name", f.Name)
		}
		fs[i] = fileutil.File{Name: f.Name, Write: func(w io.Writer) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return f.Write(w)
		}}
	}
	dir, err := fileutil.PublishDir(d.root, fs, func() (string, error) {
		vs, err := d.all()
		if err != nil {
			return "", err
		}
		next := 1
		if len(vs) > 0 {
			next = versionNumber(vs[len(vs)-1]) + 1
		}
		return versionName(next), nil
	})
	if err != nil {
		return "", fmt.Errorf("bundle: publish under %s: %w", d.root, err)
	}
	return filepath.Base(dir), nil
}

// all lists every version directory, complete or not, oldest first. A
// missing root holds none.
func (d *Dir) all() ([]string, error) {
	ents, err := os.ReadDir(d.root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("bundle: %w", err)
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

// Versions lists the complete versions (those holding bundle.json), oldest
// first.
func (d *Dir) Versions(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	vs, err := d.all()
	if err != nil {
		return nil, err
	}
	out := vs[:0]
	for _, v := range vs {
		if _, err := os.Stat(filepath.Join(d.root, v, ManifestFile)); err == nil {
			out = append(out, v)
		}
	}
	return out, nil
}

// Latest returns the version root/latest links to, or "" when there is no
// such link (a missing one, or something else than a symlink).
func (d *Dir) Latest(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	target, err := os.Readlink(filepath.Join(d.root, LatestLink))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.EINVAL) {
			return "", nil
		}
		return "", fmt.Errorf("bundle: %w", err)
	}
	return filepath.Base(target), nil
}

// SetLatest points root/latest at version v: a new relative symlink is
// renamed over the old one, and the root is fsynced.
func (d *Dir) SetLatest(ctx context.Context, v string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if versionNumber(v) == 0 {
		return fmt.Errorf("bundle: %q is not a version", v)
	}
	tmp := filepath.Join(d.root, ".latest.tmp")
	os.Remove(tmp)
	if err := os.Symlink(v, tmp); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(d.root, LatestLink)); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if err := fileutil.SyncDir(d.root); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	return nil
}

// Open opens the file name of version v.
func (d *Dir) Open(ctx context.Context, v, name string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if versionNumber(v) == 0 || name != filepath.Base(name) {
		return nil, fmt.Errorf("bundle: %q/%q is not a version's file", v, name)
	}
	f, err := os.Open(filepath.Join(d.root, v, name))
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	return f, nil
}

// Remove deletes version v's directory.
func (d *Dir) Remove(ctx context.Context, v string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if versionNumber(v) == 0 {
		return fmt.Errorf("bundle: %q is not a version", v)
	}
	if err := os.RemoveAll(filepath.Join(d.root, v)); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	return nil
}

// versionName is the name of version n.
func versionName(n int) string { return fmt.Sprintf("v%08d", n) }

// versionNumber returns n of a version name "v<n>", or 0 when name is
// not one.
func versionNumber(name string) int {
	if len(name) < 2 || name[0] != 'v' {
		return 0
	}
	for _, c := range name[1:] {
		if c < '0' || c > '9' {
			return 0
		}
	}
	n, err := strconv.Atoi(name[1:])
	if err != nil || n <= 0 {
		return 0
	}
	return n
}
