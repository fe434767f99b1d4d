package features

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

func eventSchema() *arrow.Schema {
	return arrow.NewSchema([]arrow.Field{
		{Name: "user_id", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "item_id", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "tags", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
		{Name: "price", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "count", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "new", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
		{Name: "click", Type: arrow.PrimitiveTypes.Int64, Nullable: false},
		{Name: "hour", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "score", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
	}, nil)
}

// fuzzSchema is eventSchema with a vector column (list<float64>).
func fuzzSchema() *arrow.Schema {
	fs := append(eventSchema().Fields(), arrow.Field{Name: "emb", Type: arrow.ListOf(arrow.PrimitiveTypes.Float64), Nullable: true})
	return arrow.NewSchema(fs, nil)
}

func newTestDecoder(t testing.TB, schema *arrow.Schema) (*JSONDecoder, *memory.CheckedAllocator) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	d, err := NewJSONDecoder(schema, JSONConfig{Allocator: mem, MaxEventBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	return d, mem
}

// cell renders row r of column c as a comparable string.
func cell(a arrow.Array, r int) string {
	if a.IsNull(r) {
		return "null"
	}
	switch a := a.(type) {
	case *array.String:
		return strconv.Quote(a.Value(r))
	case *array.Float64:
		return strconv.FormatFloat(a.Value(r), 'g', -1, 64)
	case *array.Int64:
		return strconv.FormatInt(a.Value(r), 10)
	case *array.Int32:
		return strconv.FormatInt(int64(a.Value(r)), 10)
	case *array.Float32:
		return strconv.FormatFloat(float64(a.Value(r)), 'g', -1, 32)
	case *array.Boolean:
		return strconv.FormatBool(a.Value(r))
	case *array.List:
		lo, hi := a.ValueOffsets(r)
		vals := a.ListValues().(*array.String)
		parts := []string{}
		for k := lo; k < hi; k++ {
			parts = append(parts, cell(vals, int(k)))
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	return "?"
}

func rowString(rec arrow.RecordBatch, r int) string {
	parts := make([]string, rec.NumCols())
	for c := range parts {
		parts[c] = rec.ColumnName(c) + "=" + cell(rec.Column(c), r)
	}
	return strings.Join(parts, " ")
}

func TestJSONDecoderValues(t *testing.T) {
	cases := []struct {
		name, event, want string
	}{
		{"all fields", `{"user_id":"u1","item_id":"i9","tags":["a","b"],"price":1.5,"count":3,"new":true,"click":1}`,
			`user_id="u1" item_id="i9" tags=["a","b"] price=1.5 count=3 new=true click=1 hour=null score=null`},
		{"missing nullable", `{"click":0}`,
			`user_id=null item_id=null tags=null price=null count=null new=null click=0 hour=null score=null`},
		{"explicit nulls", `{"user_id":null,"tags":null,"price":null,"count":null,"new":null,"click":0}`,
			`user_id=null item_id=null tags=null price=null count=null new=null click=0 hour=null score=null`},
		{"big integer id keeps every digit", `{"user_id":12345678901234567890123,"item_id":9007199254740993,"click":1}`,
			`user_id="12345678901234567890123" item_id="9007199254740993" tags=null price=null count=null new=null click=1 hour=null score=null`},
		{"numbers as text", `{"user_id":1.50,"item_id":1e3,"tags":[1,-0,2.25e-3,true,"x"],"click":1}`,
			`user_id="1.5" item_id="1000" tags=["1","0","0.00225","true","x"] price=null count=null new=null click=1 hour=null score=null`},
		{"bool as text", `{"user_id":false,"click":1}`,
			`user_id="false" item_id=null tags=null price=null count=null new=null click=1 hour=null score=null`},
		{"escapes", `{"user_id":"a\"b\\c\/d\n\u00e9\ud83d\ude00","item_id":"\ud800x","click":1}`,
			`user_id="a\"b\\c/d\né😀" item_id="�x" tags=null price=null count=null new=null click=1 hour=null score=null`},
		{"unknown keys skipped", `{"zz":{"a":[1,{"b":null}],"c":"}"},"click":1,"yy":[[],{}],"xx":-1.5e7}`,
			`user_id=null item_id=null tags=null price=null count=null new=null click=1 hour=null score=null`},
		{"whitespace and empty list", " \n{ \"tags\" : [ ] , \"click\" : 2.0e0 }\t",
			`user_id=null item_id=null tags=[] price=null count=null new=null click=2 hour=null score=null`},
		{"duplicate key last wins", `{"price":1,"price":2,"click":1}`,
			`user_id=null item_id=null tags=null price=2 count=null new=null click=1 hour=null score=null`},
		{"null list item", `{"tags":["a",null],"click":1}`,
			`user_id=null item_id=null tags=["a",null] price=null count=null new=null click=1 hour=null score=null`},
		{"int32 and float32", `{"hour":-2147483648,"score":0.1,"click":1}`,
			`user_id=null item_id=null tags=null price=null count=null new=null click=1 hour=-2147483648 score=0.1`},
		{"int64 extremes", `{"count":-9223372036854775808,"click":9223372036854775807}`,
			`user_id=null item_id=null tags=null price=null count=-9223372036854775808 new=null click=9223372036854775807 hour=null score=null`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, mem := newTestDecoder(t, eventSchema())
			defer mem.AssertSize(t, 0)
			defer d.Release()
			if err := d.Append([]byte(tc.event)); err != nil {
				t.Fatalf("Append: %v", err)
			}
			rec := d.NewRecordBatch()
			defer rec.Release()
			if rec.NumRows() != 1 {
				t.Fatalf("rows = %d", rec.NumRows())
			}
			if got := rowString(rec, 0); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestJSONDecoderUnknownKeys: keys that are neither columns nor Known are
// counted and skipped by default, and refused, named, with Strict; a
// malformed event stays a syntax error in both modes.
func TestJSONDecoderUnknownKeys(t *testing.T) {
	for _, strict := range []bool{false, true} {
		t.Run(fmt.Sprintf("strict=%v", strict), func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			d, err := NewJSONDecoder(eventSchema(), JSONConfig{Allocator: mem, Strict: strict, Known: []string{"label", "price"}})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Release()
			// Known keys and columns only: accepted, nothing counted.
			if err := d.Append([]byte(`{"label":{"x":1},"price":2,"click":1}`)); err != nil {
				t.Fatalf("known keys: %v", err)
			}
			if n := d.TakeUnknown(); n != 0 {
				t.Fatalf("known keys: %d unknown counted", n)
			}
			// Two unknown keys (one escaped), one of them twice.
			err = d.Append([]byte(`{"pirce":2,"click":1,"\u0078x":[1],"pirce":3}`))
			if n := d.TakeUnknown(); n != 3 {
				t.Errorf("unknown keys counted %d, want 3", n)
			}
			if d.TakeUnknown() != 0 {
				t.Error("TakeUnknown did not reset the count")
			}
			if !strict {
				if err != nil {
					t.Fatalf("default mode refused an unknown key: %v", err)
				}
				if d.Len() != 2 {
					t.Fatalf("Len %d, want 2", d.Len())
				}
			} else {
				var ee *EventError
				if !errors.As(err, &ee) || !errors.Is(err, ErrEventUnknownField) || ee.Field != "pirce" {
					t.Fatalf("strict: error %v, want ErrEventUnknownField on \"pirce\"", err)
				}
				if d.Len() != 1 {
					t.Fatalf("strict: Len %d after a refused event, want 1", d.Len())
				}
			}
			// Malformed after an unknown key: a syntax error either way.
			if err := d.Append([]byte(`{"pirce":2,"click":1,"x":tru}`)); !errors.Is(err, ErrEventSyntax) {
				t.Errorf("malformed event: error %v, want ErrEventSyntax", err)
			}
			rec := d.NewRecordBatch()
			rec.Release()
		})
	}
}

func TestJSONDecoderErrors(t *testing.T) {
	cases := []struct {
		name, event string
		kind        error
		field, msg  string
	}{
		{"not json", `not json`, ErrEventSyntax, "", "offset 0"},
		{"truncated", `{"click":1`, ErrEventSyntax, "", "unterminated"},
		{"trailing", `{"click":1} x`, ErrEventSyntax, "", "data after"},
		{"array event", `[1]`, ErrEventSyntax, "", "not a JSON object"},
		{"bad number", `{"click":01}`, ErrEventSyntax, "", "offset"},
		{"bad escape", `{"user_id":"\x","click":1}`, ErrEventSyntax, "", "bad escape"},
		{"bad utf8", "{\"user_id\":\"\xff\",\"click\":1}", ErrEventSyntax, "", "UTF-8"},
		{"control char", "{\"user_id\":\"a\nb\",\"click\":1}", ErrEventSyntax, "", "control"},
		{"syntax inside wrong type", `{"price":"abc,"click":1}`, ErrEventSyntax, "", ""},
		{"string price", `{"price":"1.5","click":1}`, ErrEventType, "price", "want number, found string"},
		{"object id", `{"user_id":{"a":1},"click":1}`, ErrEventType, "user_id", "found object"},
		{"bool count", `{"count":true,"click":1}`, ErrEventType, "count", "want integer, found bool"},
		{"fractional count", `{"count":1.5,"click":1}`, ErrEventType, "count", "found 1.5"},
		{"huge count", `{"count":92233720368547758080,"click":1}`, ErrEventType, "count", "int64 range"},
		{"int32 overflow", `{"hour":2147483648,"click":1}`, ErrEventType, "hour", "int32 range"},
		{"float32 overflow", `{"score":1e39,"click":1}`, ErrEventType, "score", "float32 range"},
		{"float overflow", `{"price":1e400,"click":1}`, ErrEventType, "price", "float64 range"},
		{"tags not list", `{"tags":"a","click":1}`, ErrEventType, "tags", "want array, found string"},
		{"nested list item", `{"tags":[["a"]],"click":1}`, ErrEventType, "tags", "found array"},
		{"bool field", `{"new":1,"click":1}`, ErrEventType, "new", "want bool, found number"},
		{"missing label", `{"user_id":"u"}`, ErrEventMissingField, "click", "missing required field"},
		{"null label", `{"click":null}`, ErrEventMissingField, "click", "missing required field"},
		{"too large", `{"user_id":"` + strings.Repeat("x", 5000) + `","click":1}`, ErrEventTooLarge, "", "exceeds"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, mem := newTestDecoder(t, eventSchema())
			defer mem.AssertSize(t, 0)
			defer d.Release()
			// A good event before and after proves the bad one left no trace.
			good := []byte(`{"user_id":"g","tags":["t"],"click":1}`)
			if err := d.Append(good); err != nil {
				t.Fatal(err)
			}
			err := d.Append([]byte(tc.event))
			if err == nil {
				t.Fatalf("Append(%s) accepted", tc.event)
			}
			if !errors.Is(err, tc.kind) {
				t.Errorf("error %v is not %v", err, tc.kind)
			}
			var ee *EventError
			if !errors.As(err, &ee) || ee.Field != tc.field {
				t.Errorf("error %v: field %q, want %q", err, ee.Field, tc.field)
			}
			if !strings.HasPrefix(err.Error(), "features: ") || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not start with features: or lacks %q", err, tc.msg)
			}
			if err := d.Append(good); err != nil {
				t.Fatal(err)
			}
			rec := d.NewRecordBatch()
			defer rec.Release()
			if rec.NumRows() != 2 {
				t.Fatalf("rows = %d, want 2", rec.NumRows())
			}
			for c := 0; c < int(rec.NumCols()); c++ {
				if rec.Column(c).Len() != 2 {
					t.Fatalf("column %s has %d values", rec.ColumnName(c), rec.Column(c).Len())
				}
			}
			want := rowString(rec, 0)
			if got := rowString(rec, 1); got != want {
				t.Errorf("row after rejected event: %s, want %s", got, want)
			}
		})
	}
}

func TestJSONDecoderSchemaErrors(t *testing.T) {
	for _, s := range []*arrow.Schema{
		nil,
		arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Uint16}}, nil),
		arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.ListOf(arrow.PrimitiveTypes.Int64)}}, nil),
		arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.BinaryTypes.String}, {Name: "x", Type: arrow.BinaryTypes.String}}, nil),
	} {
		if _, err := NewJSONDecoder(s, JSONConfig{}); err == nil || !strings.HasPrefix(err.Error(), "features: ") {
			t.Errorf("schema %v: err = %v", s, err)
		}
	}
	if _, err := NewJSONDecoder(eventSchema(), JSONConfig{MaxEventBytes: -1}); err == nil {
		t.Error("negative MaxEventBytes accepted")
	}
}

