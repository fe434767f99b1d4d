package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	pqa "github.com/apache/arrow-go/v18/parquet"
	pqacompress "github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/parquet-go/parquet-go"
)

// fixtureRow is one row of the test fixtures. For the pqarrow writer a nil
// Tags is a null list and an empty tag a null element; parquet-go writes
// them as an empty list and an empty string.
type fixtureRow struct {
	ID   int64    `parquet:"id"`
	I32  int32    `parquet:"i32"`
	F32  float32  `parquet:"f32"`
	F64  float64  `parquet:"f64"`
	B    bool     `parquet:"b"`
	S    string   `parquet:"s,dict"`
	OptI *int32   `parquet:"opt_i,optional"`
	OptS *string  `parquet:"opt_s,optional,dict"`
	OptF *float64 `parquet:"opt_f,optional"`
	OptB *bool    `parquet:"opt_b,optional"`
	Tags []string `parquet:"tags,list"`
	Nums []int64  `parquet:"nums,list"`
	Ints []int32  `parquet:"ints,list"`
}

var fixtureColumns = []string{"id", "i32", "f32", "f64", "b", "s", "opt_i", "opt_s", "opt_f", "opt_b", "tags", "nums", "ints"}

func makeRows(seed uint64, n int, firstID int64) []fixtureRow {
	r := rand.New(rand.NewPCG(seed, seed))
	cats := []string{"shoes", "books", "garden", "toys", "music", ""}
	rows := make([]fixtureRow, n)
	for i := range rows {
		x := &rows[i]
		x.ID = firstID + int64(i)
		x.I32 = int32(r.IntN(1000) - 500)
		x.F32 = r.Float32()
		x.F64 = r.NormFloat64()
		x.B = r.IntN(2) == 0
		x.S = cats[r.IntN(len(cats))]
		if r.IntN(5) > 0 {
			v := int32(r.IntN(90))
			x.OptI = &v
		}
		if r.IntN(4) > 0 {
			v := cats[r.IntN(len(cats))] + "-x"
			x.OptS = &v
		}
		if r.IntN(3) > 0 {
			v := r.Float64() * 100
			x.OptF = &v
		}
		if r.IntN(3) > 0 {
			v := r.IntN(2) == 0
			x.OptB = &v
		}
		if r.IntN(6) > 0 {
			x.Tags = []string{}
			for range r.IntN(5) {
				x.Tags = append(x.Tags, cats[r.IntN(len(cats))])
			}
		}
		for range r.IntN(4) {
			x.Nums = append(x.Nums, r.Int64N(1<<40))
		}
		for range r.IntN(3) {
			x.Ints = append(x.Ints, r.Int32N(100))
		}
	}
	return rows
}

var fixtureSchema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "i32", Type: arrow.PrimitiveTypes.Int32},
	{Name: "f32", Type: arrow.PrimitiveTypes.Float32},
	{Name: "f64", Type: arrow.PrimitiveTypes.Float64},
	{Name: "b", Type: arrow.FixedWidthTypes.Boolean},
	{Name: "s", Type: arrow.BinaryTypes.String},
	{Name: "opt_i", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
	{Name: "opt_s", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "opt_f", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "opt_b", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
	{Name: "tags", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
	{Name: "nums", Type: arrow.ListOf(arrow.PrimitiveTypes.Int64), Nullable: true},
	{Name: "ints", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32), Nullable: true},
}, nil)

