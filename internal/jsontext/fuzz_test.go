package jsontext

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzString compares String with encoding/json on the same bytes: what
// one reads as a string the other reads as the same string, and String
// rejects only what encoding/json rejects or what holds invalid UTF-8
// (which encoding/json replaces and RFC 8259 forbids).
func FuzzString(f *testing.F) {
	for _, s := range []string{
		`"abc"`, `"a\"b\\c\/\b\f\n\r\t"`, `"\u00e9\ud83d\ude00"`, `"\ud800"`, `"\ud800x"`,
		`"\udc00\ud800"`, `"\ud800\u0041"`, `"\ud800\ud800\udc00"`, "\"\xff\"", `"\u12"`, `"a`, `"\`,
		"\"\x01\"", `"é😀"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var sc Scanner
		sc.Buf = append(sc.Buf, "keep"...)
		i := SkipSpace(data, 0)
		got, end, err := sc.String(data, i)
		skipEnd, skipErr := Skip(data, i)
		if string(sc.Buf[:4]) != "keep" {
			t.Fatalf("String changed earlier text in Buf: %q", sc.Buf)
		}
		var want string
		jerr := json.Unmarshal(data, &want)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Offset < 0 || se.Offset > len(data) {
				t.Fatalf("%q: error %v is not a SyntaxError within the input", data, err)
			}
			if i < len(data) && data[i] == '"' && (skipErr == nil || skipErr.Error() != err.Error()) {
				t.Fatalf("%q: String says %v, Skip says %v", data, err, skipErr)
			}
			if jerr == nil && utf8.Valid(data) {
				t.Fatalf("%q: rejected (%v), encoding/json reads %q", data, err, want)
			}
			return
		}
		if skipErr != nil || skipEnd != end {
			t.Fatalf("%q: String ends at %d, Skip at %d (%v)", data, end, skipEnd, skipErr)
		}
		if !utf8.Valid(got) {
			t.Fatalf("%q: read invalid UTF-8 %q", data, got)
		}
		if SkipSpace(data, end) == len(data) {
			if jerr != nil {
				t.Fatalf("%q: read %q, encoding/json rejects it: %v", data, got, jerr)
			}
			if string(got) != want {
				t.Fatalf("%q: read %q, encoding/json reads %q", data, got, want)
			}
		}
	})
}

// FuzzSkip compares Skip's verdict on a whole input with json.Valid. Skip
// may reject more: invalid UTF-8 in strings and nesting beyond MaxDepth.
func FuzzSkip(f *testing.F) {
	for _, s := range []string{
		`{"a":{"b":[1,{"c":"}"}]},"d":[[],{}]}`, ` [ 1 , -2.5e+3 , null , true , false ] `,
		`{"a":1,}`, `[1 2]`, `01`, `"\x"`, `{"a"`, strings.Repeat("[", 300) + strings.Repeat("]", 300),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		end, err := Skip(data, 0)
		if k := KindAt(data, 0); err == nil && (k == KindArray || k == KindObject) {
			if span, serr := Span(data, 0); serr != nil || span != end {
				t.Fatalf("%q: Span ends at %d (%v), Skip at %d", data, span, serr, end)
			}
		}
		whole := err == nil && SkipSpace(data, end) == len(data)
		valid := json.Valid(data)
		if whole && !valid {
			t.Fatalf("%q: accepted, encoding/json rejects it", data)
		}
		if err == nil && !json.Valid(data[:end]) {
			t.Fatalf("%q: read %q, which encoding/json rejects", data, data[:end])
		}
		if !whole && valid {
			var se *SyntaxError
			switch {
			case !errors.As(err, &se):
				t.Fatalf("%q: rejected, encoding/json accepts it (end %d, %v)", data, end, err)
			case strings.Contains(se.Msg, "nesting too deep"), strings.Contains(se.Msg, "invalid UTF-8") && !utf8.Valid(data):
			default:
				t.Fatalf("%q: rejected (%v), encoding/json accepts it", data, err)
			}
		}
	})
}

// FuzzAppendString: any string is written as valid JSON that reads back
// as itself (invalid UTF-8 as U+FFFD, byte by byte as encoding/json does).
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"b\\c", "\x00\x1f\x7f", "é😀\u2028", "\xff\xfe", "a\xc3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkAppendString(t, s)
	})
}