// genEvent writes a realistic event: ids, 13 numeric features, a tag list and labels.
func genEvent(dst []byte, rng *rand.Rand, i int) []byte {
	dst = append(dst, `{"user_id":"u`...)
	dst = strconv.AppendInt(dst, int64(rng.IntN(1_000_000)), 10)
	dst = append(dst, `","item_id":`...)
	dst = strconv.AppendInt(dst, int64(rng.IntN(100_000)), 10)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, 1_700_000_000+int64(i), 10)
	for k := 0; k < 10; k++ {
		dst = append(dst, `,"d`...)
		dst = strconv.AppendInt(dst, int64(k), 10)
		dst = append(dst, `":`...)
		dst = strconv.AppendFloat(dst, rng.NormFloat64()*10, 'g', -1, 64)
	}
	dst = append(dst, `,"tags":["t`...)
	dst = strconv.AppendInt(dst, int64(rng.IntN(50)), 10)
	dst = append(dst, `","t`...)
	dst = strconv.AppendInt(dst, int64(rng.IntN(50)), 10)
	dst = append(dst, `"],"click":`...)
	dst = strconv.AppendInt(dst, int64(rng.IntN(2)), 10)
	dst = append(dst, `,"conversion":`...)
	dst = strconv.AppendInt(dst, int64(rng.IntN(2)), 10)
	return append(dst, '}')
}

