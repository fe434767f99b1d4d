package features_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/onestone/onestone/features"
)

// TestJSONEncoderRoundTrip writes records of every column type as events
// and reads them back with JSONDecoder: every value comes back as it was
// (integers in a list<utf8> column, and columns read as utf8, as their
// base-10 text; NaN and infinities as null).
func TestJSONEncoderRoundTrip(t *testing.T) {
	mem := checkedMem(t)
	r := rand.New(rand.NewPCG(7, 7))
	const n = 3000
	strs := []string{"", "plain", `q"u\o/te`, "ctl\x00\x01\a\x1f\x7f", "tab\t\nnl\r", "é😀\u2028", "bad\xffutf8\xc3"}
	ints := []int{0, -1, 1, math.MaxInt64, math.MinInt64, 1<<53 + 1}
	floats := []float64{0, math.Copysign(0, -1), 0.1, 1e21, 1e-7, math.MaxFloat64, math.SmallestNonzeroFloat64, math.NaN(), math.Inf(1), math.Inf(-1)}
	f32s := []float64{0.1, math.MaxFloat32, math.SmallestNonzeroFloat32, 16777217, math.NaN(), math.Inf(-1)}
	str := func(i int) string {
		if i < len(strs) {
			return strs[i]
		}
		b := make([]byte, r.IntN(8))
		for k := range b {
			b[k] = byte(r.IntN(128))
		}
		return string(b)
	}
	var cI64, cI32, cU64, cF64, cF32, cS, cLS, cDict, cB, cTags, cIDs, cLTags []any
	for i := range n {
		if i%11 == 5 { // a row of nulls
			for _, c := range []*[]any{&cI64, &cI32, &cU64, &cF64, &cF32, &cS, &cLS, &cDict, &cB, &cTags, &cIDs, &cLTags} {
				*c = append(*c, nil)
			}
			continue
		}
		i64 := int(r.Uint64())
		if i < len(ints) {
			i64 = ints[i]
		}
		f64 := math.Float64frombits(r.Uint64())
		if i < len(floats) {
			f64 = floats[i]
		}
		f32 := float64(math.Float32frombits(r.Uint32()))
		if i < len(f32s) {
			f32 = f32s[i]
		}
		var tags, ids []any
		for k := range r.IntN(4) {
			if k == 1 && i%3 == 0 {
				tags = append(tags, nil)
			} else {
				tags = append(tags, str(r.IntN(len(strs)+3)))
			}
			ids = append(ids, int(r.Uint64()))
		}
		if tags == nil {
			tags, ids = []any{}, []any{}
		}
		cI64 = append(cI64, i64)
		cI32 = append(cI32, int(int32(r.Uint32())))
		cU64 = append(cU64, int(r.Uint64()>>1))
		cF64 = append(cF64, f64)
		cF32 = append(cF32, f32)
		cS = append(cS, str(i))
		cLS = append(cLS, str(r.IntN(len(strs))))
		cDict = append(cDict, strs[r.IntN(len(strs))])
		cB = append(cB, r.IntN(2) == 1)
		cTags = append(cTags, tags)
		cIDs = append(cIDs, ids)
		cLTags = append(cLTags, tags)
	}
	dict := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}
	rec := record(t, mem,
		col{"i64", arrow.PrimitiveTypes.Int64, cI64},
		col{"i32", arrow.PrimitiveTypes.Int32, cI32},
		col{"u64", arrow.PrimitiveTypes.Uint64, cU64},
		col{"f64", arrow.PrimitiveTypes.Float64, cF64},
		col{"f32", arrow.PrimitiveTypes.Float32, cF32},
		col{"s", arrow.BinaryTypes.String, cS},
		col{"large", arrow.BinaryTypes.LargeString, cLS},
		col{"dict", dict, cDict},
		col{"b", arrow.FixedWidthTypes.Boolean, cB},
		col{"tags", arrow.ListOf(arrow.BinaryTypes.String), cTags},
		col{"ids", arrow.ListOf(arrow.PrimitiveTypes.Int64), cIDs},
		col{"ltags", arrow.LargeListOf(arrow.BinaryTypes.String), cLTags},
	)
	defer rec.Release()

	enc, err := features.NewJSONEncoder(rec.Schema())
	if err != nil {
		t.Fatal(err)
	}
	// The decoder's schema: the types the spec gives these columns.
	utf8, tagList := arrow.BinaryTypes.String, arrow.ListOf(arrow.BinaryTypes.String)
	decTypes := []arrow.DataType{arrow.PrimitiveTypes.Int64, arrow.PrimitiveTypes.Int32, utf8,
		arrow.PrimitiveTypes.Float64, arrow.PrimitiveTypes.Float32, utf8, utf8, utf8,
		arrow.FixedWidthTypes.Boolean, tagList, tagList, tagList}
	fields := make([]arrow.Field, len(decTypes))
	for i, typ := range decTypes {
		fields[i] = arrow.Field{Name: rec.ColumnName(i), Type: typ, Nullable: true}
	}
	dec, err := features.NewJSONDecoder(arrow.NewSchema(fields, nil), features.JSONConfig{Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Release()
	var buf []byte
	for row := range n {
		buf = enc.AppendRow(buf[:0], rec, row)
		if !json.Valid(buf) {
			t.Fatalf("row %d: invalid JSON %s", row, buf)
		}
		if err := dec.Append(buf); err != nil {
			t.Fatalf("row %d: %v: %s", row, err, buf)
		}
	}
	got := dec.NewRecordBatch()
	defer got.Release()
	for c := range int(rec.NumCols()) {
		asText := decTypes[c].ID() == arrow.STRING || decTypes[c].ID() == arrow.LIST
		for row := range n {
			want := cellText(rec.Column(c), row, asText)
			if g := cellText(got.Column(c), row, asText); g != want {
				t.Fatalf("column %s row %d: read back %s, want %s", rec.ColumnName(c), row, g, want)
			}
		}
	}
}

// cellText renders value r of a for comparison: null (NaN and infinities
// included), integers in base 10, floats in their shortest text (distinct
// for distinct values), strings quoted; with asText, numbers and strings
// are quoted, as a utf8 column holds them; invalid UTF-8 becomes U+FFFD.
func cellText(a arrow.Array, r int, asText bool) string {
	if a.IsNull(r) {
		return "null"
	}
	quote := func(s string) string {
		if asText {
			return strconv.Quote(string([]rune(s)))
		}
		return s
	}
	switch a := a.(type) {
	case *array.Int64:
		return quote(strconv.FormatInt(a.Value(r), 10))
	case *array.Int32:
		return quote(strconv.FormatInt(int64(a.Value(r)), 10))
	case *array.Uint64:
		return quote(strconv.FormatUint(a.Value(r), 10))
	case *array.Float64:
		v := a.Value(r)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return "null"
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	case *array.Float32:
		v := float64(a.Value(r))
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return "null"
		}
		return strconv.FormatFloat(v, 'g', -1, 32)
	case *array.Boolean:
		return strconv.FormatBool(a.Value(r))
	case *array.String:
		return strconv.Quote(string([]rune(a.Value(r))))
	case *array.LargeString:
		return strconv.Quote(string([]rune(a.Value(r))))
	case *array.Dictionary:
		return cellText(a.Dictionary(), a.GetValueIndex(r), asText)
	case *array.List:
		lo, hi := a.ValueOffsets(r)
		return listText(a.ListValues(), int(lo), int(hi))
	case *array.LargeList:
		lo, hi := a.ValueOffsets(r)
		return listText(a.ListValues(), int(lo), int(hi))
	}
	return "?"
}

func listText(vals arrow.Array, lo, hi int) string {
	parts := make([]string, 0, hi-lo)
	for k := lo; k < hi; k++ {
		parts = append(parts, cellText(vals, k, true))
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func TestJSONEncoderTypes(t *testing.T) {
	for _, typ := range []arrow.DataType{arrow.FixedWidthTypes.Timestamp_us, arrow.BinaryTypes.Binary,
		arrow.ListOf(arrow.FixedWidthTypes.Date32), arrow.StructOf(arrow.Field{Name: "a", Type: arrow.PrimitiveTypes.Int64})} {
		s := arrow.NewSchema([]arrow.Field{{Name: "ok", Type: arrow.PrimitiveTypes.Int64}, {Name: "x", Type: typ}}, nil)
		if _, err := features.NewJSONEncoder(s); err == nil || !strings.HasPrefix(err.Error(), `features: column "x"`) {
			t.Errorf("%s: err = %v", typ, err)
		}
	}
	if _, err := features.NewJSONEncoder(nil); err == nil {
		t.Error("nil schema accepted")
	}
}
