package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/onestone/onestone/internal/s3test"
)

// uploadDir copies the files of dir into the bucket prefix of u (an
// s3test URL) and returns the object URL of key under that prefix:
// s3://bucket/prefix/key?endpoint=...
func uploadDir(t testing.TB, u, dir string) func(key string) string {
	t.Helper()
	ctx := context.Background()
	b, err := s3test.OpenURL(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.WriteAll(ctx, e.Name(), data, nil); err != nil {
			t.Fatal(err)
		}
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := pu.Query()
	prefix := q.Get("prefix")
	q.Del("prefix")
	return func(key string) string {
		return (&url.URL{Scheme: pu.Scheme, Host: pu.Host, Path: "/" + prefix + key, RawQuery: q.Encode()}).String()
	}
}

// TestParquetSourceObjectStore reads files from each provider's server
// (S3, GCS, Azure) through a URL glob, and finds the same records as in
// the local files, for every projection and worker count; a projection
// of one column fetches a fraction of the file (ranged reads, no
// download).
func TestParquetSourceObjectStore(t *testing.T) { s3test.Each(t, testParquetSourceObjectStore) }

func testParquetSourceObjectStore(t *testing.T) {
	dir := t.TempDir()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	var all []fixtureRow
	for k := range 3 {
		rows := makeRows(uint64(k), 3000+k*37, int64(len(all)))
		all = append(all, rows...)
		writeParquetGo(t, filepath.Join(dir, fmt.Sprintf("part-%02d.parquet", k)), rows, "zstd", 500)
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("not parquet"), 0o644); err != nil {
		t.Fatal(err)
	}
	obj := uploadDir(t, s3test.URL(t), dir)
	want := expectedRecord(mem, all, false)
	defer want.Release()

	paths, err := ExpandPaths([]string{obj("part-*.parquet")})
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 || !strings.HasSuffix(paths[0], "/part-00.parquet?"+strings.SplitN(paths[0], "?", 2)[1]) {
		t.Fatalf("expanded to %v, want the 3 part files in order", paths)
	}
	for _, proj := range [][]string{nil, {"tags", "opt_s", "id"}} {
		for _, workers := range []int{1, 3} {
			src, err := NewParquetSource(context.Background(), ParquetConfig{
				Paths: []string{obj("part-*.parquet")}, Columns: proj, BatchSize: 1000, Allocator: mem, Workers: workers})
			if err != nil {
				t.Fatal(err)
			}
			names := proj
			if names == nil {
				names = fixtureColumns
			}
			cols, _ := readAll(t, mem, src)
			compareColumns(t, names, want, cols)
			releaseAll(cols)
			src.Close()
		}
	}

	// One column of one file: a fraction of the file is fetched.
	info, err := os.Stat(filepath.Join(dir, "part-00.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewParquetSource(context.Background(), ParquetConfig{Paths: []string{obj("part-00.parquet")}, Columns: []string{"id"}, Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	cols, _ := readAll(t, mem, src)
	releaseAll(cols)
	// The source has closed the file at its end; reopen to count one
	// pass: footer and the id column, with a read buffer small against
	// the file (the 1 MiB one takes the whole of a file this small).
	src.Close()
	bf, pf, err := openRemoteParquetBuffer(obj("part-00.parquet"), 8<<10)
	if err != nil {
		t.Fatal(err)
	}
	footer := bf.fetched.Load()
	col := pf.Root().Column("id")
	var n int64
	for _, rg := range pf.RowGroups() {
		pages := rg.ColumnChunks()[col.Index()].Pages()
		for {
			p, err := pages.ReadPage()
			if err != nil {
				break
			}
			n += p.NumRows()
		}
		pages.Close()
	}
	bf.Close()
	if n != int64(len(all[:3000])) {
		t.Fatalf("read %d rows of id, want 3000", n)
	}
	if got := bf.fetched.Load(); got >= info.Size() || footer >= info.Size()/2 {
		t.Fatalf("fetched %d bytes (footer %d) of a %d-byte file for one column: not ranged", got, footer, info.Size())
	}
	t.Logf("one column of %d bytes: %d bytes fetched in %d requests", info.Size(), bf.fetched.Load(), bf.gets.Load())

	// Errors: nothing matches, a missing object, a bad URL.
	if _, err := ExpandPaths([]string{obj("nothing-*.parquet")}); !errors.Is(err, ErrNoFiles) {
		t.Errorf("a glob matching nothing: %v, want ErrNoFiles", err)
	}
	if _, err := NewParquetSource(context.Background(), ParquetConfig{Paths: []string{obj("missing.parquet")}}); !errors.Is(err, ErrNoFiles) {
		t.Errorf("a missing object: %v, want ErrNoFiles", err)
	}
	if _, err := NewParquetSource(context.Background(), ParquetConfig{Paths: []string{obj("README")}}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("an object that is not Parquet: %v, want ErrCorrupt", err)
	}
	for _, bad := range []string{"ftp://b/k.parquet", "s3://b", "gs://b", "s3://u:secret@b/k", "gs://u:secret@b/k", "azblob://a:secret@c/k", obj("d*/x.parquet")} {
		_, err := NewParquetSource(context.Background(), ParquetConfig{Paths: []string{bad}})
		if err == nil || strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: %v, want an error (without the credentials)", bad, err)
		}
	}
}
