package bundle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/onestone/onestone/internal/fileutil"
)

// Fetch copies version v of the store s into the local store dst, as
// dst/v, and returns that directory. Every byte is checked on the way:
// the manifest against its checksum file, and each file the manifest
// lists against its size and CRC-32C, so that a version half-uploaded,
// truncated or changed in the store is refused (an error wrapping
// ErrCorrupt) and nothing appears in dst. The manifest must record
// checksums, and a manifest over lim.MaxBytes is refused (ErrTooLarge);
// the files it lists are bounded by their recorded sizes, which
// ReadModel then checks against the budget before allocating.
//
// When dst already holds v complete, Fetch returns it at once. The local
// copy is published as Dir.NewVersion does (a temporary directory renamed
// into place), so a reader of dst sees it whole or not at all.
func Fetch(ctx context.Context, s Store, v string, dst *Dir, lim Limits) (string, error) {
	if err := lim.Validate(); err != nil {
		return "", err
	}
	if versionNumber(v) == 0 {
		return "", fmt.Errorf("bundle: %q is not a version", v)
	}
	dir := dst.Path(v)
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); err == nil {
		return dir, nil
	}
	where := fmt.Sprintf("%s %s", s, v)
	m, data, side, err := readStoreManifest(ctx, s, v, lim)
	if err != nil {
		return "", err
	}
	if m.Files == nil {
		return "", fmt.Errorf("%w: %s: %s records no checksums, which a version fetched must", ErrCorrupt, where, ManifestFile)
	}
	names := make([]string, 0, len(m.Files))
	for name := range m.Files {
		if name == "" || name != filepath.Base(name) || name[0] == '.' || name == ManifestFile || name == ManifestSumFile {
			return "", fmt.Errorf("%w: %s: %s lists the file %q", ErrCorrupt, where, ManifestFile, name)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	files := make([]fileutil.File, 0, len(names)+2)
	for _, name := range names {
		files = append(files, fileutil.File{Name: name, Write: func(w io.Writer) error {
			return copyVerified(ctx, s, v, name, m.Files[name], w)
		}})
	}
	files = append(files,
		fileutil.File{Name: ManifestFile, Write: func(w io.Writer) error { _, err := w.Write(data); return err }},
		fileutil.File{Name: ManifestSumFile, Write: func(w io.Writer) error { _, err := w.Write(side); return err }})
	tries := 0
	_, err = fileutil.PublishDir(dst.Root(), files, func() (string, error) {
		if tries++; tries > 1 {
			return "", fmt.Errorf("bundle: %s appeared while fetched", dir)
		}
		return v, nil
	})
	if err != nil {
		if _, serr := os.Stat(filepath.Join(dir, ManifestFile)); serr == nil {
			return dir, nil // another fetch of v won
		}
		return "", fmt.Errorf("bundle: fetch %s into %s: %w", where, dst, err)
	}
	return dir, nil
}

// ReadStoreManifest reads the manifest of version v of the store s
// within lim, checked against its checksum file when it has one (and it
// must when the manifest records file checksums), as ReadManifestLimits
// does for a directory. Its files are not read.
func ReadStoreManifest(ctx context.Context, s Store, v string, lim Limits) (*Manifest, error) {
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	m, _, _, err := readStoreManifest(ctx, s, v, lim)
	return m, err
}

func readStoreManifest(ctx context.Context, s Store, v string, lim Limits) (m *Manifest, data, side []byte, err error) {
	where := fmt.Sprintf("%s %s", s, v)
	if data, err = readAllLimit(ctx, s, v, ManifestFile, lim.maxBytes()); err != nil {
		return nil, nil, nil, err
	}
	side, err = readAllLimit(ctx, s, v, ManifestSumFile, 4096)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil, err
	}
	if side != nil {
		var want FileSum
		if err := json.Unmarshal(side, &want); err != nil {
			return nil, nil, nil, fmt.Errorf("%w: %s: %s is not a checksum: %q", ErrCorrupt, where, ManifestSumFile, side)
		}
		if got := sumOf(data); got != want {
			return nil, nil, nil, fmt.Errorf("%w: %s: %s: %d bytes of CRC-32C %s, %s records %d bytes of %s",
				ErrCorrupt, where, ManifestFile, got.Size, got.CRC32C, ManifestSumFile, want.Size, want.CRC32C)
		}
	}
	m = new(Manifest)
	if err := json.Unmarshal(data, m); err != nil {
		return nil, nil, nil, fmt.Errorf("bundle: %s: %s: %w", where, ManifestFile, err)
	}
	if m.FormatVersion != FormatVersion {
		return nil, nil, nil, fmt.Errorf("bundle: %s: format version %d, this build reads %d", where, m.FormatVersion, FormatVersion)
	}
	if m.Files != nil && side == nil {
		return nil, nil, nil, fmt.Errorf("%w: %s: %s records file checksums but %s is missing", ErrCorrupt, where, ManifestFile, ManifestSumFile)
	}
	m.size = int64(len(data))
	m.sum = sumOf(data)
	m.Version = v
	return m, data, side, nil
}

