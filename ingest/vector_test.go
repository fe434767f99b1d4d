package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	pqa "github.com/apache/arrow-go/v18/parquet"
	pqacompress "github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/onestone/onestone/features"
)

const vectorTestSpec = `fields:
  - {name: a, kind: vector, dim: 3, normalize: per_dim}
  - {name: b, kind: vector, dim: 3, normalize: global, side: candidate}
  - {name: c, kind: vector, dim: 3}
tasks: [{name: ctr, kind: binary, label: click}]
`

// vectorRecord holds rows of three vectors of 3 as arrow-go writes them:
// a list<float> with null lists (id%17 == 3), b list<double> with a null
// item (id%23 == 4), c fixed_size_list<float, 3>; row bad (if >= 0) has 2
// items in a.
func vectorRecord(t *testing.T, mem memory.Allocator, ids []int64, bad int64) arrow.RecordBatch {
	t.Helper()
	sch := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "a", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32), Nullable: true},
		{Name: "b", Type: arrow.ListOf(arrow.PrimitiveTypes.Float64), Nullable: true},
		{Name: "c", Type: arrow.FixedSizeListOf(3, arrow.PrimitiveTypes.Float32), Nullable: true},
		{Name: "click", Type: arrow.PrimitiveTypes.Int64},
	}, nil)
	rb := array.NewRecordBuilder(mem, sch)
	defer rb.Release()
	for _, id := range ids {
		x := float64(id)
		rb.Field(0).(*array.Int64Builder).Append(id)
		a := rb.Field(1).(*array.ListBuilder)
		switch {
		case id%17 == 3:
			a.AppendNull()
		case id == bad:
			a.Append(true)
			a.ValueBuilder().(*array.Float32Builder).AppendValues([]float32{1, 2}, nil)
		default:
			a.Append(true)
			a.ValueBuilder().(*array.Float32Builder).AppendValues([]float32{float32(x) / 7, float32(math.Sin(x)), -1}, nil)
		}
		b := rb.Field(2).(*array.ListBuilder)
		b.Append(true)
		b.ValueBuilder().(*array.Float64Builder).AppendValues([]float64{x * 1e-3, math.Cos(x), x}, []bool{true, id%23 != 4, true})
		// (pqarrow cannot write a null fixed_size_list: its items take room)
		c := rb.Field(3).(*array.FixedSizeListBuilder)
		c.Append(true)
		c.ValueBuilder().(*array.Float32Builder).AppendValues([]float32{float32(x), 0.5, float32(-x)}, nil)
		rb.Field(4).(*array.Int64Builder).Append(id % 2)
	}
	return rb.NewRecordBatch()
}