// expectedRecord builds the Arrow record that reading rows back must give.
// With arrowNulls, nil Tags is a null list and "" a null element.
func expectedRecord(mem memory.Allocator, rows []fixtureRow, arrowNulls bool) arrow.RecordBatch {
	b := array.NewRecordBuilder(mem, fixtureSchema)
	defer b.Release()
	for _, x := range rows {
		b.Field(0).(*array.Int64Builder).Append(x.ID)
		b.Field(1).(*array.Int32Builder).Append(x.I32)
		b.Field(2).(*array.Float32Builder).Append(x.F32)
		b.Field(3).(*array.Float64Builder).Append(x.F64)
		b.Field(4).(*array.BooleanBuilder).Append(x.B)
		b.Field(5).(*array.StringBuilder).Append(x.S)
		if x.OptI != nil {
			b.Field(6).(*array.Int32Builder).Append(*x.OptI)
		} else {
			b.Field(6).AppendNull()
		}
		if x.OptS != nil {
			b.Field(7).(*array.StringBuilder).Append(*x.OptS)
		} else {
			b.Field(7).AppendNull()
		}
		if x.OptF != nil {
			b.Field(8).(*array.Float64Builder).Append(*x.OptF)
		} else {
			b.Field(8).AppendNull()
		}
		if x.OptB != nil {
			b.Field(9).(*array.BooleanBuilder).Append(*x.OptB)
		} else {
			b.Field(9).AppendNull()
		}
		lb := b.Field(10).(*array.ListBuilder)
		if x.Tags == nil && arrowNulls {
			lb.AppendNull()
		} else {
			lb.Append(true)
			vb := lb.ValueBuilder().(*array.StringBuilder)
			for _, t := range x.Tags {
				if t == "" && arrowNulls {
					vb.AppendNull()
				} else {
					vb.Append(t)
				}
			}
		}
		nb := b.Field(11).(*array.ListBuilder)
		nb.Append(true)
		for _, v := range x.Nums {
			nb.ValueBuilder().(*array.Int64Builder).Append(v)
		}
		ib := b.Field(12).(*array.ListBuilder)
		ib.Append(true)
		for _, v := range x.Ints {
			ib.ValueBuilder().(*array.Int32Builder).Append(v)
		}
	}
	return b.NewRecordBatch()
}

