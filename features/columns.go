package features

import (
	"math"
	"strconv"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// Column readers: each wraps one Arrow array, chosen once per record by the
// array's type, and reads values straight from its buffers (no copy, no
// per-value interface call, no allocation).

const (
	wantCategorical = "categorical (utf8, large_utf8, dictionary<int, utf8>, int32, int64, uint32, uint64, bool)"
	wantMulti       = "multi_categorical (list or large_list of utf8, large_utf8, int32, int64, uint32, uint64, bool)"
	wantNumeric     = "numeric (int32, int64, float, double, bool)"
)

type textKind uint8

const (
	tString textKind = iota
	tLargeString
	tDictString
	tDictLargeString
	tInt32
	tInt64
	tUint32
	tUint64
	tBool
	tFloat32
	tFloat64
)

// textCol reads the canonical text (or its hash) of a categorical column.
type textCol struct {
	kind  textKind
	arr   arrow.Array
	nulls bool
	str   *array.String
	soffs []int32 // tString: value offsets of the array's rows (len rows+1)
	sdata string  // tString: the value bytes, from soffs[0]
	sbase int32
	lstr  *array.LargeString
	dict  *array.Dictionary
	b     *array.Boolean
	i32   []int32
	i64   []int64
	u32   []uint32
	u64   []uint64
	f32   []float32
	f64   []float64
}

// makeTextCol prepares a reader; ok is false for an unsupported type.
func makeTextCol(a arrow.Array, floats bool) (c textCol, ok bool) {
	c.arr = a
	c.nulls = a.NullN() > 0
	switch v := a.(type) {
	case *array.String:
		c.kind, c.str = tString, v
		c.soffs = v.ValueOffsets()
		c.sbase = c.soffs[0]
		if b := v.ValueBytes(); len(b) > 0 {
			// Read-only view of the Arrow buffer, as array.String.Value does.
			c.sdata = unsafe.String(&b[0], len(b))
		}
	case *array.LargeString:
		c.kind, c.lstr = tLargeString, v
	case *array.Dictionary:
		c.dict = v
		switch d := v.Dictionary().(type) {
		case *array.String:
			c.kind, c.str = tDictString, d
		case *array.LargeString:
			c.kind, c.lstr = tDictLargeString, d
		default:
			return c, false
		}
	case *array.Int32:
		c.kind, c.i32 = tInt32, v.Int32Values()
	case *array.Int64:
		c.kind, c.i64 = tInt64, v.Int64Values()
	case *array.Uint32:
		c.kind, c.u32 = tUint32, v.Uint32Values()
	case *array.Uint64:
		c.kind, c.u64 = tUint64, v.Uint64Values()
	case *array.Boolean:
		c.kind, c.b = tBool, v
	case *array.Float32:
		if !floats {
			return c, false
		}
		c.kind, c.f32 = tFloat32, v.Float32Values()
	case *array.Float64:
		if !floats {
			return c, false
		}
		c.kind, c.f64 = tFloat64, v.Float64Values()
	default:
		return c, false
	}
	return c, true
}

func (c *textCol) isNull(i int) bool {
	if !c.nulls || !c.arr.IsNull(i) {
		switch c.kind {
		case tFloat32:
			f := float64(c.f32[i])
			return math.IsNaN(f)
		case tFloat64:
			return math.IsNaN(c.f64[i])
		}
		return false
	}
	return true
}

// sval returns string value i of a tString column, aliasing the Arrow buffer.
func (c *textCol) sval(i int) string {
	return c.sdata[c.soffs[i]-c.sbase : c.soffs[i+1]-c.sbase]
}

// hash returns xxhash64 of the canonical text of value i. The caller has
// checked isNull.
func (c *textCol) hash(i int, seed uint64) uint64 {
	switch c.kind {
	case tString:
		return xxh64(c.sval(i), seed)
	case tInt64:
		return hashInt(c.i64[i], seed)
	case tInt32:
		return hashInt(int64(c.i32[i]), seed)
	case tLargeString:
		return xxh64(c.lstr.Value(i), seed)
	case tDictString:
		return xxh64(c.str.Value(c.dict.GetValueIndex(i)), seed)
	case tDictLargeString:
		return xxh64(c.lstr.Value(c.dict.GetValueIndex(i)), seed)
	case tUint32:
		return hashUint(uint64(c.u32[i]), seed)
	case tUint64:
		return hashUint(c.u64[i], seed)
	case tBool:
		return hashBool(c.b.Value(i), seed)
	case tFloat32:
		return hashFloat(float64(c.f32[i]), 32, seed)
	case tFloat64:
		return hashFloat(c.f64[i], 64, seed)
	}
	return 0
}

// str returns the canonical text of value i: for string columns the value
// itself (aliasing the Arrow buffer), else the text appended to buf. The
// caller has checked isNull.
func (c *textCol) text(i int, buf []byte) (s string, b []byte) {
	switch c.kind {
	case tString:
		return c.sval(i), nil
	case tLargeString:
		return c.lstr.Value(i), nil
	case tDictString:
		return c.str.Value(c.dict.GetValueIndex(i)), nil
	case tDictLargeString:
		return c.lstr.Value(c.dict.GetValueIndex(i)), nil
	case tInt32:
		return "", strconv.AppendInt(buf, int64(c.i32[i]), 10)
	case tInt64:
		return "", strconv.AppendInt(buf, c.i64[i], 10)
	case tUint32:
		return "", strconv.AppendUint(buf, uint64(c.u32[i]), 10)
	case tUint64:
		return "", strconv.AppendUint(buf, c.u64[i], 10)
	case tBool:
		if c.b.Value(i) {
			return "true", nil
		}
		return "false", nil
	case tFloat32:
		return "", appendFloatText(buf, float64(c.f32[i]), 32)
	case tFloat64:
		return "", appendFloatText(buf, c.f64[i], 64)
	}
	return "", nil
}

func appendFloatText(buf []byte, v float64, bitSize int) []byte {
	if v == 0 {
		v = 0
	}
	return strconv.AppendFloat(buf, v, 'g', -1, bitSize)
}

// listCol reads a list or large_list column of categorical values.
type listCol struct {
	arr   arrow.Array
	nulls bool
	base  int // the list array's offset into its offsets buffer
	off32 []int32
	off64 []int64
	child textCol
}

func makeListCol(a arrow.Array) (c listCol, ok bool) {
	c.arr = a
	c.nulls = a.NullN() > 0
	c.base = a.Data().Offset()
	var vals arrow.Array
	switch v := a.(type) {
	case *array.List:
		c.off32 = v.Offsets()
		vals = v.ListValues()
	case *array.LargeList:
		c.off64 = v.Offsets()
		vals = v.ListValues()
	default:
		return c, false
	}
	c.child, ok = makeTextCol(vals, false)
	return c, ok
}

// span returns the child range of row i; a null list is empty.
func (c *listCol) span(i int) (lo, hi int) {
	if c.nulls && c.arr.IsNull(i) {
		return 0, 0
	}
	j := c.base + i
	if c.off32 != nil {
		return int(c.off32[j]), int(c.off32[j+1])
	}
	return int(c.off64[j]), int(c.off64[j+1])
}

// total returns an upper bound of the number of items in rows [0, n).
func (c *listCol) total(n int) int {
	if n == 0 {
		return 0
	}
	if c.off32 != nil {
		return int(c.off32[c.base+n] - c.off32[c.base])
	}
	return int(c.off64[c.base+n] - c.off64[c.base])
}

type numKind uint8

const (
	nFloat64 numKind = iota
	nFloat32
	nInt64
	nInt32
	nBool
)

// numCol reads a numeric column as float64.
type numCol struct {
	kind  numKind
	arr   arrow.Array
	nulls bool
	f64   []float64
	f32   []float32
	i64   []int64
	i32   []int32
	b     *array.Boolean
}

func makeNumCol(a arrow.Array) (c numCol, ok bool) {
	c.arr = a
	c.nulls = a.NullN() > 0
	switch v := a.(type) {
	case *array.Float64:
		c.kind, c.f64 = nFloat64, v.Float64Values()
	case *array.Float32:
		c.kind, c.f32 = nFloat32, v.Float32Values()
	case *array.Int64:
		c.kind, c.i64 = nInt64, v.Int64Values()
	case *array.Int32:
		c.kind, c.i32 = nInt32, v.Int32Values()
	case *array.Boolean:
		c.kind, c.b = nBool, v
	default:
		return c, false
	}
	return c, true
}

// value returns value i; ok is false for a null (NaN and Inf are returned
// as they are).
func (c *numCol) value(i int) (v float64, ok bool) {
	if c.nulls && c.arr.IsNull(i) {
		return 0, false
	}
	switch c.kind {
	case nFloat64:
		return c.f64[i], true
	case nFloat32:
		return float64(c.f32[i]), true
	case nInt64:
		return float64(c.i64[i]), true
	case nInt32:
		return float64(c.i32[i]), true
	default:
		if c.b.Value(i) {
			return 1, true
		}
		return 0, true
	}
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// colIndex returns the index of the named column in a schema, or -1.
func colIndex(sc *arrow.Schema, name string) int {
	n := sc.NumFields()
	for i := 0; i < n; i++ {
		if sc.Field(i).Name == name {
			return i
		}
	}
	return -1
}

// column returns the named column of a record or an ErrSchema error.
func recordColumn(rec arrow.RecordBatch, name string) (arrow.Array, error) {
	i := colIndex(rec.Schema(), name)
	if i < 0 {
		return nil, errorf(ErrSchema, "features: column %q: missing from the record", name)
	}
	return rec.Column(i), nil
}

func typeErr(name, want string, found arrow.DataType) error {
	return errorf(ErrSchema, "features: column %q: want %s, found %s", name, want, found)
}