// TestParquetVectors reads vector columns from Parquet written by arrow-go
// (list<float>, list<double> and a fixed_size_list, which Parquet stores
// as a list) in row groups of 100 and batches of 64: every good row
// transforms as the in-memory record does, and the row whose list is 2
// long stops Next with its file, row group, row and column, or with
// SkipBadRows is left out and reported.
func TestParquetVectors(t *testing.T) {
	dir := t.TempDir()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	const n, bad = 300, 150
	var all, good []int64
	for id := range int64(n) {
		all = append(all, id)
		if id != bad {
			good = append(good, id)
		}
	}
	// One record per row group: arrow-go v18.8.0's writer, cutting a
	// record into row groups itself, writes the items of a fixed_size_list
	// of every row group from the record's first row on.
	path := filepath.Join(dir, "vectors.parquet")
	var parts []arrow.RecordBatch
	for lo := 0; lo < n; lo += 100 {
		parts = append(parts, vectorRecord(t, mem, all[lo:lo+100], bad))
	}
	writePqarrowParts(t, path, parts)
	for _, p := range parts {
		p.Release()
	}
	ref := vectorRecord(t, mem, good, -1)
	defer ref.Release()

	spec, err := features.ParseSpec(strings.NewReader(vectorTestSpec))
	if err != nil {
		t.Fatal(err)
	}
	fit, err := features.NewFitter(spec, features.FitConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := fit.Add(ref); err != nil {
		t.Fatal(err)
	}
	stats, err := fit.Finish()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := features.NewTransformer(spec, stats, features.TransformerConfig{Labels: true})
	if err != nil {
		t.Fatal(err)
	}
	var want features.Batch
	if err := tr.TransformTo(&want, ref); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	cfg := ParquetConfig{Paths: []string{path}, Columns: []string{"id", "a", "b", "c", "click"}, BatchSize: 64, Allocator: mem, Check: tr.Checker()}
	src, err := NewParquetSource(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range src.Schema().Fields() {
		if i >= 1 && i <= 3 && f.Type.ID() != arrow.LIST {
			t.Errorf("column %s read as %s, want a list", f.Name, f.Type)
		}
	}
	var err1 error
	for err1 == nil {
		var rec arrow.RecordBatch
		if rec, err1 = src.Next(ctx); err1 == nil {
			rec.Release()
		}
	}
	var br *BadRow
	if !errors.As(err1, &br) || br.File != path || br.RowGroup != 1 || br.Row != 50 || br.Column != "a" || br.Fault != features.FaultLength {
		t.Fatalf("Next = %v, want the bad row of row group 1, row 50, column a", err1)
	}
	if !strings.Contains(err1.Error(), "row group 1, row 50") || !strings.Contains(err1.Error(), "want a vector of 3 numbers, found 2 (wrong_length)") {
		t.Errorf("error %q does not name the row and the fault", err1)
	}
	src.Close()

	var reported []BadRow
	cfg.SkipBadRows = true
	cfg.OnBadRow = func(b BadRow) { reported = append(reported, b) }
	if src, err = NewParquetSource(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var b features.Batch
	r0 := 0
	for {
		rec, err := src.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		err = tr.TransformTo(&b, rec)
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
		w := b.DenseWidth
		for i := range b.Rows {
			got, exp := b.Dense[i*w:(i+1)*w], want.Dense[(r0+i)*w:(r0+i+1)*w]
			for d := range got {
				if math.Float32bits(got[d]) != math.Float32bits(exp[d]) {
					t.Fatalf("row %d (id %d) %s: read %v, in memory %v", r0+i, good[r0+i], tr.Layout().Dense[d].Name, got[d], exp[d])
				}
			}
		}
		r0 += b.Rows
	}
	if r0 != len(good) || len(reported) != 1 || reported[0].Row != 50 || reported[0].Fault != features.FaultLength {
		t.Errorf("read %d rows (want %d), reported %+v", r0, len(good), reported)
	}
	// The missing vectors are among them: a null list, a null item.
	if want.Dense[3*want.DenseWidth+3] != 1 || want.Dense[4*want.DenseWidth+7] != 1 {
		t.Errorf("rows 3 and 4 are not missing vectors: %v", want.Dense[3*want.DenseWidth:5*want.DenseWidth])
	}
}

// TestKafkaVectorDeadLetters: an event whose vector has the wrong length
// goes to the dead letters with reason wrong_length; one whose vector
// holds a string does with wrong_type; the others arrive.
func TestKafkaVectorDeadLetters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	brokers, topic := testBrokers(t)
	spec, err := features.ParseSpec(strings.NewReader(`fields:
  - {name: event_id, kind: categorical, buckets: 100}
  - {name: emb, kind: vector, dim: 2}
tasks: [{name: ctr, kind: binary, label: click}]
`))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := features.NewTransformer(spec, nil, features.TransformerConfig{Labels: true})
	if err != nil {
		t.Fatal(err)
	}
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "event_id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "emb", Type: arrow.ListOf(arrow.PrimitiveTypes.Float64), Nullable: true},
		{Name: "click", Type: arrow.PrimitiveTypes.Float64},
	}, nil)
	bad := map[int]string{7: ReasonWrongLength, 8: ReasonWrongLength, 20: ReasonWrongType}
	var vals []string
	for i := range 40 {
		emb := fmt.Sprintf("[%d.5,-1]", i)
		switch {
		case i == 7:
			emb = "[1,2,3]"
		case i == 8:
			emb = "[]"
		case i == 20:
			emb = `[1,"2"]`
		case i == 30:
			emb = "null"
		}
		vals = append(vals, fmt.Sprintf(`{"event_id":%d,"emb":%s,"click":%d}`, i, emb, i%2))
	}
	writeRaw(t, ctx, brokers, topic, 2, vals...)
	dlqPath := filepath.Join(t.TempDir(), "dead.jsonl")
	dlq, err := NewFileDeadLetters(dlqPath)
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()
	s, err := NewKafkaSource(ctx, KafkaConfig{
		Brokers: brokers, Topic: topic, GroupID: "g-" + topic, Schema: schema, Check: tr.Checker(),
		BatchSize: 16, BatchWait: 50 * time.Millisecond, DeadLetters: dlq, Allocator: mem, Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	seen := 0
	for seen < 40-len(bad) {
		rec, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("after %d events: %v", seen, err)
		}
		for r := range int(rec.NumRows()) {
			if id := int(rec.Column(0).(*array.Int64).Value(r)); bad[id] != "" {
				t.Errorf("event %d in a batch", id)
			}
		}
		seen += int(rec.NumRows())
		rec.Release()
	}
	if st := s.Stats(); st.DeadLetters[ReasonWrongLength] != 2 || st.DeadLetters[ReasonWrongType] != 1 {
		t.Errorf("dead letters %v, want 2 %s and 1 %s", st.DeadLetters, ReasonWrongLength, ReasonWrongType)
	}
	if err := dlq.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(dlqPath)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]deadLetterLine{}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var d deadLetterLine
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatal(err)
		}
		got[d.Offset] = d
	}
	for off, reason := range bad {
		if d := got[int64(off)]; d.Reason != reason || d.Partition != 2 || !strings.Contains(d.Detail, `"emb"`) {
			t.Errorf("dead letter of offset %d: %+v, want reason %s", off, d, reason)
		}
	}
	if d := got[7]; !strings.Contains(d.Detail, "want a vector of 2 numbers, found 3") {
		t.Errorf("detail %q", d.Detail)
	}
}

