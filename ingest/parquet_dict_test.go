package ingest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/parquet-go/parquet-go"
)

// plainStringRow is written without dictionary encoding: its string pages
// are plain.
type plainStringRow struct {
	ID   int64   `parquet:"id"`
	S    string  `parquet:"s"`
	OptS *string `parquet:"opt_s,optional"`
}

// undict returns a as utf8: a itself, or a dictionary array's values row
// by row (nulls kept), or a list of dictionaries as a list of utf8.
func undict(t *testing.T, mem memory.Allocator, a arrow.Array) arrow.Array {
	t.Helper()
	if l, ok := a.(*array.List); ok {
		if _, ok := l.ListValues().(*array.Dictionary); ok {
			vals := undict(t, mem, l.ListValues())
			defer vals.Release()
			d := l.Data()
			ld := array.NewData(arrow.ListOf(arrow.BinaryTypes.String), d.Len(), d.Buffers(), []arrow.ArrayData{vals.Data()}, d.NullN(), d.Offset())
			defer ld.Release()
			return array.MakeFromData(ld)
		}
	}
	d, ok := a.(*array.Dictionary)
	if !ok {
		a.Retain()
		return a
	}
	vals := d.Dictionary().(*array.String)
	b := array.NewStringBuilder(mem)
	defer b.Release()
	for r := range d.Len() {
		if d.IsNull(r) {
			b.AppendNull()
		} else {
			b.Append(vals.Value(d.GetValueIndex(r)))
		}
	}
	return b.NewArray()
}

// TestParquetSourceDictionary: with Dictionary set, the string columns
// come as dictionary<int32, utf8> arrays (and string lists as lists of
// them) whose values, row by row, are those of the plain read: from dictionary pages
// (parquet-go and pqarrow writers) and plain pages, with nulls, across
// row groups, files and batch sizes. A batch's dictionary holds a value
// of a dictionary page once (at most the distinct values of each chunk it
// spans), and a plain page's values each.
func TestParquetSourceDictionary(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	dir := t.TempDir()
	sub := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pg, pa, pl := sub("parquet-go"), sub("pqarrow"), sub("plain")
	for k := range 2 {
		rows := makeRows(uint64(40+k), 700+k*53, int64(k*1000))
		writeParquetGo(t, filepath.Join(pg, fmt.Sprintf("part-%d.parquet", k)), rows, "zstd", 300)
		rec := expectedRecord(mem, rows, true)
		writePqarrow(t, filepath.Join(pa, fmt.Sprintf("part-%d.parquet", k)), rec, "snappy", 300, k == 1)
		rec.Release()
		plain := make([]plainStringRow, len(rows))
		for i, r := range rows {
			plain[i] = plainStringRow{ID: r.ID, S: r.S, OptS: r.OptS}
		}
		f, err := os.Create(filepath.Join(pl, fmt.Sprintf("part-%d.parquet", k)))
		if err != nil {
			t.Fatal(err)
		}
		w := parquet.NewGenericWriter[plainStringRow](f, parquet.MaxRowsPerRowGroup(300), parquet.PageBufferSize(2048))
		if _, err := w.Write(plain); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	ctx := context.Background()
	for _, d := range []string{pg, pa, pl} {
		cols := []string{"id", "s", "opt_s"}
		if d != pl {
			cols = append(cols, "tags")
		}
		for wi, bs := range []int{97, 4096} {
			name := fmt.Sprintf("%s/batch=%d", filepath.Base(d), bs)
			read := func(dict bool) (*ParquetSource, []arrow.Array, []int) {
				src, err := NewParquetSource(ctx, ParquetConfig{Paths: []string{filepath.Join(d, "*.parquet")}, Columns: cols,
					BatchSize: bs, Allocator: mem, Workers: 1 + wi, Dictionary: dict})
				if err != nil {
					t.Fatal(err)
				}
				var dictLens []int // of column s, per batch
				chunks := make([][]arrow.Array, len(cols))
				for rec, err := range Records(ctx, src) {
					if err != nil {
						t.Fatal(err)
					}
					for i, c := range rec.Columns() {
						chunks[i] = append(chunks[i], undict(t, mem, c))
						if dc, ok := c.(*array.Dictionary); ok && i == 1 {
							dictLens = append(dictLens, dc.Dictionary().Len())
						}
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
				return src, out, dictLens
			}
			plainSrc, want, _ := read(false)
			dictSrc, got, dictLens := read(true)
			for i, c := range cols {
				wantType := plainSrc.Schema().Field(i).Type
				dt := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}
				switch c {
				case "s", "opt_s":
					wantType = dt
				case "tags":
					wantType = arrow.ListOf(dt)
				}
				if got := dictSrc.Schema().Field(i).Type; !arrow.TypeEqual(got, wantType) {
					t.Errorf("%s: column %q is %s, want %s", name, c, got, wantType)
				}
				if !array.Equal(want[i], got[i]) {
					t.Errorf("%s: column %q differs from the plain read:\nwant %v\ngot  %v", name, c, trunc(want[i]), trunc(got[i]))
				}
			}
			// s takes 6 values: a dictionary page adds each at most once
			// per chunk (a batch spans at most bs/300 + 2 chunks); a
			// plain page adds every row's.
			for b, n := range dictLens {
				rows := min(bs, want[0].Len()-b*bs)
				limit := 6 * (bs/300 + 2)
				if d == pl {
					limit = rows
				}
				if n > limit || n > rows {
					t.Errorf("%s: batch %d of %d rows has a dictionary of %d values for s, want at most %d", name, b, rows, n, min(limit, rows))
				}
				if d == pl && n != rows {
					t.Errorf("%s: batch %d: plain pages gave a dictionary of %d values for %d rows", name, b, n, rows)
				}
			}
			releaseAll(want)
			releaseAll(got)
			plainSrc.Close()
			dictSrc.Close()
		}
	}
}
