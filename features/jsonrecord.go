package features

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/onestone/onestone/internal/jsontext"
)

// Sentinel errors of the JSON event decoder. Every error returned by
// JSONDecoder.Append wraps exactly one of them, so a caller (the Kafka
// source's dead-letter routing, the score API) can classify a rejected event
// with errors.Is.
var (
	// ErrEventSyntax: the event is not one well-formed JSON object.
	ErrEventSyntax = errors.New("features: malformed JSON event")
	// ErrEventType: a field holds a JSON value of a type its column cannot take.
	ErrEventType = errors.New("features: wrong JSON type")
	// ErrEventMissingField: a non-nullable column (a label) is absent or null.
	ErrEventMissingField = errors.New("features: missing required field")
	// ErrEventTooLarge: the event is longer than JSONConfig.MaxEventBytes.
	ErrEventTooLarge = errors.New("features: event too large")
	// ErrEventUnknownField: with JSONConfig.Strict, the event has a key
	// that is neither a column nor in JSONConfig.Known.
	ErrEventUnknownField = errors.New("features: unknown field")
)

// EventError is the error JSONDecoder.Append returns for a rejected event.
// It unwraps to one of the ErrEvent* sentinels.
type EventError struct {
	// Field is the column the error is about, "" for syntax and size errors.
	Field string
	// Offset is the byte offset of a syntax error in the event, else -1.
	Offset int
	// Kind is ErrEventSyntax, ErrEventType, ErrEventMissingField,
	// ErrEventTooLarge or ErrEventUnknownField.
	Kind error
	// Msg says what was wanted and what was found.
	Msg string
}

// Error implements error.
func (e *EventError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("features: field %q: %s", e.Field, e.Msg)
	}
	return "features: " + e.Msg
}

// Unwrap returns Kind, so errors.Is(err, ErrEventType) works.
func (e *EventError) Unwrap() error { return e.Kind }

