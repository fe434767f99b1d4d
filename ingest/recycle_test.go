package ingest

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// countingAllocator counts the calls to Allocate of the allocator it wraps.
type countingAllocator struct {
	memory.Allocator
	n atomic.Int64
}

func (c *countingAllocator) Allocate(size int) []byte {
	c.n.Add(1)
	return c.Allocator.Allocate(size)
}

// readCopies reads every batch of src, copies its columns (undict, then
// Concatenate: new buffers) and releases the batch at once, so that with
// ReuseBuffers the next batch is written over its buffers.
func readCopies(t *testing.T, mem memory.Allocator, src *ParquetSource) []arrow.Array {
	t.Helper()
	chunks := make([][]arrow.Array, len(src.Schema().Fields()))
	for rec, err := range Records(context.Background(), src) {
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range rec.Columns() {
			u := undict(t, mem, c)
			cp, err := array.Concatenate([]arrow.Array{u}, mem)
			u.Release()
			if err != nil {
				t.Fatal(err)
			}
			chunks[i] = append(chunks[i], cp)
		}
		rec.Release()
	}
	var out []arrow.Array
	for _, ch := range chunks {
		a, err := array.Concatenate(ch, mem)
		if err != nil {
			t.Fatal(err)
		}
		releaseAll(ch)
		out = append(out, a)
	}
	return out
}

// TestParquetSourceReuseBuffers: with ReuseBuffers, batches written over
// the buffers of released ones hold the same values as batches in new
// memory (nulls, lists, dictionaries, booleans, batches spanning row
// groups), on one and two workers; after Close every buffer is back in
// the Allocator.
func TestParquetSourceReuseBuffers(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	dir := t.TempDir()
	for k := range 2 {
		writeParquetGo(t, filepath.Join(dir, fmt.Sprintf("part-%d.parquet", k)), makeRows(uint64(70+k), 900+k*31, int64(k*1000)), "zstd", 250)
	}
	ctx := context.Background()
	for _, dict := range []bool{false, true} {
		for _, w := range []int{1, 2} {
			name := fmt.Sprintf("dict=%v/workers=%d", dict, w)
			read := func(reuse bool) []arrow.Array {
				src, err := NewParquetSource(ctx, ParquetConfig{Paths: []string{filepath.Join(dir, "*.parquet")}, Columns: fixtureColumns,
					BatchSize: 113, Allocator: mem, Workers: w, Dictionary: dict, ReuseBuffers: reuse})
				if err != nil {
					t.Fatal(err)
				}
				defer src.Close()
				return readCopies(t, mem, src)
			}
			want, got := read(false), read(true)
			for i, c := range fixtureColumns {
				if !array.Equal(want[i], got[i]) {
					t.Errorf("%s: column %q differs with ReuseBuffers:\nwant %v\ngot  %v", name, c, trunc(want[i]), trunc(got[i]))
				}
			}
			releaseAll(want)
			releaseAll(got)
		}
	}
}

// TestParquetSourceReuseBuffersSteadyState: once a few batches have been
// read and released, further batches of the same shape take no new
// buffer from the Allocator; without ReuseBuffers each batch does.
func TestParquetSourceReuseBuffersSteadyState(t *testing.T) {
	dir := t.TempDir()
	rows := makeRows(3, 4000, 0)
	for i := range rows {
		rows[i].Tags = []string{"a", "b"} // the same bytes in every batch
	}
	writeParquetGo(t, filepath.Join(dir, "a.parquet"), rows, "snappy", 1000)
	for _, reuse := range []bool{false, true} {
		mem := &countingAllocator{Allocator: memory.NewGoAllocator()}
		src, err := NewParquetSource(context.Background(), ParquetConfig{Paths: []string{filepath.Join(dir, "a.parquet")},
			Columns: []string{"id", "f64", "s", "opt_i", "tags"}, BatchSize: 200, Allocator: mem, Dictionary: true, ReuseBuffers: reuse})
		if err != nil {
			t.Fatal(err)
		}
		var warm int64
		batches := 0
		for rec, err := range Records(context.Background(), src) {
			if err != nil {
				t.Fatal(err)
			}
			rec.Release()
			if batches++; batches == 4 {
				warm = mem.n.Load()
			}
		}
		src.Close()
		extra := mem.n.Load() - warm
		if reuse && extra != 0 {
			t.Errorf("ReuseBuffers: %d buffers allocated over %d batches after the first 4, want 0", extra, batches-4)
		}
		if !reuse && extra < int64(batches-4) {
			t.Errorf("without ReuseBuffers: %d buffers allocated over %d batches after the first 4, want at least one a batch", extra, batches-4)
		}
	}
}