func writeParquetGo(t testing.TB, path string, rows []fixtureRow, codec string, rowGroup int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var c parquet.WriterOption
	switch codec {
	case "snappy":
		c = parquet.Compression(&parquet.Snappy)
	case "gzip":
		c = parquet.Compression(&parquet.Gzip)
	default:
		c = parquet.Compression(&parquet.Zstd)
	}
	w := parquet.NewGenericWriter[fixtureRow](f, c, parquet.MaxRowsPerRowGroup(rowGroup), parquet.PageBufferSize(2048))
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func writePqarrow(t testing.TB, path string, rec arrow.RecordBatch, codec string, rowGroup int64, v2 bool) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	cc := map[string]pqacompress.Compression{"snappy": pqacompress.Codecs.Snappy, "gzip": pqacompress.Codecs.Gzip, "zstd": pqacompress.Codecs.Zstd}[codec]
	ver := pqa.DataPageV1
	if v2 {
		ver = pqa.DataPageV2
	}
	props := pqa.NewWriterProperties(pqa.WithCompression(cc), pqa.WithMaxRowGroupLength(rowGroup),
		pqa.WithDataPageSize(1024), pqa.WithDataPageVersion(ver), pqa.WithDictionaryDefault(true))
	w, err := pqarrow.NewFileWriter(rec.Schema(), f, props, pqarrow.DefaultWriterProps())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// readAll reads every batch of src and concatenates each column.
func readAll(t *testing.T, mem memory.Allocator, src *ParquetSource) (cols []arrow.Array, batches int) {
	t.Helper()
	chunks := make([][]arrow.Array, len(src.Schema().Fields()))
	for rec, err := range Records(context.Background(), src) {
		if err != nil {
			t.Fatal(err)
		}
		if !rec.Schema().Equal(src.Schema()) {
			t.Fatalf("batch schema %s differs from Schema %s", rec.Schema(), src.Schema())
		}
		batches++
		for i, c := range rec.Columns() {
			c.Retain()
			chunks[i] = append(chunks[i], c)
		}
		rec.Release()
	}
	for _, ch := range chunks {
		if len(ch) == 0 {
			t.Fatal("no batches")
		}
		a, err := array.Concatenate(ch, mem)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range ch {
			c.Release()
		}
		cols = append(cols, a)
	}
	return cols, batches
}

func releaseAll(as []arrow.Array) {
	for _, a := range as {
		a.Release()
	}
}

func compareColumns(t *testing.T, names []string, want arrow.RecordBatch, got []arrow.Array) {
	t.Helper()
	for i, name := range names {
		w := want.Column(want.Schema().FieldIndices(name)[0])
		if !array.Equal(w, got[i]) {
			t.Errorf("column %q differs:\nwant %v\ngot  %v", name, trunc(w), trunc(got[i]))
		}
	}
}

func trunc(a arrow.Array) string {
	s := a.String()
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

func TestParquetSourceReadsBothWriters(t *testing.T) {
	dir := t.TempDir()
	type fixture struct {
		name   string
		pqa    bool
		v2     bool
		codec  string
		rg     int64
		nfiles int
	}
	fixtures := []fixture{
		{"parquet-go/zstd", false, true, "zstd", 300, 2},
		{"parquet-go/snappy", false, true, "snappy", 1000, 1},
		{"parquet-go/gzip", false, true, "gzip", 250, 3},
		{"pqarrow/snappy/v1", true, false, "snappy", 300, 2},
		{"pqarrow/gzip/v2", true, true, "gzip", 400, 1},
		{"pqarrow/zstd/v1", true, false, "zstd", 128, 3},
	}
	for fi, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			var all []fixtureRow
			sub := filepath.Join(dir, fmt.Sprint(fi))
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			for k := range fx.nfiles {
				rows := makeRows(uint64(fi*10+k), 700+k*37, int64(len(all)))
				all = append(all, rows...)
				path := filepath.Join(sub, fmt.Sprintf("part-%02d.parquet", k))
				if fx.pqa {
					rec := expectedRecord(mem, rows, true)
					writePqarrow(t, path, rec, fx.codec, fx.rg, fx.v2)
					rec.Release()
				} else {
					writeParquetGo(t, path, rows, fx.codec, fx.rg)
				}
			}
			want := expectedRecord(mem, all, fx.pqa)
			defer want.Release()
			for bi, bs := range []int{1, 97, 4096} {
				for _, proj := range [][]string{nil, {"tags", "opt_s", "opt_b", "id"}} {
					src, err := NewParquetSource(context.Background(), ParquetConfig{
						Paths: []string{filepath.Join(sub, "*.parquet")}, Columns: proj, BatchSize: bs, Allocator: mem,
						Workers: 1 + bi}) // 1, 2 and 3 workers
					if err != nil {
						t.Fatal(err)
					}
					names := proj
					if names == nil {
						names = fixtureColumns
					}
					if got := len(src.Schema().Fields()); got != len(names) {
						t.Fatalf("schema has %d fields, want %d", got, len(names))
					}
					if bs == 1 && len(all) > 300 {
						// Batch size 1 is slow only in the comparison; keep it to one projection.
						if proj == nil {
							src.Close()
							continue
						}
					}
					cols, batches := readAll(t, mem, src)
					if wantB := (len(all) + bs - 1) / bs; batches != wantB {
						t.Errorf("batch size %d: %d batches, want %d", bs, batches, wantB)
					}
					compareColumns(t, names, want, cols)
					releaseAll(cols)
					if _, err := src.Next(context.Background()); !errors.Is(err, io.EOF) {
						t.Errorf("Next after the end: %v, want io.EOF", err)
					}
					src.Close()
					if _, err := src.Next(context.Background()); !errors.Is(err, ErrClosed) {
						t.Errorf("Next after Close: %v, want ErrClosed", err)
					}
				}
			}
		})
	}
}

