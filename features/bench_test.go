package features_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/onestone/onestone/features"
)

// benchSpec mirrors the generated demo data: ids, categoricals, a tag list,
// numeric columns with nulls, two tasks and a group key.
const benchSpec = `fields:
  - {name: user_id, kind: categorical, buckets: 100000}
  - {name: item_id, kind: categorical, buckets: 100000, side: candidate}
  - {name: category, kind: categorical, vocab: {min_count: 1}, side: candidate}
  - {name: brand, kind: categorical, buckets: 10000, side: candidate}
  - {name: device, kind: categorical, buckets: 16}
  - {name: hour, kind: categorical, buckets: 24}
  - {name: user_tags, kind: multi_categorical, buckets: 1000}
  - {name: price, kind: numeric, transform: log1p, side: candidate}
  - {name: age, kind: numeric, transform: bucketize, buckets: 10}
  - {name: f1, kind: numeric, transform: standardize}
  - {name: f2, kind: numeric, transform: standardize, side: candidate}
  - {name: f3, kind: numeric}
tasks:
  - {name: ctr, kind: binary, label: click}
  - {name: cvr, kind: esmm, label: conversion, parent: ctr}
group_key: user_id
`

var devices = []string{"ios", "android", "web", "tablet"}

// benchRecord builds n rows with the column types Parquet delivers.
func benchRecord(t testing.TB, mem memory.Allocator, n int, seed uint64) arrow.RecordBatch {
	rng := rand.New(rand.NewPCG(seed, seed))
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "user_id", Type: i64}, {Name: "item_id", Type: i64},
		{Name: "category", Type: utf8}, {Name: "brand", Type: utf8}, {Name: "device", Type: utf8},
		{Name: "hour", Type: i32}, {Name: "user_tags", Type: arrow.ListOf(utf8), Nullable: true},
		{Name: "price", Type: f64}, {Name: "age", Type: f64, Nullable: true},
		{Name: "f1", Type: f64}, {Name: "f2", Type: f64}, {Name: "f3", Type: f32},
		{Name: "click", Type: i32}, {Name: "conversion", Type: i32},
	}, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	var buf []byte
	for i := 0; i < n; i++ {
		b.Field(0).(*array.Int64Builder).Append(rng.Int64N(1_000_000))
		b.Field(1).(*array.Int64Builder).Append(rng.Int64N(200_000))
		b.Field(2).(*array.StringBuilder).Append(fmt.Sprintf("cat_%d", rng.IntN(300)))
		buf = fmt.Appendf(buf[:0], "brand_%d", rng.IntN(5000))
		b.Field(3).(*array.StringBuilder).BinaryBuilder.Append(buf)
		b.Field(4).(*array.StringBuilder).Append(devices[rng.IntN(len(devices))])
		b.Field(5).(*array.Int32Builder).Append(int32(rng.IntN(24)))
		lb := b.Field(6).(*array.ListBuilder)
		if rng.IntN(10) == 0 {
			lb.AppendNull()
		} else {
			lb.Append(true)
			for k := rng.IntN(5); k > 0; k-- {
				lb.ValueBuilder().(*array.StringBuilder).Append(fmt.Sprintf("tag_%d", rng.IntN(500)))
			}
		}
		b.Field(7).(*array.Float64Builder).Append(rng.ExpFloat64() * 50)
		if rng.IntN(20) == 0 {
			b.Field(8).(*array.Float64Builder).AppendNull()
		} else {
			b.Field(8).(*array.Float64Builder).Append(float64(18 + rng.IntN(60)))
		}
		b.Field(9).(*array.Float64Builder).Append(rng.NormFloat64())
		b.Field(10).(*array.Float64Builder).Append(rng.NormFloat64()*3 + 1)
		b.Field(11).(*array.Float32Builder).Append(float32(rng.Float64()))
		click := rng.IntN(10) == 0
		conv := click && rng.IntN(5) == 0
		b.Field(12).(*array.Int32Builder).Append(int32(b2i(click)))
		b.Field(13).(*array.Int32Builder).Append(int32(b2i(conv)))
	}
	return b.NewRecordBatch()
}