// readAllLimit reads the file name of version v of s, refusing one over
// max bytes.
func readAllLimit(ctx context.Context, s Store, v, name string, max int64) ([]byte, error) {
	r, err := s.Open(ctx, v, name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("bundle: %s %s/%s: %w", s, v, name, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%w: %s %s/%s is over %s", ErrTooLarge, s, v, name, formatBytes(max))
	}
	return data, nil
}

// copyVerified copies the file name of version v of s to w, and checks
// it against want as it goes: never more than want.Size bytes are
// copied.
func copyVerified(ctx context.Context, s Store, v, name string, want FileSum, w io.Writer) error {
	r, err := s.Open(ctx, v, name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		return err
	}
	defer r.Close()
	h := crc32.New(castagnoli)
	n, err := io.CopyBuffer(io.MultiWriter(w, h), io.LimitReader(r, want.Size+1), make([]byte, 1<<20))
	if err != nil {
		return fmt.Errorf("bundle: %s %s/%s: %w", s, v, name, err)
	}
	if got := hexSum(h.Sum32()); n != want.Size || got != want.CRC32C {
		return fmt.Errorf("%w: %s %s/%s: %d bytes of CRC-32C %s, %s records %d bytes of %s",
			ErrCorrupt, s, v, name, n, got, ManifestFile, want.Size, want.CRC32C)
	}
	return nil
}

// ResolveLocal is Resolve for a location that may be an object store: a
// local path resolves as Resolve does (and cleanup does nothing); a store
// URL gives the version its latest pointer names (its newest complete
// version when there is none), fetched with its delta chain (FetchChain,
// every checksum checked) into a new temporary directory, which cleanup
// removes. name is what the
// version is called in messages: the directory, or the version's URL
// without its query.
func ResolveLocal(ctx context.Context, loc string, lim Limits) (dir, name string, cleanup func(), err error) {
	if !IsURL(loc) || strings.HasPrefix(loc, "file://") {
		if rest, ok := strings.CutPrefix(loc, "file://"); ok {
			loc = rest
		}
		dir, err := Resolve(loc)
		return dir, dir, func() {}, err
	}
	s, err := OpenBucket(ctx, loc)
	if err != nil {
		return "", "", nil, err
	}
	defer s.Close()
	v, err := s.Latest(ctx)
	if err == nil && v == "" {
		v, err = Newest(ctx, s)
	}
	if err != nil {
		return "", "", nil, err
	}
	tmp, err := os.MkdirTemp("", "onestone-fetch-")
	if err != nil {
		return "", "", nil, fmt.Errorf("bundle: %w", err)
	}
	cleanup = func() { os.RemoveAll(tmp) }
	dir, err = FetchChain(ctx, s, v, NewDir(tmp), lim)
	if err != nil {
		cleanup()
		return "", "", nil, err
	}
	return dir, s.Path(v), cleanup, nil
}
