package fileutil

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

var errHalfWay = errors.New("disk on fire")

// halfThenFail writes the first half of b and fails.
func halfThenFail(b []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		if _, err := w.Write(b[:len(b)/2]); err != nil {
			return err
		}
		return errHalfWay
	}
}

func writeBytes(b []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	}
}

// names lists dir's entries.
func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "stats.json")
	if err := WriteFile(path, 0o640, writeBytes([]byte("one"))); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, 0o644, writeBytes([]byte("second"))); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "second" {
		t.Fatalf("read %q, %v; want \"second\"", got, err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}
	if n := names(t, dir); !slices.Equal(n, []string{"stats.json"}) {
		t.Errorf("directory holds %v, want only stats.json", n)
	}
}

// A writer that fails half-way leaves the old file (or none) and no
// temporary behind.
func TestWriteFileFailsHalfWay(t *testing.T) {
	dir := t.TempDir()
	fresh := filepath.Join(dir, "fresh")
	err := WriteFile(fresh, 0o644, halfThenFail([]byte("0123456789")))
	if !errors.Is(err, errHalfWay) {
		t.Fatalf("error %v, want one wrapping the writer's", err)
	}
	if _, err := os.Stat(fresh); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed first write left %s (stat: %v)", fresh, err)
	}

	old := filepath.Join(dir, "old")
	if err := WriteFile(old, 0o644, writeBytes([]byte("complete"))); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(old, 0o644, halfThenFail([]byte("0123456789"))); !errors.Is(err, errHalfWay) {
		t.Fatalf("error %v, want one wrapping the writer's", err)
	}
	if got, _ := os.ReadFile(old); string(got) != "complete" {
		t.Errorf("after a failed rewrite the file holds %q, want the old \"complete\"", got)
	}
	if n := names(t, dir); !slices.Equal(n, []string{"old"}) {
		t.Errorf("directory holds %v, want only old", n)
	}
}

// The write function gets no way to close the file before it is fsynced
// (arrow's Parquet writer closes a sink that is an io.Closer).
func TestWriteFileHidesClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	err := WriteFile(path, 0o644, func(w io.Writer) error {
		if c, ok := w.(io.Closer); ok {
			c.Close()
		}
		_, err := w.Write([]byte("x"))
		return err
	})
	if err != nil {
		t.Fatalf("a writer that closes what it can: %v", err)
	}
}

func TestWriteFileMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "file")
	if err := WriteFile(path, 0o644, writeBytes(nil)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error %v, want os.ErrNotExist", err)
	}
}

// A reader polling the file while it is rewritten sees only whole
// contents.
func TestWriteFileReaderSeesWholeFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	content := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 64<<10) }
	if err := WriteFile(path, 0o644, writeBytes(content(0))); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad error
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(path)
			if err != nil {
				bad = err
				return
			}
			if len(b) != 64<<10 || bytes.Count(b, b[:1]) != len(b) {
				bad = fmt.Errorf("read a partial or mixed file of %d bytes", len(b))
				return
			}
		}
	})
	for i := 1; i < 30; i++ {
		if err := WriteFile(path, 0o644, writeBytes(content(i))); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if bad != nil {
		t.Fatal(bad)
	}
}

// seq returns a next function for PublishDir naming v1, v2, ...
func seq() func() (string, error) {
	n := 0
	return func() (string, error) {
		n++
		return fmt.Sprintf("v%d", n), nil
	}
}

func TestPublishDir(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "models", "demo") // created
	files := []File{{"b.json", writeBytes([]byte("{}"))}, {"a.bin", writeBytes([]byte{1, 2, 3})}}
	dir, err := PublishDir(parent, files, seq())
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(parent, "v1") {
		t.Fatalf("published %s, want %s", dir, filepath.Join(parent, "v1"))
	}
	if n := names(t, dir); !slices.Equal(n, []string{"a.bin", "b.json"}) {
		t.Errorf("published directory holds %v", n)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a.bin")); !bytes.Equal(b, []byte{1, 2, 3}) {
		t.Errorf("a.bin holds %v", b)
	}
	if n := names(t, parent); !slices.Equal(n, []string{"v1"}) {
		t.Errorf("parent holds %v, want only v1 (no temporary)", n)
	}
}

// A name taken by another writer is skipped: next is asked again.
func TestPublishDirNameTaken(t *testing.T) {
	parent := t.TempDir()
	if err := os.MkdirAll(filepath.Join(parent, "v1", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := PublishDir(parent, []File{{"f", writeBytes([]byte("new"))}}, seq())
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(dir) != "v2" {
		t.Fatalf("published %s, want v2 (v1 is taken)", dir)
	}
	if n := names(t, filepath.Join(parent, "v1")); !slices.Equal(n, []string{"x"}) {
		t.Errorf("the taken v1 was changed: it holds %v", n)
	}
}

// A file writer failing half-way leaves no directory and no temporary.
func TestPublishDirFailsHalfWay(t *testing.T) {
	parent := t.TempDir()
	files := []File{{"a", writeBytes([]byte("whole"))}, {"b", halfThenFail([]byte("0123456789"))}, {"c", writeBytes(nil)}}
	_, err := PublishDir(parent, files, seq())
	if !errors.Is(err, errHalfWay) || !strings.Contains(err.Error(), "b") {
		t.Fatalf("error %v, want the writer's, naming b", err)
	}
	if n := names(t, parent); len(n) != 0 {
		t.Errorf("a failed publish left %v", n)
	}

	errNames := errors.New("no names left")
	_, err = PublishDir(parent, files[:1], func() (string, error) { return "", errNames })
	if !errors.Is(err, errNames) {
		t.Fatalf("error %v, want next's", err)
	}
	if n := names(t, parent); len(n) != 0 {
		t.Errorf("a failed publish left %v", n)
	}
}

func TestMkdirAll(t *testing.T) {
	base := t.TempDir()
	deep := filepath.Join(base, "a", "b", "c")
	if err := MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(deep); err != nil || !fi.IsDir() {
		t.Fatalf("stat %s: %v", deep, err)
	}
	if err := MkdirAll(deep, 0o755); err != nil {
		t.Fatalf("existing directory: %v", err)
	}

	// Something in the way is reported, at the path and below it.
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, filepath.Join(file, "below")} {
		if err := MkdirAll(p, 0o755); err == nil {
			t.Errorf("MkdirAll(%s) with a file in the way succeeded", p)
		}
	}
}

// Many writers creating the same tree at once all succeed.
func TestMkdirAllConcurrent(t *testing.T) {
	deep := filepath.Join(t.TempDir(), "a", "b", "c", "d")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = MkdirAll(deep, 0o755) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

func TestSyncDir(t *testing.T) {
	if err := SyncDir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error %v, want os.ErrNotExist", err)
	}
}
