// Package fileutil holds the one way onestone makes files and directories
// appear on disk: whole or not at all, and durably.
//
// A writer that fails half-way, or a process killed half-way, never leaves
// a partial file or directory under its final name: content goes to a
// temporary name in the same directory, is fsynced, and is renamed into
// place; then the directory holding the new name is fsynced, so the name
// survives a power loss too. Leftover temporaries start with a dot.
//
// As prometheus keeps tsdb/fileutil, every package that writes a file others
// read (fitted statistics, bundles, checkpoints, scores) uses this one.
package fileutil

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// File is one file of a directory written by PublishDir: its name and the
// function that writes its content.
type File struct {
	Name  string
	Write func(w io.Writer) error
}

// writerOnly hides the *os.File from a write function, so that it cannot
// close the file (arrow's Parquet writer closes a sink that is an
// io.Closer) before it is fsynced.
type writerOnly struct{ w io.Writer }

func (w writerOnly) Write(p []byte) (int, error) { return w.w.Write(p) }

// WriteFile writes path atomically: write fills a temporary file in path's
// directory, which is fsynced, given mode perm and renamed over path; then
// the directory is fsynced. On any error the temporary is removed and path
// is left as it was. The directory must exist.
func WriteFile(path string, perm os.FileMode, write func(w io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("fileutil: write %s: %w", path, err)
	}
	tmp := f.Name()
	err = f.Chmod(perm) // CreateTemp makes it 0600
	if err == nil {
		err = writeSync(f, write)
	} else {
		f.Close()
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fileutil: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fileutil: write %s: %w", path, err)
	}
	return SyncDir(dir)
}

// writeSync runs write on f, fsyncs and closes f; f is closed on every
// path.
func writeSync(f *os.File, write func(w io.Writer) error) error {
	err := write(writerOnly{f})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// PublishDir writes files into a new temporary directory inside parent,
// fsyncs each file and the directory, renames the directory to the name
// returned by next, and fsyncs parent. A reader of parent thus sees the
// whole directory under its name or nothing. parent is created (with
// MkdirAll) when missing.
//
// When the name is taken meanwhile (another writer published it first),
// next is asked again, up to 100 times; next sees the directory as it is
// then. The files are written in the order given; the directory keeps the
// mode os.MkdirTemp gives it (0700). PublishDir returns the new
// directory's path. On any error the temporary directory is removed.
func PublishDir(parent string, files []File, next func() (string, error)) (dir string, err error) {
	if err := MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-")
	if err != nil {
		return "", fmt.Errorf("fileutil: %s not writable: %w", parent, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	for _, f := range files {
		if err := createSync(filepath.Join(tmp, f.Name), f.Write); err != nil {
			return "", err
		}
	}
	if err := SyncDir(tmp); err != nil {
		return "", err
	}
	for range 100 {
		name, err := next()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(parent, name)
		if err = os.Rename(tmp, dir); err == nil {
			return dir, SyncDir(parent)
		}
		if !errors.Is(err, os.ErrExist) && !isNotEmpty(err) {
			return "", fmt.Errorf("fileutil: publish %s: %w", dir, err)
		}
	}
	return "", fmt.Errorf("fileutil: publish under %s: too many concurrent writers", parent)
}

// createSync writes a new file at path and fsyncs it.
func createSync(path string, write func(w io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return fmt.Errorf("fileutil: %w", err)
	}
	if err := writeSync(f, write); err != nil {
		return fmt.Errorf("fileutil: write %s: %w", filepath.Base(path), err)
	}
	return nil
}

// isNotEmpty reports a rename refused because the target is a non-empty
// directory (ENOTEMPTY, which os.ErrExist does not match on Linux).
func isNotEmpty(err error) bool {
	var le *os.LinkError
	return errors.As(err, &le) && strings.Contains(le.Err.Error(), "not empty")
}

// SyncDir fsyncs the directory dir, making the names created, renamed or
// removed in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fileutil: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fileutil: fsync %s: %w", dir, err)
	}
	return nil
}

// MkdirAll is os.MkdirAll that makes the new directories durable: after
// creating each missing directory it fsyncs the directory holding it. A
// path that exists already as a directory is left alone; one that exists
// as something else is an error.
func MkdirAll(path string, perm os.FileMode) error {
	path = filepath.Clean(path)
	fi, err := os.Stat(path)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("fileutil: %w", &os.PathError{Op: "mkdir", Path: path, Err: syscall.ENOTDIR})
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("fileutil: %w", err)
	}
	parent := filepath.Dir(path)
	if parent != path {
		if err := MkdirAll(parent, perm); err != nil {
			return err
		}
	}
	if err := os.Mkdir(path, perm); err != nil {
		if errors.Is(err, os.ErrExist) { // made meanwhile by another writer
			if fi, serr := os.Stat(path); serr == nil && fi.IsDir() {
				return nil
			}
		}
		return fmt.Errorf("fileutil: %w", err)
	}
	return SyncDir(parent)
}
