package jsontext

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestString reads valid strings and compares each with encoding/json's
// reading of the same bytes.
func TestString(t *testing.T) {
	for _, in := range []string{
		`""`, `"abc"`, `"a\"b\\c\/d"`, `"\b\f\n\r\t"`, `"\u0000\u001f\u007f"`,
		`"é😀"`, `"\u00e9\ud83d\ude00"`, `"\uD83D\uDE00x"`,
		`"\ud800"`, `"\ud800x"`, `"\udc00"`, `"\ud800\ud800"`, `"\ud800\u0041"`,
		`"\udbff\udfff"`, `"\ud800\n"`, "\"\x7f\"", `"plain then \n escape, é"`,
	} {
		var sc Scanner
		got, end, err := sc.String([]byte(in), 0)
		if err != nil || end != len(in) {
			t.Errorf("%s: end %d, err %v", in, end, err)
			continue
		}
		var want string
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("%s: got %q, encoding/json %q", in, got, want)
		}
		aliases := !strings.Contains(in, `\`)
		if aliases != (len(sc.Buf) == 0) {
			t.Errorf("%s: buffer %q: want it used only for escapes", in, sc.Buf)
		}
	}
}

// TestStringErrors: every error is a SyntaxError at the offending byte.
func TestStringErrors(t *testing.T) {
	for _, tc := range []struct {
		in     string
		offset int
		msg    string
	}{
		{`x`, 0, "want a string"},
		{``, 0, "want a string"},
		{`"abc`, 4, "unterminated string"},
		{`"a\n`, 4, "unterminated string"},
		{`"a\`, 3, "unterminated string"},
		{"\"a\nb\"", 2, "control character"},
		{"\"a\\n\x01\"", 4, "control character"},
		{`"a\x"`, 2, "bad escape"},
		{`"\u12"`, 1, `bad \u escape`},
		{`"\u12g4"`, 1, `bad \u escape`},
		{"\"ab\xff\"", 3, "invalid UTF-8"},
		{"\"\\n\xc3\"", 3, "invalid UTF-8"},
		{"\"\xed\xa0\x80\"", 1, "invalid UTF-8"}, // an encoded surrogate
	} {
		for _, skip := range []bool{false, true} {
			var err error
			if skip {
				_, err = Skip([]byte(tc.in), 0)
				if tc.in == "" || tc.in == "x" {
					continue // not a string: Skip's own messages
				}
			} else {
				var sc Scanner
				_, _, err = sc.String([]byte(tc.in), 0)
			}
			var se *SyntaxError
			if !errors.As(err, &se) || se.Offset != tc.offset || !strings.Contains(se.Msg, tc.msg) {
				t.Errorf("%q (skip %v): error %v, want %q at offset %d", tc.in, skip, err, tc.msg, tc.offset)
			}
		}
	}
}

// TestStringKeepsBuf: strings read one after another stay valid, so a
// decoder can hold all the strings of an event.
func TestStringKeepsBuf(t *testing.T) {
	b := []byte(`["a\nb", "plain", "c\td", "\u00e9"]`)
	var sc Scanner
	var got []string
	var strs [][]byte
	i, more := Open(b, 0)
	for more {
		s, end, err := sc.String(b, i)
		if err != nil {
			t.Fatal(err)
		}
		strs = append(strs, s)
		if i, more, err = Next(b, end, ']'); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range strs {
		got = append(got, string(s))
	}
	if want := []string{"a\nb", "plain", "c\td", "é"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestNumber(t *testing.T) {
	for _, tc := range []struct {
		in      string
		end     int // -1: error
		integer bool
	}{
		{"0", 1, true}, {"-0", 2, true}, {"123", 3, true}, {"-9223372036854775809", 20, true},
		{"1.5", 3, false}, {"1e3", 3, false}, {"1E+3", 4, false}, {"-0.0e-0", 7, false},
		{"01", 1, true}, {"1.5x", 3, false}, {"12,", 2, true},
		{"-", -1, false}, {"+1", -1, false}, {".5", -1, false}, {"1.", -1, false},
		{"1.e3", -1, false}, {"1e", -1, false}, {"1e+", -1, false}, {"-a", -1, false},
	} {
		end, integer, err := Number([]byte(tc.in), 0)
		if tc.end < 0 {
			if err == nil {
				t.Errorf("%q: read to %d, want an error", tc.in, end)
			}
			if json.Valid([]byte(tc.in)) {
				t.Errorf("%q: encoding/json accepts it", tc.in)
			}
			continue
		}
		if err != nil || end != tc.end || integer != tc.integer {
			t.Errorf("%q: end %d integer %v err %v, want %d %v", tc.in, end, integer, err, tc.end, tc.integer)
		}
		if !json.Valid([]byte(tc.in[:end])) {
			t.Errorf("%q: encoding/json rejects %q", tc.in, tc.in[:end])
		}
	}
}

// TestSkip compares Skip's verdict with encoding/json's on whole inputs.
func TestSkip(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, in := range []string{
		`null`, `true`, `false`, `0`, `-1.5e3`, `"s"`, `[]`, `{}`, ` [ 1 , "a" , null ] `,
		`{"a":{"b":[1,{"c":"}"}]},"d":[[],{}]}`, `{"a" : 1 , "b" : [ true ] }`, deep(MaxDepth),
		`{"k":[{"k":[{"k":{}}]}]}`, `[1,[2,[3,[4]]],5]`,
		// Malformed:
		``, ` `, `nul`, `tru`, `falsey`, `[1,]`, `[,1]`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{a:1}`,
		`[1 2]`, `{"a":1 "b":2}`, `[`, `{`, `{"a":[}`, `["a`, `01`, `1 2`, `]`, `{"a":1]`, `[1}`,
		`"\x"`, `NaN`, `-Infinity`, `'a'`,
	} {
		b := []byte(in)
		end, err := Skip(b, 0)
		ok := err == nil && SkipSpace(b, end) == len(b)
		if ok != json.Valid(b) {
			t.Errorf("%q: Skip ok=%v (end %d, err %v), encoding/json %v", in, ok, end, err, json.Valid(b))
		}
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Offset < 0 || se.Offset > len(b) {
				t.Errorf("%q: error %v is not a SyntaxError within the input", in, err)
			}
		}
	}
	b := []byte(deep(MaxDepth + 1))
	_, err := Skip(b, 0)
	var se *SyntaxError
	if !errors.As(err, &se) || se.Offset != MaxDepth || !strings.Contains(se.Msg, "nesting too deep") {
		t.Errorf("depth %d: error %v, want nesting too deep at offset %d", MaxDepth+1, err, MaxDepth)
	}
	// Objects and arrays mixed at depth: the bit stack tells them apart.
	var sb strings.Builder
	for d := 0; d < MaxDepth; d++ {
		if d%3 == 0 {
			sb.WriteString(`{"k":`)
		} else {
			sb.WriteString(`[0,`)
		}
	}
	sb.WriteString("1")
	for d := MaxDepth - 1; d >= 0; d-- {
		if d%3 == 0 {
			sb.WriteString(`}`)
		} else {
			sb.WriteString(`]`)
		}
	}
	if end, err := Skip([]byte(sb.String()), 0); err != nil || end != sb.Len() {
		t.Errorf("mixed nesting: end %d of %d, %v", end, sb.Len(), err)
	}
}

