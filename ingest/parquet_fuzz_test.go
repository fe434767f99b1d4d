package ingest

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// FuzzParquetSource feeds mutated Parquet files to ParquetSource: reading
// must end in io.EOF or an error, never a panic or a leak.
func FuzzParquetSource(f *testing.F) {
	dir := f.TempDir()
	a := filepath.Join(dir, "a.parquet")
	writeParquetGo(f, a, makeRows(1, 40, 0), "snappy", 16)
	b := filepath.Join(dir, "b.parquet")
	rec := expectedRecord(memory.DefaultAllocator, makeRows(2, 40, 0), true)
	writePqarrow(f, b, rec, "gzip", 16, false)
	rec.Release()
	for _, p := range []string{a, b} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		f.Add(data[:len(data)-9])
		mid := append([]byte(nil), data...)
		mid[len(mid)/3] ^= 0xff
		f.Add(mid)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "f.parquet")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer mem.AssertSize(t, 0)
		src, err := NewParquetSource(context.Background(), ParquetConfig{Paths: []string{path}, BatchSize: 7, Allocator: mem})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrSchema) {
				t.Fatalf("open: %v wraps neither ErrCorrupt nor ErrSchema", err)
			}
			return
		}
		defer src.Close()
		for {
			rec, err := src.Next(context.Background())
			if err == io.EOF {
				return
			}
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Next: %v does not wrap ErrCorrupt", err)
				}
				return
			}
			rec.Release()
		}
	})
}
