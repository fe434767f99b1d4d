package features_test

import (
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// col is a test column: nil values are nulls; list values are []any.
type col struct {
	name string
	typ  arrow.DataType
	vals []any
}

func appendValue(t testing.TB, b array.Builder, v any) {
	t.Helper()
	if v == nil {
		b.AppendNull()
		return
	}
	switch b := b.(type) {
	case *array.StringBuilder:
		b.Append(v.(string))
	case *array.LargeStringBuilder:
		b.Append(v.(string))
	case *array.BinaryDictionaryBuilder:
		if err := b.AppendString(v.(string)); err != nil {
			t.Fatal(err)
		}
	case *array.Int64Builder:
		b.Append(int64(v.(int)))
	case *array.Int32Builder:
		b.Append(int32(v.(int)))
	case *array.Uint64Builder:
		b.Append(uint64(v.(int)))
	case *array.Float64Builder:
		b.Append(v.(float64))
	case *array.Float32Builder:
		b.Append(float32(v.(float64)))
	case *array.BooleanBuilder:
		b.Append(v.(bool))
	case *array.ListBuilder:
		b.Append(true)
		for _, x := range v.([]any) {
			appendValue(t, b.ValueBuilder(), x)
		}
	case *array.LargeListBuilder:
		b.Append(true)
		for _, x := range v.([]any) {
			appendValue(t, b.ValueBuilder(), x)
		}
	case *array.FixedSizeListBuilder:
		b.Append(true)
		for _, x := range v.([]any) {
			appendValue(t, b.ValueBuilder(), x)
		}
	default:
		t.Fatalf("appendValue: unsupported builder %T", b)
	}
}

// record builds a record batch from test columns; the caller releases it.
func record(t testing.TB, mem memory.Allocator, cols ...col) arrow.RecordBatch {
	t.Helper()
	fields := make([]arrow.Field, len(cols))
	arrs := make([]arrow.Array, len(cols))
	n := -1
	for i, c := range cols {
		if n >= 0 && len(c.vals) != n {
			t.Fatalf("column %q has %d values, want %d", c.name, len(c.vals), n)
		}
		n = len(c.vals)
		fields[i] = arrow.Field{Name: c.name, Type: c.typ, Nullable: true}
		b := array.NewBuilder(mem, c.typ)
		for _, v := range c.vals {
			appendValue(t, b, v)
		}
		arrs[i] = b.NewArray()
		b.Release()
	}
	rec := array.NewRecordBatch(arrow.NewSchema(fields, nil), arrs, int64(n))
	for _, a := range arrs {
		a.Release()
	}
	return rec
}

func checkedMem(t *testing.T) *memory.CheckedAllocator {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	return mem
}

var (
	utf8    = arrow.BinaryTypes.String
	lutf8   = arrow.BinaryTypes.LargeString
	i64     = arrow.PrimitiveTypes.Int64
	i32     = arrow.PrimitiveTypes.Int32
	u64     = arrow.PrimitiveTypes.Uint64
	f64     = arrow.PrimitiveTypes.Float64
	f32     = arrow.PrimitiveTypes.Float32
	boolean = arrow.FixedWidthTypes.Boolean
	dictStr = &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int16, ValueType: arrow.BinaryTypes.String}
)

func vals[T any](xs ...T) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}

func repeat(v any, n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = v
	}
	return out
}

var _ = fmt.Sprint

func listUTF8() arrow.DataType { return arrow.ListOf(utf8) }