func TestParquetSourceResume(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	dir := t.TempDir()
	var all []fixtureRow
	for k := range 3 {
		rows := makeRows(uint64(100+k), 500, int64(len(all)))
		all = append(all, rows...)
		writeParquetGo(t, filepath.Join(dir, fmt.Sprintf("f%d.parquet", k)), rows, "zstd", 170)
	}
	want := expectedRecord(mem, all, false)
	defer want.Release()
	// The same rows written by pqarrow with v1 data pages (no page index).
	pqdir := filepath.Join(dir, "pqarrow")
	os.Mkdir(pqdir, 0o755)
	for k := range 3 {
		rec := want.NewSlice(int64(k*500), int64(k*500+500))
		writePqarrow(t, filepath.Join(pqdir, fmt.Sprintf("f%d.parquet", k)), rec, "snappy", 170, false)
		rec.Release()
	}
	cols := []string{"id", "tags", "opt_i", "s", "nums"}
	for _, tc := range []struct {
		name string
		glob []string
		cut  int
	}{
		{"parquet-go/0", []string{filepath.Join(dir, "*.parquet")}, 0},
		{"parquet-go/1", []string{filepath.Join(dir, "*.parquet")}, 1},
		{"parquet-go/3", []string{filepath.Join(dir, "*.parquet")}, 3},
		{"parquet-go/7", []string{filepath.Join(dir, "*.parquet")}, 7},
		{"parquet-go/11", []string{filepath.Join(dir, "*.parquet")}, 11},
		{"parquet-go/14", []string{filepath.Join(dir, "*.parquet")}, 14},
		{"pqarrow-v1/2", []string{filepath.Join(pqdir, "*.parquet")}, 2},
		{"pqarrow-v1/6", []string{filepath.Join(pqdir, "*.parquet")}, 6},
	} {
		glob, cut := tc.glob, tc.cut
		t.Run(tc.name, func(t *testing.T) {
			// Read cut batches of 107 rows, then resume in a new source.
			src, err := NewParquetSource(context.Background(), ParquetConfig{Paths: glob, Columns: cols, BatchSize: 107, Allocator: mem})
			if err != nil {
				t.Fatal(err)
			}
			read := 0
			for range cut {
				rec, err := src.Next(context.Background())
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				read += int(rec.NumRows())
				rec.Release()
			}
			pos := src.Position()
			src.Close()
			src2, err := NewParquetSource(context.Background(), ParquetConfig{Paths: glob, Columns: cols, BatchSize: 64, Allocator: mem, Start: pos})
			if err != nil {
				t.Fatalf("resume from %+v: %v", pos, err)
			}
			defer src2.Close()
			rest := want.NewSlice(int64(read), int64(len(all)))
			defer rest.Release()
			if read == len(all) {
				if _, err := src2.Next(context.Background()); err != io.EOF {
					t.Fatalf("resume at the end: %v, want io.EOF", err)
				}
				return
			}
			got, _ := readAll(t, mem, src2)
			defer releaseAll(got)
			compareColumns(t, cols, rest, got)
		})
	}
}

func TestParquetSourceErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.parquet")
	writeParquetGo(t, good, makeRows(1, 300, 0), "snappy", 100)
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	trunc := filepath.Join(dir, "trunc.parquet")
	os.WriteFile(trunc, data[:len(data)/2], 0o644)
	garbage := filepath.Join(dir, "garbage.parquet")
	os.WriteFile(garbage, []byte("this is not parquet at all, not even close"), 0o644)
	// Pages corrupted but footer intact.
	bad := append([]byte(nil), data...)
	r := rand.New(rand.NewPCG(9, 9))
	for i := 4; i < len(bad)/2; i += 7 {
		bad[i] = byte(r.IntN(256))
	}
	badPages := filepath.Join(dir, "badpages.parquet")
	os.WriteFile(badPages, bad, 0o644)
	// Same column names, other types.
	type otherRow struct {
		ID  string `parquet:"id"`
		I32 int32  `parquet:"i32"`
	}
	other := filepath.Join(dir, "other.parquet")
	if err := parquet.WriteFile(other, []otherRow{{"a", 1}, {"b", 2}}); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name     string
		cfg      ParquetConfig
		sentinel error
		mention  []string
	}{
		{"empty glob", ParquetConfig{Paths: []string{filepath.Join(dir, "nope-*.parquet")}}, ErrNoFiles, []string{"nope-*.parquet"}},
		{"missing column", ParquetConfig{Paths: []string{good}, Columns: []string{"id", "price"}}, ErrSchema, []string{"good.parquet", `"price"`}},
		{"wrong type", ParquetConfig{Paths: []string{good, other}, Columns: []string{"id", "i32"}}, ErrSchema, []string{"other.parquet", `"id"`, "want int64", "found utf8"}},
		{"truncated", ParquetConfig{Paths: []string{good, trunc}}, ErrCorrupt, []string{"trunc.parquet"}},
		{"garbage", ParquetConfig{Paths: []string{garbage}}, ErrCorrupt, []string{"garbage.parquet"}},
		{"bad position", ParquetConfig{Paths: []string{good}, Start: Position{File: other}}, ErrPosition, []string{"other.parquet"}},
		{"position past end", ParquetConfig{Paths: []string{good}, Start: Position{File: good, RowGroup: 1, Row: 500}}, ErrPosition, []string{"good.parquet", "500"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, err := NewParquetSource(context.Background(), c.cfg)
			if err == nil {
				src.Close()
				t.Fatal("no error")
			}
			if !errors.Is(err, c.sentinel) {
				t.Errorf("error %v does not wrap %v", err, c.sentinel)
			}
			for _, m := range c.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if !strings.HasPrefix(err.Error(), "ingest: ") {
				t.Errorf("error %q does not start with the package name", err)
			}
		})
	}
	t.Run("corrupt pages", func(t *testing.T) {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer mem.AssertSize(t, 0)
		src, err := NewParquetSource(context.Background(), ParquetConfig{Paths: []string{badPages}, Allocator: mem, Workers: 2})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "badpages.parquet") {
				t.Fatalf("open: %v", err)
			}
			return
		}
		defer src.Close()
		for {
			rec, err := src.Next(context.Background())
			if err == io.EOF {
				t.Fatal("corrupted pages read without error")
			}
			if err != nil {
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "badpages.parquet") {
					t.Fatalf("error %v: want ErrCorrupt naming the file", err)
				}
				return
			}
			rec.Release()
		}
	})
	t.Run("validate", func(t *testing.T) {
		for _, cfg := range []ParquetConfig{
			{},
			{Paths: []string{""}},
			{Paths: []string{"[x"}},
			{Paths: []string{good}, BatchSize: -1},
			{Paths: []string{good}, Columns: []string{"a", "a"}},
			{Paths: []string{good}, Start: Position{Row: 3}},
			{Paths: []string{good}, Workers: -1},
		} {
			if err := cfg.Validate(); err == nil {
				t.Errorf("Validate(%+v) accepted a bad config", cfg)
			}
		}
	})
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		src, err := NewParquetSource(ctx, ParquetConfig{Paths: []string{good}})
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		cancel()
		if _, err := src.Next(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Next on a canceled context: %v", err)
		}
	})
}