// writePqarrowParts writes each record as a row group of its own.
func writePqarrowParts(t *testing.T, path string, recs []arrow.RecordBatch) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	props := pqa.NewWriterProperties(pqa.WithCompression(pqacompress.Codecs.Zstd), pqa.WithDataPageSize(1024), pqa.WithDictionaryDefault(true))
	w, err := pqarrow.NewFileWriter(recs[0].Schema(), f, props, pqarrow.DefaultWriterProps())
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDuckDBVectors reads vector columns written by DuckDB 1.5.6
// (testdata/duckdb-vectors.mjs): FLOAT[], DOUBLE[] and FLOAT[3] arrive as
// lists and transform to their values; the list of 2 stops Next naming
// its row.
func TestDuckDBVectors(t *testing.T) {
	checkVectorFile(t, "testdata/duckdb-vectors.parquet", 0, 150) // one row group
}

// TestArrowRsVectors reads vector columns written by the Rust arrow-rs
// Parquet writer, parquet-rs 59.3.0 through parquet-wasm
// (testdata/arrowrs-vectors.mjs): list<float>, list<double> and
// fixed_size_list<float, 3> with the Arrow schema in the file's metadata,
// Snappy, row groups of 100; the same values and faults as DuckDB's file.
func TestArrowRsVectors(t *testing.T) {
	checkVectorFile(t, "testdata/arrowrs-vectors.parquet", 1, 50)
}

// checkVectorFile reads a file of the rows testdata/duckdb-vectors.mjs
// writes (300 ids; a of 3 floats, null when id % 17 == 3, of 2 at id 150;
// b of 3 doubles; c of 3 floats) through the real reader and transform
// and checks every value of the rows before the bad one's batch, and that
// the list of 2 of id 150 (row group group, row row in it) stops Next.
func checkVectorFile(t *testing.T, path string, group int, row int64) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	spec, err := features.ParseSpec(strings.NewReader(`fields:
  - {name: a, kind: vector, dim: 3}
  - {name: b, kind: vector, dim: 3, side: candidate}
  - {name: c, kind: vector, dim: 3, missing_indicator: false}
tasks: [{name: ctr, kind: binary, label: click}]
`))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := features.NewTransformer(spec, nil, features.TransformerConfig{Labels: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg := ParquetConfig{Paths: []string{path}, Columns: []string{"id", "a", "b", "c", "click"}, BatchSize: 128, Allocator: mem, Check: tr.Checker()}
	src, err := NewParquetSource(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var b features.Batch
	var rows int
	for {
		rec, err := src.Next(ctx)
		if err != nil {
			var br *BadRow
			if !errors.As(err, &br) || br.RowGroup != group || br.Row != row || br.Column != "a" || br.Fault != features.FaultLength {
				t.Fatalf("after %d rows: %v, want the wrong length of row group %d, row %d", rows, err, group, row)
			}
			break
		}
		if err := tr.TransformTo(&b, rec); err != nil {
			t.Fatal(err)
		}
		ids := rec.Column(0).(*array.Int64).Int64Values()
		w := b.DenseWidth
		for r, id := range ids {
			x := float64(id)
			row := b.Dense[r*w : (r+1)*w]
			want := []float64{x / 7, math.Sin(x), -1, 0, x * 1e-3, math.Cos(x), x, 0, x, 0.5, -x}
			if id%17 == 3 {
				copy(want, []float64{0, 0, 0, 1})
			}
			for d, v := range want {
				// The writers' sin and cos may differ from Go's in the last bit.
				if got := float64(row[d]); math.Abs(got-float64(float32(v))) > 1e-6*math.Max(1, math.Abs(v)) {
					t.Fatalf("id %d %s: %v, want %v", id, tr.Layout().Dense[d].Name, got, float32(v))
				}
			}
		}
		rows += len(ids)
		rec.Release()
	}
	src.Close()
	if rows != 128 {
		t.Errorf("%d rows before the bad one's batch, want 128", rows)
	}
}
