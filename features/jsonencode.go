package features

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/onestone/onestone/internal/jsontext"
)

// JSONEncoder writes the rows of Arrow record batches as JSON events, one
// object per row with a key per column in schema order: the events the
// Kafka producer sends and a bundle's sample events, in the form
// JSONDecoder reads.
//
//   - strings (utf8, large_utf8, and dictionaries of them) as JSON strings,
//     invalid UTF-8 as U+FFFD;
//   - signed and unsigned integers in base 10, every digit kept;
//   - float32 and float64 in the shortest text that reads back as the same
//     float of their width (0.1 for float32(0.1), not 0.10000000149011612);
//     NaN and ±Inf, which JSON cannot hold, as null (the transform takes
//     NaN as missing too);
//   - booleans as true and false;
//   - lists, large lists and fixed-size lists as arrays of their items;
//   - nulls as null.
//
// Read by a JSONDecoder whose columns have the same types (utf8 for
// large_utf8, dictionaries and unsigned integers; list<utf8> for a list of
// integers, read as their base-10 text), every value reads back as it was.
//
// A JSONEncoder is immutable and safe for concurrent use.
type JSONEncoder struct {
	schema *arrow.Schema
	keys   [][]byte // `"name":` per column, with the leading comma after the first
}

// NewJSONEncoder returns an encoder of records with the given schema, or an
// error naming a column whose type has no JSON form here (want strings,
// integers, floats, booleans, dictionaries or lists of them).
func NewJSONEncoder(schema *arrow.Schema) (*JSONEncoder, error) {
	if schema == nil {
		return nil, errors.New("features: NewJSONEncoder: nil schema")
	}
	e := &JSONEncoder{schema: schema, keys: make([][]byte, schema.NumFields())}
	for i, f := range schema.Fields() {
		if !jsonEncodable(f.Type) {
			return nil, fmt.Errorf("features: column %q: type %s cannot be written as JSON (want string, integer, float, bool, a dictionary or a list of them)", f.Name, f.Type)
		}
		var k []byte
		if i > 0 {
			k = append(k, ',')
		}
		k = jsontext.AppendString(k, f.Name)
		e.keys[i] = append(k, ':')
	}
	return e, nil
}

func jsonEncodable(t arrow.DataType) bool {
	switch t.ID() {
	case arrow.STRING, arrow.LARGE_STRING, arrow.BOOL,
		arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64,
		arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64,
		arrow.FLOAT32, arrow.FLOAT64:
		return true
	case arrow.LIST, arrow.LARGE_LIST, arrow.FIXED_SIZE_LIST:
		return jsonEncodable(t.(arrow.ListLikeType).Elem())
	case arrow.DICTIONARY:
		return jsonEncodable(t.(*arrow.DictionaryType).ValueType)
	}
	return false
}

// Schema returns the schema of the records the encoder writes.
func (e *JSONEncoder) Schema() *arrow.Schema { return e.schema }

// AppendRow appends row r of rec, a record with the encoder's schema, as
// one JSON object.
func (e *JSONEncoder) AppendRow(dst []byte, rec arrow.RecordBatch, r int) []byte {
	dst = append(dst, '{')
	for c, k := range e.keys {
		dst = append(dst, k...)
		dst = AppendJSONValue(dst, rec.Column(c), r)
	}
	return append(dst, '}')
}

// AppendJSONValue appends value r of a as JSON, as JSONEncoder writes it.
// An array of a type NewJSONEncoder rejects is written as null.
func AppendJSONValue(dst []byte, a arrow.Array, r int) []byte {
	if a.IsNull(r) {
		return append(dst, "null"...)
	}
	switch a := a.(type) {
	case *array.String:
		return jsontext.AppendString(dst, a.Value(r))
	case *array.LargeString:
		return jsontext.AppendString(dst, a.Value(r))
	case *array.Float64:
		return jsontext.AppendFloat(dst, a.Value(r), 64)
	case *array.Float32:
		return jsontext.AppendFloat(dst, float64(a.Value(r)), 32)
	case *array.Boolean:
		return strconv.AppendBool(dst, a.Value(r))
	case *array.Int64:
		return strconv.AppendInt(dst, a.Value(r), 10)
	case *array.Int32:
		return strconv.AppendInt(dst, int64(a.Value(r)), 10)
	case *array.Int16:
		return strconv.AppendInt(dst, int64(a.Value(r)), 10)
	case *array.Int8:
		return strconv.AppendInt(dst, int64(a.Value(r)), 10)
	case *array.Uint64:
		return strconv.AppendUint(dst, a.Value(r), 10)
	case *array.Uint32:
		return strconv.AppendUint(dst, uint64(a.Value(r)), 10)
	case *array.Uint16:
		return strconv.AppendUint(dst, uint64(a.Value(r)), 10)
	case *array.Uint8:
		return strconv.AppendUint(dst, uint64(a.Value(r)), 10)
	case *array.List:
		lo, hi := a.ValueOffsets(r)
		return appendJSONList(dst, a.ListValues(), int(lo), int(hi))
	case *array.LargeList:
		lo, hi := a.ValueOffsets(r)
		return appendJSONList(dst, a.ListValues(), int(lo), int(hi))
	case *array.FixedSizeList:
		lo, hi := a.ValueOffsets(r)
		return appendJSONList(dst, a.ListValues(), int(lo), int(hi))
	case *array.Dictionary:
		return AppendJSONValue(dst, a.Dictionary(), a.GetValueIndex(r))
	}
	return append(dst, "null"...)
}

func appendJSONList(dst []byte, vals arrow.Array, lo, hi int) []byte {
	dst = append(dst, '[')
	for k := lo; k < hi; k++ {
		if k > lo {
			dst = append(dst, ',')
		}
		dst = AppendJSONValue(dst, vals, k)
	}
	return append(dst, ']')
}
