package features_test

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/internal/gen"
)

// genData writes a small generated data set (the demo's columns and spec).
func genData(t testing.TB, rows int64) (dir string, spec *features.Spec) {
	t.Helper()
	dir = t.TempDir()
	sum, err := gen.Generate(context.Background(), gen.Config{Dir: dir, Rows: rows, Users: 2000, Items: 2000, Seed: 3, Files: 2, RowGroupRows: 5000, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	spec, err = features.LoadSpec(sum.Spec)
	if err != nil {
		t.Fatal(err)
	}
	return dir, spec
}

func openSource(t testing.TB, mem memory.Allocator, dir string, cols []string) *ingest.ParquetSource {
	t.Helper()
	src, err := ingest.NewParquetSource(context.Background(), ingest.ParquetConfig{
		Paths: []string{filepath.Join(dir, "train-*.parquet")}, Columns: cols, BatchSize: 4096, Allocator: mem,
	})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// toJSONTypes rebuilds a Parquet-typed record with the canonical schema of
// records built from JSON (spec.Schema), converting values the way the JSON
// decoder does: categorical values to their text, numbers to float64.
func toJSONTypes(t testing.TB, mem memory.Allocator, spec *features.Spec, rec arrow.RecordBatch) arrow.RecordBatch {
	sc := spec.Schema(true)
	b := array.NewRecordBuilder(mem, sc)
	defer b.Release()
	n := int(rec.NumRows())
	for i, f := range sc.Fields() {
		src := rec.Column(rec.Schema().FieldIndices(f.Name)[0])
		switch fb := b.Field(i).(type) {
		case *array.StringBuilder:
			for r := 0; r < n; r++ {
				if src.IsNull(r) {
					fb.AppendNull()
				} else {
					fb.Append(src.ValueStr(r))
				}
			}
		case *array.ListBuilder:
			l := src.(*array.List)
			vb := fb.ValueBuilder().(*array.StringBuilder)
			for r := 0; r < n; r++ {
				if l.IsNull(r) {
					fb.AppendNull()
					continue
				}
				fb.Append(true)
				lo, hi := l.ValueOffsets(r)
				for j := lo; j < hi; j++ {
					vb.Append(l.ListValues().ValueStr(int(j)))
				}
			}
		case *array.Float64Builder:
			for r := 0; r < n; r++ {
				if src.IsNull(r) {
					fb.AppendNull()
					continue
				}
				switch a := src.(type) {
				case *array.Float64:
					fb.Append(a.Value(r))
				case *array.Float32:
					fb.Append(float64(a.Value(r)))
				case *array.Int64:
					fb.Append(float64(a.Value(r)))
				case *array.Int32:
					fb.Append(float64(a.Value(r)))
				case *array.Boolean:
					fb.Append(float64(b2i(a.Value(r))))
				default:
					t.Fatalf("column %s: unexpected type %s", f.Name, src.DataType())
				}
			}
		}
	}
	return b.NewRecordBatch()
}

// Parquet from the generator loads, fits and transforms end to end; the same
// rows as JSON-typed records (as serving and Kafka build them) give the same
// batches, so training and serving agree.
func TestParquetEndToEnd(t *testing.T) {
	mem := checkedMem(t)
	dir, spec := genData(t, 20000)
	src := openSource(t, mem, dir, spec.Columns(true))
	ft, err := features.NewFitter(spec, features.FitConfig{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for {
		rec, err := src.Next(context.Background())
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		err = ft.Add(rec)
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
	src.Close()
	st, err := ft.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if st.Rows == 0 || st.Labels["click"] == nil {
		t.Fatalf("stats: rows %d labels %v", st.Rows, st.Labels)
	}
	tr, err := features.NewTransformer(spec, st, features.TransformerConfig{Labels: true})
	if err != nil {
		t.Fatal(err)
	}
	lay := tr.Layout()
	src = openSource(t, mem, dir, spec.Columns(true))
	defer src.Close()
	var b, bj features.Batch
	rows := 0
	for {
		rec, err := src.Next(context.Background())
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.TransformTo(&b, rec); err != nil {
			t.Fatal(err)
		}
		jrec := toJSONTypes(t, mem, spec, rec)
		rec.Release()
		err = tr.TransformTo(&bj, jrec)
		jrec.Release()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(b, bj) {
			t.Fatalf("rows %d..: Parquet-typed and JSON-typed records give different batches", rows)
		}
		rows += b.Rows
		for f, sf := range lay.Sparse {
			c := b.Sparse[f]
			for _, id := range c.IDs {
				if id < 0 || int(id) >= sf.Cardinality {
					t.Fatalf("field %s: id %d outside [0, %d)", sf.Name, id, sf.Cardinality)
				}
			}
			if sf.Pooling != features.PoolNone && (len(c.Offsets) != b.Rows+1 || int(c.Offsets[b.Rows]) != len(c.IDs)) {
				t.Fatalf("field %s: %d offsets for %d rows, last %d of %d ids", sf.Name, len(c.Offsets), b.Rows, c.Offsets[b.Rows], len(c.IDs))
			}
		}
		for _, v := range b.Dense {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatal("non-finite dense value")
			}
		}
		for r := 0; r < b.Rows; r++ {
			if b.Labels[1][r] > b.Labels[0][r] {
				t.Fatalf("row %d: conversion without click", rows+r)
			}
		}
	}
	if int64(rows) != st.Rows {
		t.Errorf("transformed %d rows, fitted %d", rows, st.Rows)
	}
}

// BenchmarkParquetToBatch measures the whole batch path on one goroutine:
// Parquet files of generated data read column-wise by ingest.ParquetSource
// and transformed into Batches. Rows/s is per wall second and per CPU second.
func BenchmarkParquetToBatch(b *testing.B) {
	dir, spec := genData(b, 200000)
	ft, _ := features.NewFitter(spec, features.FitConfig{Seed: 1})
	src := openSource(b, memory.DefaultAllocator, dir, spec.Columns(true))
	for {
		rec, err := src.Next(context.Background())
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		ft.Add(rec)
		rec.Release()
	}
	src.Close()
	st, err := ft.Finish()
	if err != nil {
		b.Fatal(err)
	}
	tr, err := features.NewTransformer(spec, st, features.TransformerConfig{Labels: true})
	if err != nil {
		b.Fatal(err)
	}
	// Transform only: the generated records held in memory.
	b.Run("transform", func(b *testing.B) {
		src := openSource(b, memory.DefaultAllocator, dir, spec.Columns(true))
		var recs []arrow.RecordBatch
		rows := 0
		for {
			rec, err := src.Next(context.Background())
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			recs = append(recs, rec)
			rows += int(rec.NumRows())
		}
		src.Close()
		defer func() {
			for _, r := range recs {
				r.Release()
			}
		}()
		var batch features.Batch
		for _, r := range recs {
			tr.TransformTo(&batch, r)
		}
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := cpuTime()
		for b.Loop() {
			for _, r := range recs {
				if err := tr.TransformTo(&batch, r); err != nil {
					b.Fatal(err)
				}
			}
		}
		reportRows(b, rows*b.N, cpuTime()-cpu0)
	})
	for _, stage := range []string{"read", "read+transform"} {
		b.Run(stage, func(b *testing.B) {
			var batch features.Batch
			rows := 0
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				src := openSource(b, memory.DefaultAllocator, dir, spec.Columns(true))
				for {
					rec, err := src.Next(context.Background())
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					if stage != "read" {
						if err := tr.TransformTo(&batch, rec); err != nil {
							b.Fatal(err)
						}
					}
					rows += int(rec.NumRows())
					rec.Release()
				}
				src.Close()
			}
			reportRows(b, rows, cpuTime()-cpu0)
		})
	}
}

// Events rendered as JSON, decoded by the JSONDecoder into spec.Schema(true)
// records (the Kafka and serving path), transform exactly like the Parquet
// records they came from.
func TestJSONEventsMatchParquet(t *testing.T) {
	mem := checkedMem(t)
	dir, spec := genData(t, 20000)
	st := fitStats(t, spec, features.FitConfig{Seed: 1}, func() arrow.RecordBatch {
		src := openSource(t, mem, dir, spec.Columns(true))
		defer src.Close()
		rec, err := src.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}())
	tr, err := features.NewTransformer(spec, st, features.TransformerConfig{Labels: true})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := features.NewJSONDecoder(spec.Schema(true), features.JSONConfig{Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Release()
	src := openSource(t, mem, dir, spec.Columns(true))
	defer src.Close()
	rec, err := src.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	for r := 0; r < int(rec.NumRows()); r++ {
		ev := map[string]any{}
		for c, f := range rec.Schema().Fields() {
			a := rec.Column(c)
			if a.IsNull(r) {
				continue // absent key = null
			}
			ev[f.Name] = a.GetOneForMarshal(r)
		}
		js, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if err := dec.Append(js); err != nil {
			t.Fatalf("row %d: %s: %v", r, js, err)
		}
	}
	jrec := dec.NewRecordBatch()
	defer jrec.Release()
	var bp, bj features.Batch
	if err := tr.TransformTo(&bp, rec); err != nil {
		t.Fatal(err)
	}
	if err := tr.TransformTo(&bj, jrec); err != nil {
		t.Fatal(err)
	}
	if bp.Rows == 0 || !reflect.DeepEqual(bp, bj) {
		t.Fatalf("JSON events and Parquet rows give different batches (%d rows)", bp.Rows)
	}
}