// TestSpan: on well-formed arrays and objects Span ends where Skip does
// (brackets and escaped quotes inside strings, nesting, whitespace);
// brackets or strings that do not close are errors.
func TestSpan(t *testing.T) {
	for _, in := range []string{
		`[]`, `{}`, `{"a":{"b":[1,{"c":"}"}]},"d":[[],{}]}`, `{"a" : 1 , "b" : [ true ] } tail`,
		`["\"", "\\", "\\\"]", "{"]`, `{"k":"\u005d]"}, {"next": 1}`, `[1,[2,[3,[4]]],5]`,
		`{"é":"ü\t"}`, strings.Repeat("[", 300) + strings.Repeat("]", 300),
	} {
		b := []byte(in)
		want := 0
		if in != strings.Repeat("[", 300)+strings.Repeat("]", 300) { // deeper than Skip reads
			var err error
			if want, err = Skip(b, 0); err != nil {
				t.Fatalf("%s: %v", b, err)
			}
		} else {
			want = len(b)
		}
		if got, err := Span(b, 0); err != nil || got != want {
			t.Errorf("%s: Span ends at %d (%v), want %d", b, got, err, want)
		}
	}
	for _, in := range []string{`{`, `[[]`, `{"a":"}`, `["\"]`, `["\\\"]`, `1`, `"a"`, ``} {
		var se *SyntaxError
		if end, err := Span([]byte(in), 0); !errors.As(err, &se) {
			t.Errorf("%s: end %d, error %v, want a SyntaxError", in, end, err)
		}
	}
}