func TestParquetSourceSkipsEmptyFiles(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	dir := t.TempDir()
	rows := makeRows(5, 50, 0)
	writeParquetGo(t, filepath.Join(dir, "a.parquet"), nil, "zstd", 10)
	writeParquetGo(t, filepath.Join(dir, "b.parquet"), rows, "zstd", 10)
	writeParquetGo(t, filepath.Join(dir, "c.parquet"), nil, "zstd", 10)
	src, err := NewParquetSource(context.Background(), ParquetConfig{Paths: []string{filepath.Join(dir, "*.parquet")}, BatchSize: 16, Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if p := src.Position(); !strings.HasSuffix(p.File, "b.parquet") || p.RowGroup != 0 || p.Row != 0 {
		t.Errorf("start position %+v, want b.parquet row group 0 row 0", p)
	}
	want := expectedRecord(mem, rows, false)
	defer want.Release()
	got, batches := readAll(t, mem, src)
	defer releaseAll(got)
	if batches != 4 {
		t.Errorf("%d batches, want 4", batches)
	}
	compareColumns(t, fixtureColumns, want, got)
	if p := src.Position(); !strings.HasSuffix(p.File, "c.parquet") || p.RowGroup != 0 {
		t.Errorf("end position %+v, want c.parquet with its 0 row groups", p)
	}
}

func TestParquetSourcePositionAfterError(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	dir := t.TempDir()
	a := filepath.Join(dir, "a.parquet")
	writeParquetGo(t, a, makeRows(1, 30, 0), "zstd", 100)
	b := filepath.Join(dir, "b.parquet")
	writeParquetGo(t, b, makeRows(2, 30, 30), "zstd", 100)
	src, err := NewParquetSource(context.Background(), ParquetConfig{Paths: []string{a, b}, BatchSize: 20, Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rec, err := src.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rec.Release()
	// b is replaced by garbage after the source checked it: the batch that
	// would cross into b fails and Position stays at row 20 of a.
	if err := os.WriteFile(b, []byte("garbage garbage garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Next(context.Background()); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "b.parquet") {
		t.Fatalf("Next into a corrupt file: %v", err)
	}
	if p := src.Position(); p.File != a || p.RowGroup != 0 || p.Row != 20 {
		t.Errorf("Position after the error %+v, want %s row group 0 row 20", p, a)
	}
	if _, err := src.Next(context.Background()); !errors.Is(err, ErrCorrupt) {
		t.Errorf("second Next after an error: %v, want the same error", err)
	}
}