func genSchema() *arrow.Schema {
	fs := []arrow.Field{
		{Name: "user_id", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "item_id", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "ts", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	}
	for k := 0; k < 10; k++ {
		fs = append(fs, arrow.Field{Name: fmt.Sprintf("d%d", k), Type: arrow.PrimitiveTypes.Float64, Nullable: true})
	}
	fs = append(fs,
		arrow.Field{Name: "tags", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
		arrow.Field{Name: "click", Type: arrow.PrimitiveTypes.Int64},
		arrow.Field{Name: "conversion", Type: arrow.PrimitiveTypes.Int64},
	)
	return arrow.NewSchema(fs, nil)
}

// TestJSONDecoderMatchesEncodingJSON decodes generated events and checks
// every cell against encoding/json's reading of the same bytes.
func TestJSONDecoderMatchesEncodingJSON(t *testing.T) {
	d, mem := newTestDecoder(t, genSchema())
	defer mem.AssertSize(t, 0)
	defer d.Release()
	rng := rand.New(rand.NewPCG(1, 2))
	var events [][]byte
	for i := 0; i < 500; i++ {
		ev := genEvent(nil, rng, i)
		events = append(events, ev)
		if err := d.Append(ev); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	rec := d.NewRecordBatch()
	defer rec.Release()
	for i, ev := range events {
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(string(ev)))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		for c, f := range rec.Schema().Fields() {
			v := m[f.Name]
			var want string
			switch v := v.(type) {
			case string:
				want = strconv.Quote(v)
			case json.Number:
				if f.Type.ID() == arrow.STRING {
					want = strconv.Quote(v.String())
				} else if f.Type.ID() == arrow.INT64 {
					want = v.String()
				} else if fl, err := v.Float64(); err == nil {
					want = strconv.FormatFloat(fl, 'g', -1, 64)
				}
			case []any:
				parts := []string{}
				for _, x := range v {
					parts = append(parts, strconv.Quote(x.(string)))
				}
				want = "[" + strings.Join(parts, ",") + "]"
			}
			if got := cell(rec.Column(c), i); got != want {
				t.Fatalf("event %d field %s: got %s, want %s (%s)", i, f.Name, got, want, ev)
			}
		}
	}
}

// TestJSONDecoderBatches checks that batches after the first (reserved
// builders) hold exactly their own events.
func TestJSONDecoderBatches(t *testing.T) {
	d, mem := newTestDecoder(t, eventSchema())
	defer mem.AssertSize(t, 0)
	defer d.Release()
	for b := 0; b < 3; b++ {
		for i := 0; i < 10+b; i++ {
			ev := fmt.Sprintf(`{"user_id":"u%d_%d","tags":["x%d"],"click":%d}`, b, i, i, i%2)
			if err := d.Append([]byte(ev)); err != nil {
				t.Fatal(err)
			}
		}
		if d.Len() != 10+b {
			t.Fatalf("Len = %d", d.Len())
		}
		rec := d.NewRecordBatch()
		if rec.NumRows() != int64(10+b) || d.Len() != 0 {
			t.Fatalf("batch %d: rows %d", b, rec.NumRows())
		}
		for i := 0; i < 10+b; i++ {
			want := fmt.Sprintf(`user_id="u%d_%d" item_id=null tags=["x%d"] price=null count=null new=null click=%d hour=null score=null`, b, i, i, i%2)
			if got := rowString(rec, i); got != want {
				t.Errorf("batch %d row %d: %s, want %s", b, i, got, want)
			}
		}
		rec.Release()
	}
	// Appended but never taken: Release must free it.
	if err := d.Append([]byte(`{"click":1,"user_id":"left"}`)); err != nil {
		t.Fatal(err)
	}
}

func FuzzJSONDecoder(f *testing.F) {
	for _, s := range []string{
		`{"user_id":"u1","item_id":"i9","tags":["a","b"],"price":1.5,"count":3,"new":true,"click":1}`,
		`{"click":0}`, `{"user_id":12345678901234567890,"click":1}`,
		`{"zz":{"a":[1,{"b":null}]},"click":1}`, `{"user_id":"\ud83d\ude00","click":1}`,
		`{"price":"x","click":1}`, `{`, `[]`, `{"tags":[1,true,null,"a"],"click":-0}`,
		`{"emb":[0.5,-1e3,null,2],"click":1}`, `{"emb":[1,"2"],"click":1}`, `{"emb":[1e999],"click":0}`,
		`{"emb":[],"click":1}`, `{"emb":[[1]],"click":1}`, `{"emb":3,"click":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, mem := newTestDecoder(t, fuzzSchema())
		defer mem.AssertSize(t, 0)
		defer d.Release()
		accepted, dataAccepted := 0, 0
		// The event twice around a fixed good one exercises reuse of scratch.
		for k, ev := range [][]byte{data, []byte(`{"click":1}`), data} {
			err := d.Append(ev)
			if err == nil {
				accepted++
				if k != 1 {
					dataAccepted++
				}
				continue
			}
			var ee *EventError
			if !errors.As(err, &ee) || !strings.HasPrefix(err.Error(), "features: ") {
				t.Fatalf("error %v is not an EventError", err)
			}
		}
		rec := d.NewRecordBatch()
		defer rec.Release()
		if int(rec.NumRows()) != accepted {
			t.Fatalf("rows %d, accepted %d", rec.NumRows(), accepted)
		}
		for c := 0; c < int(rec.NumCols()); c++ {
			if rec.Column(c).Len() != accepted {
				t.Fatalf("column %d len %d", c, rec.Column(c).Len())
			}
			if err := array.ValidateFull(rec.Column(c)); err != nil {
				t.Fatalf("column %d invalid: %v", c, err)
			}
		}
		if dataAccepted == 1 {
			t.Fatalf("same input accepted once and rejected once: %q", data)
		}
		if dataAccepted > 0 && !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
	})
}

func BenchmarkJSONDecode(b *testing.B) {
	d, err := NewJSONDecoder(genSchema(), JSONConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Release()
	rng := rand.New(rand.NewPCG(3, 4))
	const nev = 4096
	events := make([][]byte, nev)
	bytes := 0
	for i := range events {
		events[i] = genEvent(nil, rng, i)
		bytes += len(events[i])
	}
	b.SetBytes(int64(bytes / nev))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := d.Append(events[i%nev]); err != nil {
			b.Fatal(err)
		}
		if d.Len() == nev {
			d.NewRecordBatch().Release()
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// TestJSONDecoderAllocs: in steady state (builders reserved from the last
// batch) appending an event allocates nothing, escapes included.
func TestJSONDecoderAllocs(t *testing.T) {
	d, err := NewJSONDecoder(genSchema(), JSONConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Release()
	rng := rand.New(rand.NewPCG(5, 6))
	const nev = 2048
	events := make([][]byte, nev)
	for i := range events {
		events[i] = genEvent(nil, rng, i)
		if i%3 == 0 { // an escaped id and an unknown nested field
			events[i] = append(events[i][:len(events[i])-1], `,"user_id":"\u00e9\"\ud83d\ude00","x":{"a":[1,{"b":"c"}]}}`...)
		}
	}
	for _, ev := range events {
		if err := d.Append(ev); err != nil {
			t.Fatal(err)
		}
	}
	d.NewRecordBatch().Release()
	if err := d.Append(events[0]); err != nil { // reserves the builders
		t.Fatal(err)
	}
	i := 1
	a := testing.AllocsPerRun(nev/2, func() {
		if err := d.Append(events[i]); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if a != 0 {
		t.Errorf("Append allocates %v times per event in steady state, want 0", a)
	}
}

// TestJSONDecoderSyntaxOffsets: a syntax error names the offset of the
// first byte that cannot be read, in the message and in EventError.Offset.
func TestJSONDecoderSyntaxOffsets(t *testing.T) {
	d, mem := newTestDecoder(t, eventSchema())
	defer mem.AssertSize(t, 0)
	defer d.Release()
	for _, tc := range []struct {
		event  string
		offset int
	}{
		{` x`, 1},
		{`{"click":1,}`, 11},
		{"{\"user_id\":\"ab\x01\",\"click\":1}", 14},
		{`{"click":1,"zz":[1,{"a":tru}]}`, 24},
		{`{"click":1`, 10},
		{`{"price":1.,"click":1}`, 11},
		{`{"click":1} {}`, 12},
	} {
		err := d.Append([]byte(tc.event))
		var ee *EventError
		if !errors.As(err, &ee) || ee.Kind != ErrEventSyntax || ee.Offset != tc.offset ||
			!strings.Contains(ee.Msg, fmt.Sprintf("offset %d:", tc.offset)) {
			t.Errorf("%q: error %v, want a syntax error at offset %d", tc.event, err, tc.offset)
		}
	}
}

// TestJSONDecoderKeyOrders checks that the key prediction (follow) never
// changes what a decoder reads: events whose keys come in changing
// orders, with unknown keys, known non-columns, duplicates and escaped
// keys among them, decode on one decoder as each does on a fresh one.
func TestJSONDecoderKeyOrders(t *testing.T) {
	members := []string{
		`"user_id":"u1"`, `"item_id":"i2"`, `"tags":["a","b"]`, `"price":1.5`,
		`"count":3`, `"new":true`, `"click":1`, `"hour":7`, `"score":0.25`,
		`"label":{"x":1}`, `"pirce":9`, `"\u0070rice":2.5`, `"price":null`,
	}
	rng := rand.New(rand.NewPCG(7, 8))
	var events [][]byte
	for i := range 300 {
		var ms []string
		switch {
		case i%3 == 0: // one order, as most clients send them
			ms = members[:9]
		default: // a random subset in a random order ("click" is required)
			for _, j := range rng.Perm(len(members)) {
				if members[j] == `"click":1` || rng.IntN(4) > 0 {
					ms = append(ms, members[j])
				}
			}
		}
		events = append(events, []byte("{"+strings.Join(ms, ",")+"}"))
	}
	cfg := JSONConfig{Allocator: memory.NewGoAllocator(), Known: []string{"label"}}
	d, err := NewJSONDecoder(eventSchema(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Release()
	var want []string
	wantUnknown := 0
	for _, ev := range events {
		if err := d.Append(ev); err != nil {
			t.Fatalf("%s: %v", ev, err)
		}
		fresh, err := NewJSONDecoder(eventSchema(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := fresh.Append(ev); err != nil {
			t.Fatalf("%s: fresh decoder: %v", ev, err)
		}
		wantUnknown += fresh.TakeUnknown()
		rec := fresh.NewRecordBatch()
		want = append(want, rowString(rec, 0))
		rec.Release()
		fresh.Release()
	}
	if n := d.TakeUnknown(); n != wantUnknown {
		t.Errorf("unknown keys %d, fresh decoders counted %d", n, wantUnknown)
	}
	rec := d.NewRecordBatch()
	defer rec.Release()
	for r, w := range want {
		if got := rowString(rec, r); got != w {
			t.Fatalf("event %d %s:\n got %s\nwant %s", r, events[r], got, w)
		}
	}
}