func fieldErr(field string, kind error, format string, args ...any) error {
	return &EventError{Field: field, Offset: -1, Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// DefaultMaxEventBytes is the default JSONConfig.MaxEventBytes: 1 MiB.
const DefaultMaxEventBytes = 1 << 20

// JSONConfig configures a JSONDecoder.
type JSONConfig struct {
	// Allocator builds the Arrow arrays. Default: memory.DefaultAllocator.
	Allocator memory.Allocator
	// MaxEventBytes rejects longer events with ErrEventTooLarge.
	// Default: DefaultMaxEventBytes (1 MiB).
	MaxEventBytes int
	// Strict refuses an event with a key that is neither a column of the
	// schema nor in Known (ErrEventUnknownField, naming the key). Default:
	// false: such a key is skipped and counted (JSONDecoder.TakeUnknown).
	Strict bool
	// Known lists keys that are not columns but may appear in events
	// (labels when serving, fields a ranking formula reads): they are
	// skipped, neither counted nor refused. Default: none.
	Known []string
}

// Validate reports whether the configuration is usable. Zero values are
// valid and mean the defaults.
func (c JSONConfig) Validate() error {
	if c.MaxEventBytes < 0 {
		return fmt.Errorf("features: JSONConfig.MaxEventBytes %d is negative", c.MaxEventBytes)
	}
	return nil
}

func (c JSONConfig) withDefaults() JSONConfig {
	if c.Allocator == nil {
		c.Allocator = memory.DefaultAllocator
	}
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = DefaultMaxEventBytes
	}
	return c
}

type colKind uint8

const (
	colString colKind = iota
	colStringList
	colFloat64
	colInt64
	colBool
	colInt32
	colFloat32
	colFloat64List
)

// value kinds held in a slot for the event being decoded.
type valKind uint8

const (
	valNull valKind = iota
	valText         // utf8 bytes in slot.text (string, or a number/bool rendered as text)
	valFloat
	valInt
	valBool
	valList // items[slot.lo:slot.hi]
)

type slot struct {
	gen  uint32 // == decoder gen when set by the current event
	kind valKind
	text []byte
	f    float64
	i    int64
	b    bool
	lo   int
	hi   int
}

type item struct {
	null bool
	text []byte
}

// num is an item of a list<float64> column.
type num struct {
	null bool
	f    float64
}

type column struct {
	name     string
	kind     colKind
	nullable bool
	itemNull bool // list items may be null

	str  *array.StringBuilder
	list *array.ListBuilder
	lstr *array.StringBuilder  // list value builder
	lf64 *array.Float64Builder // list value builder of list<float64>
	f64  *array.Float64Builder
	i64  *array.Int64Builder
	f32  *array.Float32Builder
	i32  *array.Int32Builder
	bl   *array.BooleanBuilder

	// nulls are the nulls of the events appended last not yet added to
	// the builder: a run of them is added at once, when the column's next
	// value comes or the batch ends (flushNulls). Most events lack most
	// columns (a score request's candidates hold none of its context's),
	// and one AppendNulls costs what one AppendNull does.
	nulls int
}

// builder returns the column's top-level builder.
func (c *column) builder() array.Builder {
	switch c.kind {
	case colString:
		return c.str
	case colStringList, colFloat64List:
		return c.list
	case colFloat64:
		return c.f64
	case colInt64:
		return c.i64
	case colBool:
		return c.bl
	case colInt32:
		return c.i32
	default:
		return c.f32
	}
}

// flushNulls adds the column's pending nulls to its builder.
func (c *column) flushNulls() {
	if c.nulls > 0 {
		c.builder().AppendNulls(c.nulls)
		c.nulls = 0
	}
}

// JSONDecoder turns JSON events, one object per event, into Arrow record
// batches with a fixed schema. Keys name columns; unknown keys (neither a
// column nor in JSONConfig.Known) are skipped and counted, or with
// JSONConfig.Strict refused (their values must be well-formed JSON, nested
// at most 256 deep, either way);
// a key that is absent or null gives a null when the column is nullable and
// ErrEventMissingField when it is not (labels).
//
// Conversions:
//   - utf8 (categorical) columns take JSON strings as they are, numbers as
//     their canonical text — integers in base 10 exactly as written (no
//     float64 round trip, so ids above 2^53 survive; "-0" becomes "0"),
//     other numbers in Go's shortest 'g' formatting (1.50 -> "1.5", 1e3 ->
//     "1000") — and booleans as "true"/"false".
//   - list<utf8> columns take a JSON array whose items convert as above; a
//     null item is a null element when the list's item field is nullable.
//   - list<float64> columns (vector fields) take a JSON array of numbers
//     in float64's range, nulls as for list<utf8>; the length is the
//     transform's to check.
//   - float64 and float32 columns take JSON numbers only; numeric strings
//     are rejected with ErrEventType, as are numbers outside the range.
//   - int64 and int32 columns take JSON numbers with an integral value in
//     range (1, -3, 2.0, 1e3); 1.5 or 1e30 are rejected with ErrEventType.
//   - bool columns take true and false only.
//
// An event is validated completely before anything is appended: a rejected
// event leaves the decoder as it was. Duplicate keys: the last one wins.
//
// A JSONDecoder is not safe for concurrent use.
type JSONDecoder struct {
	schema *arrow.Schema
	cfg    JSONConfig
	cols   []column
	byName map[string]int
	// follow predicts an event's keys from the previous events', which
	// come in one order from most clients: follow[0] is the column of the
	// first key of the last event that had one, follow[c+1] the column
	// that followed column c (-1: none yet). A key equal to the predicted
	// column's name needs no lookup in byName.
	follow []int32
	slots  []slot
	gen    uint32
	// seen are the columns of the current event's keys, in their order
	// (a duplicate key's twice): JSONRows visits only these.
	seen    []int32
	items   []item
	nums    []num
	sc      jsontext.Scanner // sc.Buf: unescaped strings and rendered numbers of the event
	n       int              // accepted events not yet taken by NewRecordBatch
	unknown int              // unknown keys skipped since the last TakeUnknown
	lastN   int
	lastStr []int // data bytes of each string builder in the last batch (for Reserve)
	lastLst []int
}

// NewJSONDecoder returns a decoder building records of the given schema.
// Field types must be utf8, list<utf8>, list<float64>, float64, float32,
// int64, int32 or bool. Use the same column types as the Parquet data the model was
// trained on (int64 ids stay int64), so features hash identically.
func NewJSONDecoder(schema *arrow.Schema, cfg JSONConfig) (*JSONDecoder, error) {
	d, err := newJSONParser(schema, cfg)
	if err != nil {
		return nil, err
	}
	d.newBuilders()
	return d, nil
}

// newJSONParser returns a decoder without Arrow builders: it parses and
// checks events into its slots (parseEvent), which JSONRows reads.
func newJSONParser(schema *arrow.Schema, cfg JSONConfig) (*JSONDecoder, error) {
	if schema == nil {
		return nil, errors.New("features: NewJSONDecoder: nil schema")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	d := &JSONDecoder{
		schema: schema,
		cfg:    cfg,
		byName: make(map[string]int, schema.NumFields()),
	}
	for i, f := range schema.Fields() {
		if _, dup := d.byName[f.Name]; dup {
			return nil, fmt.Errorf("features: schema field %q appears twice", f.Name)
		}
		d.byName[f.Name] = i
		c := column{name: f.Name, nullable: f.Nullable}
		switch t := f.Type.(type) {
		case *arrow.StringType:
			c.kind = colString
		case *arrow.ListType:
			switch t.Elem().ID() {
			case arrow.STRING:
				c.kind = colStringList
			case arrow.FLOAT64:
				c.kind = colFloat64List
			default:
				return nil, fmt.Errorf("features: schema field %q: want list<utf8> or list<float64>, found %s", f.Name, f.Type)
			}
			c.itemNull = t.ElemField().Nullable
		case *arrow.Float64Type:
			c.kind = colFloat64
		case *arrow.Int64Type:
			c.kind = colInt64
		case *arrow.BooleanType:
			c.kind = colBool
		case *arrow.Int32Type:
			c.kind = colInt32
		case *arrow.Float32Type:
			c.kind = colFloat32
		default:
			return nil, fmt.Errorf("features: schema field %q: type %s not supported (want utf8, list<utf8>, list<float64>, float64, float32, int64, int32 or bool)", f.Name, f.Type)
		}
		d.cols = append(d.cols, c)
	}
	for _, k := range cfg.Known {
		if _, col := d.byName[k]; !col {
			d.byName[k] = -1 // known, not a column
		}
	}
	d.follow = make([]int32, len(d.cols)+1)
	for i := range d.follow {
		d.follow[i] = -1
	}
	d.slots = make([]slot, len(d.cols))
	d.lastStr = make([]int, len(d.cols))
	d.lastLst = make([]int, len(d.cols))
	return d, nil
}

func (d *JSONDecoder) newBuilders() {
	mem := d.cfg.Allocator
	for i := range d.cols {
		c := &d.cols[i]
		switch c.kind {
		case colString:
			c.str = array.NewStringBuilder(mem)
		case colStringList:
			c.list = array.NewListBuilderWithField(mem, d.schema.Field(i).Type.(*arrow.ListType).ElemField())
			c.lstr = c.list.ValueBuilder().(*array.StringBuilder)
		case colFloat64List:
			c.list = array.NewListBuilderWithField(mem, d.schema.Field(i).Type.(*arrow.ListType).ElemField())
			c.lf64 = c.list.ValueBuilder().(*array.Float64Builder)
		case colFloat64:
			c.f64 = array.NewFloat64Builder(mem)
		case colInt64:
			c.i64 = array.NewInt64Builder(mem)
		case colBool:
			c.bl = array.NewBooleanBuilder(mem)
		case colInt32:
			c.i32 = array.NewInt32Builder(mem)
		case colFloat32:
			c.f32 = array.NewFloat32Builder(mem)
		}
	}
}

// Schema returns the schema of the records the decoder builds.
func (d *JSONDecoder) Schema() *arrow.Schema { return d.schema }

// Len returns how many events were accepted since the last NewRecordBatch.
func (d *JSONDecoder) Len() int { return d.n }

// TakeUnknown returns how many unknown keys (neither a column nor in
// JSONConfig.Known) the events given to Append have held since the last
// call, and starts counting again from zero. A key counts once per event
// it appears in, whether or not the event was accepted.
func (d *JSONDecoder) TakeUnknown() int {
	n := d.unknown
	d.unknown = 0
	return n
}

// Append decodes one event and appends it as one row. On error nothing of
// the event is appended; the error wraps one of ErrEventSyntax,
// ErrEventType, ErrEventMissingField or ErrEventTooLarge and names the field
// (or the byte offset of a syntax error).
func (d *JSONDecoder) Append(event []byte) error {
	if err := d.parseEvent(event); err != nil {
		return err
	}
	if d.n == 0 && d.lastN > 0 {
		d.reserve()
	}
	d.commit()
	d.n++
	return nil
}

// parseEvent reads and checks one event into the slots: a slot whose gen
// is d.gen holds the event's value of its column (valNull for a JSON
// null), any other slot's column is absent. After an error the slots
// must not be read.
func (d *JSONDecoder) parseEvent(event []byte) error {
	if len(event) > d.cfg.MaxEventBytes {
		return &EventError{Offset: -1, Kind: ErrEventTooLarge, Msg: fmt.Sprintf("event of %d bytes exceeds the limit of %d bytes", len(event), d.cfg.MaxEventBytes)}
	}
	d.gen++
	if d.gen == 0 { // wrapped: clear stale marks
		for i := range d.slots {
			d.slots[i].gen = 0
		}
		d.gen = 1
	}
	d.sc.Buf = d.sc.Buf[:0]
	d.items = d.items[:0]
	d.nums = d.nums[:0]
	d.seen = d.seen[:0]
	if err := d.parse(event); err != nil {
		if se, ok := err.(*jsontext.SyntaxError); ok {
			return syntaxErr(se.Offset, se.Msg)
		}
		return err
	}
	// Required fields.
	for i := range d.cols {
		c := &d.cols[i]
		if c.nullable {
			continue
		}
		s := &d.slots[i]
		if s.gen != d.gen || s.kind == valNull {
			return fieldErr(c.name, ErrEventMissingField, "missing required field")
		}
	}
	return nil
}

// commit appends the validated slots of the current event.
func (d *JSONDecoder) commit() {
	for i := range d.cols {
		c := &d.cols[i]
		s := &d.slots[i]
		if s.gen != d.gen || s.kind == valNull {
			c.nulls++
			continue
		}
		c.flushNulls()
		switch c.kind {
		case colString:
			c.str.BinaryBuilder.Append(s.text)
		case colStringList:
			c.list.Append(true)
			for _, it := range d.items[s.lo:s.hi] {
				if it.null {
					c.lstr.AppendNull()
				} else {
					c.lstr.BinaryBuilder.Append(it.text)
				}
			}
		case colFloat64List:
			c.list.Append(true)
			for _, x := range d.nums[s.lo:s.hi] {
				if x.null {
					c.lf64.AppendNull()
				} else {
					c.lf64.Append(x.f)
				}
			}
		case colFloat64:
			c.f64.Append(s.f)
		case colInt64:
			c.i64.Append(s.i)
		case colBool:
			c.bl.Append(s.b)
		case colInt32:
			c.i32.Append(int32(s.i))
		case colFloat32:
			c.f32.Append(float32(s.f))
		}
	}
}

// NewRecordBatch returns the events appended since the last call as one
// record batch (possibly with zero rows), which the caller must Release, and
// resets the decoder.
func (d *JSONDecoder) NewRecordBatch() arrow.RecordBatch {
	arrs := make([]arrow.Array, len(d.cols))
	for i := range d.cols {
		c := &d.cols[i]
		c.flushNulls()
		switch c.kind {
		case colString:
			d.lastStr[i] = c.str.DataLen()
			arrs[i] = c.str.NewArray()
		case colStringList:
			d.lastStr[i] = c.lstr.DataLen()
			d.lastLst[i] = c.lstr.Len()
			arrs[i] = c.list.NewArray()
		case colFloat64List:
			d.lastLst[i] = c.lf64.Len()
			arrs[i] = c.list.NewArray()
		case colFloat64:
			arrs[i] = c.f64.NewArray()
		case colInt64:
			arrs[i] = c.i64.NewArray()
		case colBool:
			arrs[i] = c.bl.NewArray()
		case colInt32:
			arrs[i] = c.i32.NewArray()
		case colFloat32:
			arrs[i] = c.f32.NewArray()
		}
	}
	rec := array.NewRecordBatch(d.schema, arrs, int64(d.n))
	for _, a := range arrs {
		a.Release()
	}
	d.lastN = d.n
	d.n = 0
	return rec
}

// reserve pre-sizes the builders for a batch like the last one, so steady
// state appends rarely grow buffers.
func (d *JSONDecoder) reserve() {
	if d.lastN == 0 {
		return
	}
	for i := range d.cols {
		c := &d.cols[i]
		switch c.kind {
		case colString:
			c.str.Reserve(d.lastN)
			c.str.ReserveData(d.lastStr[i])
		case colStringList:
			c.list.Reserve(d.lastN)
			c.lstr.Reserve(d.lastLst[i])
			c.lstr.ReserveData(d.lastStr[i])
		case colFloat64List:
			c.list.Reserve(d.lastN)
			c.lf64.Reserve(d.lastLst[i])
		case colFloat64:
			c.f64.Reserve(d.lastN)
		case colInt64:
			c.i64.Reserve(d.lastN)
		case colBool:
			c.bl.Reserve(d.lastN)
		case colInt32:
			c.i32.Reserve(d.lastN)
		case colFloat32:
			c.f32.Reserve(d.lastN)
		}
	}
	d.lastN = 0
}

// Release frees the builders and anything appended but not taken.
func (d *JSONDecoder) Release() {
	for i := range d.cols {
		c := &d.cols[i]
		switch c.kind {
		case colString:
			c.str.Release()
		case colStringList, colFloat64List:
			c.list.Release()
		case colFloat64:
			c.f64.Release()
		case colInt64:
			c.i64.Release()
		case colBool:
			c.bl.Release()
		case colInt32:
			c.i32.Release()
		case colFloat32:
			c.f32.Release()
		}
	}
	d.cols = nil
	d.n = 0
}

// ---- reading the event, with internal/jsontext ----

func syntaxErr(off int, what string) error {
	return &EventError{Offset: off, Kind: ErrEventSyntax, Msg: fmt.Sprintf("invalid JSON at offset %d: %s", off, what)}
}

// parse reads one event into the slots. Its errors are *EventError or
// *jsontext.SyntaxError (which Append turns into an EventError).
func (d *JSONDecoder) parse(b []byte) error {
	i := jsontext.SkipSpace(b, 0)
	if i >= len(b) {
		return syntaxErr(i, "empty event")
	}
	if b[i] != '{' {
		return syntaxErr(i, "event is not a JSON object")
	}
	var firstErr error // first field error, returned if the syntax is fine
	prev := 0          // index into follow of the previous key: 0 at the start, col+1 after column col, -1 after any other key
	i, more := jsontext.Open(b, i)
	for more {
		key, v, err := d.sc.Key(b, i)
		if err != nil {
			return err
		}
		col, known := -1, false
		if prev >= 0 {
			if g := d.follow[prev]; g >= 0 && d.cols[g].name == string(key) {
				col, known = int(g), true
			}
		}
		if !known {
			col, known = d.byName[string(key)]
			if known && col >= 0 && prev >= 0 {
				d.follow[prev] = int32(col)
			}
		}
		prev = -1
		if known && col >= 0 {
			prev = col + 1
		}
		if !known {
			d.unknown++
			if d.cfg.Strict && firstErr == nil {
				firstErr = fieldErr(string(key), ErrEventUnknownField, "unknown key: not a column of the feature spec")
			}
		}
		if known && col >= 0 && firstErr == nil {
			i, err = d.scanField(b, v, col)
			if ee, ok := err.(*EventError); ok && ee.Kind != ErrEventSyntax {
				// Keep the first field error, but finish checking the
				// syntax: a malformed event is reported as such.
				firstErr = err
				i, err = jsontext.Skip(b, v)
			}
		} else {
			i, err = jsontext.Skip(b, v)
		}
		if err != nil {
			return err
		}
		if i, more, err = jsontext.Next(b, i, '}'); err != nil {
			return err
		}
	}
	if i = jsontext.SkipSpace(b, i); i != len(b) {
		return syntaxErr(i, "data after the event object")
	}
	return firstErr
}

// wrongType is the error for a value at b[i] of a type column col cannot
// take: a syntax error if the value is also malformed, so a malformed
// event is classified as such, else a type error.
func (d *JSONDecoder) wrongType(b []byte, i, col int, want string) error {
	if _, err := jsontext.Skip(b, i); err != nil {
		return err
	}
	return fieldErr(d.cols[col].name, ErrEventType, "want %s, found %s", want, jsontext.KindAt(b, i))
}

// scanField decodes the value at b[i] for column col into its slot.
func (d *JSONDecoder) scanField(b []byte, i, col int) (int, error) {
	s := &d.slots[col]
	s.gen = d.gen
	d.seen = append(d.seen, int32(col))
	if jsontext.IsLiteral(b, i, "null") {
		s.kind = valNull
		return i + 4, nil
	}
	switch d.cols[col].kind {
	case colString:
		t, next, err := d.scanText(b, i, col, "string, number or bool")
		if err != nil {
			return 0, err
		}
		s.kind, s.text = valText, t
		return next, nil
	case colStringList:
		if jsontext.KindAt(b, i) != jsontext.KindArray {
			return 0, d.wrongType(b, i, col, "array")
		}
		s.kind = valList
		s.lo = len(d.items)
		j, more := jsontext.Open(b, i)
		for more {
			if jsontext.IsLiteral(b, j, "null") {
				if !d.cols[col].itemNull {
					return 0, fieldErr(d.cols[col].name, ErrEventType, "want non-null list items, found null")
				}
				d.items = append(d.items, item{null: true})
				j += 4
			} else {
				t, next, err := d.scanText(b, j, col, "array of strings, numbers or bools")
				if err != nil {
					return 0, err
				}
				d.items = append(d.items, item{text: t})
				j = next
			}
			var err error
			if j, more, err = jsontext.Next(b, j, ']'); err != nil {
				return 0, err
			}
		}
		s.hi = len(d.items)
		return j, nil
	case colFloat64List:
		return d.scanNumbers(b, i, col)
	case colFloat64, colFloat32:
		if jsontext.KindAt(b, i) != jsontext.KindNumber {
			return 0, d.wrongType(b, i, col, "number")
		}
		end, _, err := jsontext.Number(b, i)
		if err != nil {
			return 0, err
		}
		f, perr := strconv.ParseFloat(string(b[i:end]), 64)
		if perr != nil {
			return 0, fieldErr(d.cols[col].name, ErrEventType, "want number in float64 range, found %.40s", b[i:end])
		}
		if d.cols[col].kind == colFloat32 && !math.IsInf(f, 0) && math.IsInf(float64(float32(f)), 0) {
			return 0, fieldErr(d.cols[col].name, ErrEventType, "want number in float32 range, found %.40s", b[i:end])
		}
		s.kind, s.f = valFloat, f
		return end, nil
	case colInt64, colInt32:
		if jsontext.KindAt(b, i) != jsontext.KindNumber {
			return 0, d.wrongType(b, i, col, "integer")
		}
		end, integer, err := jsontext.Number(b, i)
		if err != nil {
			return 0, err
		}
		var v int64
		var perr error
		if integer {
			v, perr = strconv.ParseInt(string(b[i:end]), 10, 64)
		} else {
			var f float64
			f, perr = strconv.ParseFloat(string(b[i:end]), 64)
			if perr == nil && (f != math.Trunc(f) || f < -(1<<63) || f >= 1<<63) {
				perr = errors.New("not integral")
			}
			v = int64(f)
		}
		if perr != nil {
			return 0, fieldErr(d.cols[col].name, ErrEventType, "want integer in int64 range, found %.40s", b[i:end])
		}
		if d.cols[col].kind == colInt32 && (v < math.MinInt32 || v > math.MaxInt32) {
			return 0, fieldErr(d.cols[col].name, ErrEventType, "want integer in int32 range, found %.40s", b[i:end])
		}
		s.kind, s.i = valInt, v
		return end, nil
	case colBool:
		switch {
		case jsontext.IsLiteral(b, i, "true"):
			s.kind, s.b = valBool, true
			return i + 4, nil
		case jsontext.IsLiteral(b, i, "false"):
			s.kind, s.b = valBool, false
			return i + 5, nil
		}
		return 0, d.wrongType(b, i, col, "bool")
	}
	return 0, syntaxErr(i, "internal: unknown column kind")
}

// scanText reads a string, number or bool at b[i] and returns its utf8
// text.
func (d *JSONDecoder) scanText(b []byte, i, col int, want string) ([]byte, int, error) {
	switch jsontext.KindAt(b, i) {
	case jsontext.KindString:
		return d.sc.String(b, i)
	case jsontext.KindNumber:
		end, integer, err := jsontext.Number(b, i)
		if err != nil {
			return nil, 0, err
		}
		if integer {
			if end-i == 2 && b[i] == '-' && b[i+1] == '0' {
				return zeroText, end, nil
			}
			return b[i:end], end, nil
		}
		f, perr := strconv.ParseFloat(string(b[i:end]), 64)
		if perr != nil {
			return nil, 0, fieldErr(d.cols[col].name, ErrEventType, "want number in float64 range, found %.40s", b[i:end])
		}
		o := len(d.sc.Buf)
		d.sc.Buf = strconv.AppendFloat(d.sc.Buf, f, 'g', -1, 64)
		return d.sc.Buf[o:len(d.sc.Buf):len(d.sc.Buf)], end, nil
	case jsontext.KindBool:
		switch {
		case jsontext.IsLiteral(b, i, "true"):
			return trueText, i + 4, nil
		case jsontext.IsLiteral(b, i, "false"):
			return falseText, i + 5, nil
		}
	}
	return nil, 0, d.wrongType(b, i, col, want)
}

var (
	zeroText  = []byte("0")
	trueText  = []byte("true")
	falseText = []byte("false")
)

// scanNumbers reads the JSON array of numbers at b[i] (a vector field)
// into d.nums and slot col.
func (d *JSONDecoder) scanNumbers(b []byte, i, col int) (int, error) {
	c := &d.cols[col]
	if jsontext.KindAt(b, i) != jsontext.KindArray {
		return 0, d.wrongType(b, i, col, "array of numbers")
	}
	s := &d.slots[col]
	s.kind = valList
	s.lo = len(d.nums)
	j, more := jsontext.Open(b, i)
	for more {
		if jsontext.IsLiteral(b, j, "null") {
			if !c.itemNull {
				return 0, fieldErr(c.name, ErrEventType, "want non-null array items, found null")
			}
			d.nums = append(d.nums, num{null: true})
			j += 4
		} else {
			if jsontext.KindAt(b, j) != jsontext.KindNumber {
				return 0, d.wrongType(b, j, col, "array of numbers")
			}
			end, _, err := jsontext.Number(b, j)
			if err != nil {
				return 0, err
			}
			f, perr := strconv.ParseFloat(string(b[j:end]), 64)
			if perr != nil {
				return 0, fieldErr(c.name, ErrEventType, "want numbers in float64 range, found %.40s", b[j:end])
			}
			d.nums = append(d.nums, num{f: f})
			j = end
		}
		var err error
		if j, more, err = jsontext.Next(b, j, ']'); err != nil {
			return 0, err
		}
	}
	s.hi = len(d.nums)
	return j, nil
}