// reportRows reports rows per wall second and, where the platform tells,
// rows per CPU second of the process (stable on a shared machine).
func reportRows(b *testing.B, rows int, cpu time.Duration) {
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
	if cpu > 0 {
		b.ReportMetric(float64(rows)/cpu.Seconds(), "rows/cpu-s")
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func benchStats(t testing.TB) *features.Stats {
	spec := mustParse(t, benchSpec)
	ft, err := features.NewFitter(spec, features.FitConfig{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	rec := benchRecord(t, memory.DefaultAllocator, 4096, 99)
	defer rec.Release()
	if err := ft.Add(rec); err != nil {
		t.Fatal(err)
	}
	st, err := ft.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// dictEncode returns rec with its string columns and the elements of its
// string lists dictionary-encoded (int32 indices), as ingest's Parquet
// reader with Dictionary delivers them.
func dictEncode(b testing.TB, rec arrow.RecordBatch) arrow.RecordBatch {
	fields := slices.Clone(rec.Schema().Fields())
	cols := make([]arrow.Array, rec.NumCols())
	for i, c := range rec.Columns() {
		cols[i] = dictArray(b, c)
		fields[i].Type = cols[i].DataType()
	}
	out := array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, rec.NumRows())
	for _, c := range cols {
		c.Release()
	}
	return out
}

// benchSpecExact is benchSpec with exact tables, of as many rows as the
// buckets, for the id fields.
var benchSpecExact = strings.NewReplacer(
	"name: user_id, kind: categorical, buckets: 100000", "name: user_id, kind: categorical, exact: {capacity: 100000}",
	"name: item_id, kind: categorical, buckets: 100000", "name: item_id, kind: categorical, exact: {capacity: 100000}",
	"name: brand, kind: categorical, buckets: 10000", "name: brand, kind: categorical, exact: {capacity: 10000}",
).Replace(benchSpec)

// dictArray returns c dictionary-encoded when it holds strings or a list
// of them, else c (retained).
func dictArray(b testing.TB, c arrow.Array) arrow.Array {
	dt := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}
	switch s := c.(type) {
	case *array.String:
		db := array.NewDictionaryBuilder(memory.DefaultAllocator, dt).(*array.BinaryDictionaryBuilder)
		defer db.Release()
		for r := range s.Len() {
			if s.IsNull(r) {
				db.AppendNull()
			} else if err := db.AppendString(s.Value(r)); err != nil {
				b.Fatal(err)
			}
		}
		return db.NewArray()
	case *array.List:
		if _, ok := s.ListValues().(*array.String); ok {
			vals := dictArray(b, s.ListValues())
			defer vals.Release()
			d := s.Data()
			ld := array.NewData(arrow.ListOf(dt), d.Len(), d.Buffers(), []arrow.ArrayData{vals.Data()}, d.NullN(), d.Offset())
			defer ld.Release()
			return array.MakeFromData(ld)
		}
	}
	c.Retain()
	return c
}

// BenchmarkTransform measures TransformTo on one core over a record of the
// demo data's shape, with its string columns plain and dictionary-encoded:
// 0 allocs/op in steady state. tables=exact gives user_id, item_id and
// brand exact tables, filled by training on 64 records of the data first.
func BenchmarkTransform(b *testing.B) {
	for _, tc := range []struct {
		rows int
		dict bool
		mode string
	}{{8192, false, "hash"}, {8192, true, "hash"}, {8192, false, "exact"}, {8192, true, "exact"}} {
		rows := tc.rows
		b.Run(fmt.Sprintf("rows=%d/dict=%v/tables=%s", rows, tc.dict, tc.mode), func(b *testing.B) {
			text := benchSpec
			if tc.mode == "exact" {
				text = benchSpecExact
			}
			spec := mustParse(b, text)
			tr, err := features.NewTransformer(spec, benchStats(b), features.TransformerConfig{Labels: true})
			if err != nil {
				b.Fatal(err)
			}
			rec := benchRecord(b, memory.DefaultAllocator, rows, 7)
			if tc.dict {
				plain := rec
				rec = dictEncode(b, plain)
				plain.Release()
			}
			defer rec.Release()
			var batch features.Batch
			if tc.mode == "exact" {
				for i := range 64 {
					r := benchRecord(b, memory.DefaultAllocator, rows, uint64(100+i))
					if err := tr.TransformTo(&batch, r); err != nil {
						b.Fatal(err)
					}
					if _, err := tr.IDs().Admit(&batch); err != nil {
						b.Fatal(err)
					}
					r.Release()
				}
			}
			if err := tr.TransformTo(&batch, rec); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for b.Loop() {
				if err := tr.TransformTo(&batch, rec); err != nil {
					b.Fatal(err)
				}
			}
			reportRows(b, rows*b.N, cpuTime()-cpu0)
		})
	}
}

func TestTransformAllocs(t *testing.T) {
	tr := newTransformer(t, benchSpec, benchStats(t), true)
	rec := benchRecord(t, memory.DefaultAllocator, 1024, 5)
	defer rec.Release()
	var batch features.Batch
	if err := tr.TransformTo(&batch, rec); err != nil {
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(10, func() {
		if err := tr.TransformTo(&batch, rec); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("TransformTo allocates %v times per call in steady state, want 0", a)
	}
}
