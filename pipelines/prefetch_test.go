package pipelines

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/internal/gen"
)

// TestPrefetcher: the prefetcher's batches are those of reading and
// transforming the source in turn, in the same order and with the same
// positions; closing it part-way leaves no Arrow buffer behind; and the
// Batches it hands out are the same few, reused. With and without an
// exact table (whose prefetcher only reads ahead).
func TestPrefetcher(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := gen.Generate(ctx, gen.Config{Dir: dir, Rows: 6000, TestFrac: 0.1, Files: 2, Seed: 3, RowGroupRows: 1000}); err != nil {
		t.Fatal(err)
	}
	paths := []string{filepath.Join(dir, "train-*.parquet")}
	// The same data with item_id in an exact table: its prefetcher only
	// reads ahead (the transform runs in next).
	spec, err := os.ReadFile(filepath.Join(dir, "spec.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	exact := regexp.MustCompile(`name: item_id, kind: categorical, buckets: \d+`).ReplaceAll(spec, []byte("name: item_id, kind: categorical, exact: {capacity: 500}"))
	if bytes.Equal(exact, spec) {
		t.Fatal("the generated spec has no item_id line to make exact")
	}
	if err := os.WriteFile(filepath.Join(dir, "exact.yaml"), exact, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"spec.yaml", "exact.yaml"} {
		t.Run(name, func(t *testing.T) { testPrefetcher(t, filepath.Join(dir, name), paths) })
	}
}

func testPrefetcher(t *testing.T, specPath string, paths []string) {
	ctx := context.Background()
	s, err := LoadSetup(specPath, fitForTraining(ctx, paths, nil, false, nil))
	if err != nil {
		t.Fatal(err)
	}
	if exact := s.Transformer.IDs().Len() > 0; exact != strings.HasSuffix(specPath, "exact.yaml") {
		t.Fatalf("%s: exact tables %v", specPath, exact)
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	cfg := func(onBad func(ingest.BadRow)) ingest.ParquetConfig {
		return ingest.ParquetConfig{Paths: paths, Columns: s.Spec.Columns(true), BatchSize: 700, Allocator: mem,
			Check: s.Transformer.Checker(), OnBadRow: onBad, Dictionary: true, ReuseBuffers: true}
	}
	// In turn, each batch copied.
	src, err := ingest.NewParquetSource(ctx, cfg(nil))
	if err != nil {
		t.Fatal(err)
	}
	var want []features.Batch
	var wantPos []ingest.Position
	for {
		rec, err := src.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var b features.Batch
		if err := s.Transformer.TransformTo(&b, rec); err != nil {
			t.Fatal(err)
		}
		rec.Release()
		want = append(want, b)
		wantPos = append(wantPos, src.Position())
	}
	src.Close()
	if len(want) < 5 {
		t.Fatalf("only %d batches", len(want))
	}

	run := func(stopAfter int) (seen map[*features.Batch]bool) {
		pf := newPrefetcher()
		src, err := ingest.NewParquetSource(ctx, cfg(pf.badRow))
		if err != nil {
			t.Fatal(err)
		}
		pf.start(ctx, src, s.Transformer)
		seen = map[*features.Batch]bool{}
		for i := 0; ; i++ {
			if i == stopAfter {
				break
			}
			p := pf.next()
			if errors.Is(p.err, io.EOF) {
				if i != len(want) {
					t.Errorf("end after %d batches, want %d", i, len(want))
				}
				break
			}
			if p.err != nil {
				t.Fatal(p.err)
			}
			seen[p.b] = true
			w := want[i]
			if p.b.Rows != w.Rows || !reflect.DeepEqual(p.b.Sparse, w.Sparse) || !reflect.DeepEqual(p.b.Dense, w.Dense) ||
				!reflect.DeepEqual(p.b.Labels, w.Labels) || !reflect.DeepEqual(p.b.Groups, w.Groups) {
				t.Errorf("batch %d differs from the one read and transformed in turn", i)
			}
			if !reflect.DeepEqual(p.to, wantPos[i]) {
				t.Errorf("batch %d ends at %+v, want %+v", i, p.to, wantPos[i])
			}
			pf.recycle(p.b)
		}
		pf.close()
		src.Close()
		return seen
	}
	if seen := run(-1); len(seen) > prefetchDepth {
		t.Errorf("the prefetcher handed out %d different Batches, want at most %d", len(seen), prefetchDepth)
	}
	run(2) // stopped with batches read ahead: their buffers go back (AssertSize)
}