// TestSpanRandom: on random documents (strings of quotes, backslashes,
// brackets and escapes at every offset of a word) Span ends where Skip
// does, from every array or object in them.
func TestSpanRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	pieces := []string{`"`, `\\`, `{`, `}`, `[`, `]`, `a`, `é`, ` `, `\u005c`}
	str := func() string {
		var sb strings.Builder
		for range r.IntN(12) {
			sb.WriteString(pieces[r.IntN(len(pieces))])
		}
		return sb.String()
	}
	var value func(depth int) any
	value = func(depth int) any {
		switch k := r.IntN(6); {
		case k == 0 && depth < 6:
			m := map[string]any{}
			for range r.IntN(5) {
				m[str()] = value(depth + 1)
			}
			return m
		case k == 1 && depth < 6:
			var a []any
			for range r.IntN(5) {
				a = append(a, value(depth+1))
			}
			return a
		case k == 2:
			return r.NormFloat64()
		default:
			return str()
		}
	}
	for range 2000 {
		b, err := json.Marshal([]any{value(0), value(0)})
		if err != nil {
			t.Fatal(err)
		}
		for i := range b {
			if k := KindAt(b, i); k != KindArray && k != KindObject {
				continue
			}
			want, err := Skip(b, i)
			if err != nil {
				continue // a bracket inside a string
			}
			if got, err := Span(b, i); err != nil || got != want {
				t.Fatalf("%s at %d: Span ends at %d (%v), Skip at %d", b, i, got, err, want)
			}
		}
	}
}

func TestKeyOpenNext(t *testing.T) {
	b := []byte(` { "a\tb" : 1 , "c":[ ], "d" :{} } `)
	var sc Scanner
	i, more := Open(b, SkipSpace(b, 0))
	var keys []string
	for more {
		key, v, err := sc.Key(b, i)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, string(key))
		end, err := Skip(b, v)
		if err != nil {
			t.Fatal(err)
		}
		if i, more, err = Next(b, end, '}'); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Join(keys, ",") != "a\tb,c,d" || SkipSpace(b, i) != len(b) {
		t.Fatalf("keys %q, stopped at %d", keys, i)
	}
	key, _, err := sc.Key([]byte(`"name" 1`), 0)
	if string(key) != "name" || err == nil || !strings.Contains(err.Error(), "want ':'") {
		t.Errorf("missing colon: key %q, err %v", key, err)
	}
	for _, tc := range []struct {
		in, msg string
	}{
		{`[1`, "unterminated array"}, {`{"a":1`, "unterminated object"},
		{`[1 2`, "want ',' or ']' in array"}, {`{"a":1]`, "want ',' or '}' in object"},
	} {
		if _, err := Skip([]byte(tc.in), 0); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %q", tc.in, err, tc.msg)
		}
	}
}

func TestKindAndDescribe(t *testing.T) {
	for in, want := range map[string]string{
		`"`: "string", `{`: "object", `[`: "array", `t`: "bool", `f`: "bool", `n`: "null",
		`-`: "number", `7`: "number", `x`: `'x'`, `}`: `'}'`, ``: "end of input",
	} {
		if got := Describe([]byte(in), 0); got != want {
			t.Errorf("Describe(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestScanAllocs: reading strings (with escapes, into a grown Buf),
// numbers, keys and nested values allocates nothing.
func TestScanAllocs(t *testing.T) {
	b := []byte(`{"k\u00e9y": "a\"b\\c\ud83d\ude00", "n": -1.5e3, "x": {"a": [1, {"b": "c\n"}, [[[]]]], "t": true}}`)
	var sc Scanner
	run := func() {
		sc.Buf = sc.Buf[:0]
		i, more := Open(b, 0)
		for more {
			_, v, err := sc.Key(b, i)
			if err != nil {
				t.Fatal(err)
			}
			var end int
			switch KindAt(b, v) {
			case KindString:
				_, end, err = sc.String(b, v)
			case KindNumber:
				end, _, err = Number(b, v)
			default:
				end, err = Skip(b, v)
			}
			if err != nil {
				t.Fatal(err)
			}
			if i, more, err = Next(b, end, '}'); err != nil {
				t.Fatal(err)
			}
		}
	}
	run()
	if a := testing.AllocsPerRun(100, run); a != 0 {
		t.Errorf("scanning allocates %v times per object, want 0", a)
	}
	var dst []byte
	if a := testing.AllocsPerRun(100, func() {
		dst = AppendString(dst[:0], "a\"b\\c\x01é\xff")
		dst = AppendFloat(dst, 0.1, 64)
	}); a != 0 {
		t.Errorf("writing allocates %v times, want 0", a)
	}
}
