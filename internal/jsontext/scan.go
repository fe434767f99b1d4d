// Package jsontext reads and writes JSON text (RFC 8259) at the level of
// tokens, for the decoders and encoders that must not allocate: the Kafka
// event decoder and encoder (features), the score request decoder and the
// response writer (serving).
//
// Reading works on a byte slice and an offset: each function takes the
// input b and the index i of the token to read, and returns the index
// after it. Errors are *SyntaxError, with the offset of the first byte
// that cannot be read (len(b) when the input ends early). The grammar is
// RFC 8259's, strictly: no comments, no trailing commas, no leading zeros,
// no bare NaN or Infinity, control characters escaped in strings, and, as
// RFC 8259 requires of JSON exchanged between systems, UTF-8 only: a
// string with invalid UTF-8 is an error (encoding/json would replace the
// bytes with U+FFFD). A \u escape of an unpaired surrogate decodes to
// U+FFFD, as encoding/json does.
//
// Writing appends to a byte slice: AppendString and AppendFloat.
package jsontext

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of arrays and objects that Skip accepts
// in one value (the value itself counts: [[1]] has depth 2).
const MaxDepth = 256

// SyntaxError is malformed JSON at a byte offset of the input.
type SyntaxError struct {
	// Offset is the index of the first byte that cannot be read, or the
	// input's length when it ends early.
	Offset int
	// Msg says what was wanted.
	Msg string
}

// Error implements error.
func (e *SyntaxError) Error() string {
	return "jsontext: offset " + strconv.Itoa(e.Offset) + ": " + e.Msg
}

func errAt(off int, msg string) error { return &SyntaxError{Offset: off, Msg: msg} }

// Kind is the kind of a JSON value, told by its first byte.
type Kind uint8

// The kinds of JSON values. KindInvalid is a byte no value starts with;
// KindEnd is the end of the input.
const (
	KindInvalid Kind = iota
	KindEnd
	KindNull
	KindBool
	KindNumber
	KindString
	KindArray
	KindObject
)

var kindNames = [...]string{"invalid", "end of input", "null", "bool", "number", "string", "array", "object"}

// String returns the kind's name as error messages use it: "string",
// "number", "bool", "null", "array", "object", "end of input".
func (k Kind) String() string { return kindNames[k] }

// KindAt returns the kind of the value starting at b[i] from its first
// byte alone (End when i is past the input); the value may still be
// malformed.
func KindAt(b []byte, i int) Kind {
	if i >= len(b) {
		return KindEnd
	}
	switch c := b[i]; {
	case c == '"':
		return KindString
	case c == '{':
		return KindObject
	case c == '[':
		return KindArray
	case c == 't' || c == 'f':
		return KindBool
	case c == 'n':
		return KindNull
	case c == '-' || c >= '0' && c <= '9':
		return KindNumber
	}
	return KindInvalid
}

// Describe names what is at b[i] for an error message: its kind, or the
// quoted byte when no value starts with it.
func Describe(b []byte, i int) string {
	if k := KindAt(b, i); k != KindInvalid {
		return k.String()
	}
	return fmt.Sprintf("%q", b[i])
}

// SkipSpace returns the index of the first byte at or after i that is not
// JSON whitespace (space, tab, newline, carriage return).
func SkipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// IsLiteral reports whether b holds lit ("null", "true" or "false") at i.
func IsLiteral(b []byte, i int, lit string) bool {
	return len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit
}

// Number reads the number at b[i] and returns the index after it and
// whether it is written as an integer (no fraction and no exponent; "-0"
// is an integer). It reads the longest number there: in "01" it reads "0",
// and the caller finds the "1" where it wants a separator.
func Number(b []byte, i int) (end int, integer bool, err error) {
	j := i
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case j < len(b) && b[j] >= '1' && b[j] <= '9':
		j = digits(b, j+1)
	default:
		return 0, false, errAt(j, "bad number: want a digit")
	}
	integer = true
	if j < len(b) && b[j] == '.' {
		integer = false
		k := digits(b, j+1)
		if k == j+1 {
			return 0, false, errAt(k, "bad number: want a digit after '.'")
		}
		j = k
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		integer = false
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		k := digits(b, j)
		if k == j {
			return 0, false, errAt(k, "bad number: want a digit in the exponent")
		}
		j = k
	}
	return j, integer, nil
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// plain marks the bytes a string holds as they are: printable ASCII but
// the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// Scanner reads strings, unescaping into a buffer it keeps; the other
// reading functions need no state and are plain functions. The zero value
// is ready to use. A Scanner is not safe for concurrent use.
type Scanner struct {
	// Buf receives the text of strings with escapes. String appends to it
	// and never truncates it, so every string read since the caller last
	// truncated Buf stays valid; callers may append their own text too.
	Buf []byte
}

// String reads the string at b[i] and returns its text and the index after
// the closing quote. The text aliases b when the string has no escapes,
// else it is the unescaped text appended to s.Buf.
func (s *Scanner) String(b []byte, i int) (str []byte, end int, err error) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, errAt(i, "want a string")
	}
	j := i + 1
	for {
		for j < len(b) && plain[b[j]] {
			j++
		}
		if j >= len(b) {
			return nil, 0, errAt(j, "unterminated string")
		}
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j : j], j + 1, nil
		case c == '\\':
			return s.unescape(b, i+1, j)
		case c < 0x20:
			return nil, 0, errAt(j, "control character in string")
		default:
			r, n := utf8.DecodeRune(b[j:])
			if r == utf8.RuneError && n == 1 {
				return nil, 0, errAt(j, "invalid UTF-8 in string")
			}
			j += n
		}
	}
}

// unescape finishes a string with escapes: b[start:j] is plain text, b[j]
// the first backslash.
func (s *Scanner) unescape(b []byte, start, j int) ([]byte, int, error) {
	o := len(s.Buf)
	s.Buf = append(s.Buf, b[start:j]...)
	for {
		k := j
		for k < len(b) && plain[b[k]] {
			k++
		}
		s.Buf = append(s.Buf, b[j:k]...)
		j = k
		if j >= len(b) {
			return nil, 0, errAt(j, "unterminated string")
		}
		switch c := b[j]; {
		case c == '"':
			return s.Buf[o:len(s.Buf):len(s.Buf)], j + 1, nil
		case c == '\\':
			if j+1 >= len(b) {
				return nil, 0, errAt(j+1, "unterminated string")
			}
			switch e := b[j+1]; e {
			case '"', '\\', '/':
				s.Buf = append(s.Buf, e)
			case 'b':
				s.Buf = append(s.Buf, '\b')
			case 'f':
				s.Buf = append(s.Buf, '\f')
			case 'n':
				s.Buf = append(s.Buf, '\n')
			case 'r':
				s.Buf = append(s.Buf, '\r')
			case 't':
				s.Buf = append(s.Buf, '\t')
			case 'u':
				r, ok := hex4(b, j+2)
				if !ok {
					return nil, 0, errAt(j, "bad \\u escape")
				}
				j += 4
				if utf16.IsSurrogate(r) {
					// A high surrogate and a low one make a pair; anything
					// else is U+FFFD, and an escape after it is read on
					// its own.
					r2 := rune(-1)
					if IsLiteral(b, j+2, `\u`) {
						if x, ok := hex4(b, j+4); ok {
							r2 = x
						}
					}
					if r = utf16.DecodeRune(r, r2); r != utf8.RuneError {
						j += 6
					}
				}
				s.Buf = utf8.AppendRune(s.Buf, r)
			default:
				return nil, 0, errAt(j, "bad escape")
			}
			j += 2
		case c < 0x20:
			return nil, 0, errAt(j, "control character in string")
		default:
			r, n := utf8.DecodeRune(b[j:])
			if r == utf8.RuneError && n == 1 {
				return nil, 0, errAt(j, "invalid UTF-8 in string")
			}
			s.Buf = append(s.Buf, b[j:j+n]...)
			j += n
		}
	}
}

// skipString checks the string at b[i] (b[i] is '"') without unescaping it
// and returns the index after it.
func skipString(b []byte, i int) (int, error) {
	j := i + 1
	for {
		for j < len(b) && plain[b[j]] {
			j++
		}
		if j >= len(b) {
			return 0, errAt(j, "unterminated string")
		}
		switch c := b[j]; {
		case c == '"':
			return j + 1, nil
		case c == '\\':
			if j+1 >= len(b) {
				return 0, errAt(j+1, "unterminated string")
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if _, ok := hex4(b, j+2); !ok {
					return 0, errAt(j, "bad \\u escape")
				}
				j += 6
			default:
				return 0, errAt(j, "bad escape")
			}
		case c < 0x20:
			return 0, errAt(j, "control character in string")
		default:
			r, n := utf8.DecodeRune(b[j:])
			if r == utf8.RuneError && n == 1 {
				return 0, errAt(j, "invalid UTF-8 in string")
			}
			j += n
		}
	}
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// Key reads an object key at b[i], the colon after it and the whitespace
// around the colon, and returns the key's text (as String does) and the
// index of the member's value. When the colon is missing, the key is
// returned with the error, so the caller can name it.
func (s *Scanner) Key(b []byte, i int) (key []byte, value int, err error) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, errAt(i, "want object key")
	}
	key, i, err = s.String(b, i)
	if err != nil {
		return nil, 0, err
	}
	if i = SkipSpace(b, i); i >= len(b) || b[i] != ':' {
		return key, 0, errAt(i, "want ':' after object key")
	}
	return key, SkipSpace(b, i+1), nil
}

// Open enters the array or object whose bracket is at b[i]. When it holds
// an element, more is true and j is the index of the element (of the key,
// in an object); when it is empty, more is false and j is the index after
// the closing bracket.
func Open(b []byte, i int) (j int, more bool) {
	close := byte(']')
	if b[i] == '{' {
		close = '}'
	}
	j = SkipSpace(b, i+1)
	if j < len(b) && b[j] == close {
		return j + 1, false
	}
	return j, true
}

// Next moves past an element of the array or object closed by close (']'
// or '}'), which ends before b[i]: at a comma, more is true and j is the
// index of the next element; at the closing bracket, more is false and j is
// the index after it.
func Next(b []byte, i int, close byte) (j int, more bool, err error) {
	i = SkipSpace(b, i)
	if i < len(b) {
		switch b[i] {
		case ',':
			return SkipSpace(b, i+1), true, nil
		case close:
			return i + 1, false, nil
		}
	}
	name := "array"
	if close == '}' {
		name = "object"
	}
	if i >= len(b) {
		return 0, false, errAt(i, "unterminated "+name)
	}
	return 0, false, errAt(i, "want ',' or '"+string(close)+"' in "+name)
}

// Skip checks the value at b[i] (after any whitespace) and returns the
// index after it. Values nested deeper than MaxDepth are an error.
func Skip(b []byte, i int) (int, error) {
	var objs [MaxDepth / 64]uint64 // bit d: the container at depth d is an object
	depth := 0
	var err error
	for {
		// One value: a scalar, or the opening of a container.
		i = SkipSpace(b, i)
		switch KindAt(b, i) {
		case KindString:
			if i, err = skipString(b, i); err != nil {
				return 0, err
			}
		case KindNumber:
			if i, _, err = Number(b, i); err != nil {
				return 0, err
			}
		case KindNull, KindBool:
			switch {
			case IsLiteral(b, i, "null"), IsLiteral(b, i, "true"):
				i += 4
			case IsLiteral(b, i, "false"):
				i += 5
			default:
				return 0, errAt(i, "want a value")
			}
		case KindArray, KindObject:
			if depth == MaxDepth {
				return 0, errAt(i, "nesting too deep")
			}
			obj := b[i] == '{'
			var more bool
			if i, more = Open(b, i); more {
				if obj {
					objs[depth/64] |= 1 << (depth % 64)
					if i, err = skipKey(b, i); err != nil {
						return 0, err
					}
				} else {
					objs[depth/64] &^= 1 << (depth % 64)
				}
				depth++
				continue
			}
		case KindEnd:
			return 0, errAt(i, "unexpected end of input")
		default:
			return 0, errAt(i, "want a value")
		}
		// After a value: close containers, or move to the next element.
		for {
			if depth == 0 {
				return i, nil
			}
			obj := objs[(depth-1)/64]&(1<<((depth-1)%64)) != 0
			close := byte(']')
			if obj {
				close = '}'
			}
			var more bool
			if i, more, err = Next(b, i, close); err != nil {
				return 0, err
			}
			if more {
				if obj {
					if i, err = skipKey(b, i); err != nil {
						return 0, err
					}
				}
				break
			}
			depth--
		}
	}
}

// skipKey checks `"key" :` at b[i] and returns the index of the value.
func skipKey(b []byte, i int) (int, error) {
	if i >= len(b) || b[i] != '"' {
		return 0, errAt(i, "want object key")
	}
	i, err := skipString(b, i)
	if err != nil {
		return 0, err
	}
	if i = SkipSpace(b, i); i >= len(b) || b[i] != ':' {
		return 0, errAt(i, "want ':' after object key")
	}
	return SkipSpace(b, i+1), nil
}

// Span returns the index after the array or object that starts at b[i],
// found by counting brackets outside strings, without checking anything
// else: for well-formed JSON it is the index Skip returns, at a fraction
// of Skip's cost; for malformed JSON it may be any index, or an error
// when the brackets or strings do not close. So a caller that uses Span
// must check the value with Skip (or a decoder) before trusting it:
// serving splits a request's candidates with Span, and each candidate's
// decoder checks its own.
//
// It reads 8 bytes at a time: in a word without a backslash it finds
// which bytes are inside strings from the parity of the quotes before
// them, and counts the brackets outside (walking them one by one only
// when the count may reach zero in the word); a word with a backslash,
// whose escapes may hide a quote, it reads byte by byte.
func Span(b []byte, i int) (int, error) {
	if k := KindAt(b, i); k != KindArray && k != KindObject {
		return 0, errAt(i, "want an array or object")
	}
	depth, inString, done := 0, false, false
	p := i
	for p+8 <= len(b) {
		x := binary.LittleEndian.Uint64(b[p:])
		if swarEq(x, '\\') != 0 {
			if p, depth, inString, done = spanBytes(b, p, p+8, depth, inString); done {
				return p, nil
			}
			continue
		}
		// str has 1 in the bytes inside a string: those after an odd
		// number of quotes in the word, or an even one if the word
		// starts inside a string.
		str := swarEq(x, '"') >> 7
		str ^= str << 8
		str ^= str << 16
		str ^= str << 32
		if inString {
			str ^= swarOnes
		}
		inString = str>>56 != 0
		// '[' and ']' are '{' and '}' without bit 5.
		xb := x | swarOnes*0x20
		open := swarEq(xb, '{') >> 7 &^ str
		shut := swarEq(xb, '}') >> 7 &^ str
		if n := bits.OnesCount64(shut); n < depth {
			depth += bits.OnesCount64(open) - n
			p += 8
			continue
		}
		for m := open | shut; m != 0; m &= m - 1 {
			k := bits.TrailingZeros64(m)
			if open>>k&1 != 0 {
				depth++
			} else if depth--; depth == 0 {
				return p + k/8 + 1, nil
			}
		}
		p += 8
	}
	if p, _, inString, done = spanBytes(b, p, len(b), depth, inString); done {
		return p, nil
	}
	if inString {
		return 0, errAt(len(b), "unterminated string")
	}
	return 0, errAt(len(b), "unexpected end of input")
}

// spanBytes is Span's reading of b[p:end] byte by byte, from the state
// depth and inString (p is inside a string). It returns where it stopped
// (past end after an escape at end-1; never beyond len(b) unless in a
// string) and the state there; done is set at the bracket that closes
// the value, p then being the index after it.
func spanBytes(b []byte, p, end, depth int, inString bool) (int, int, bool, bool) {
	for p < end && p < len(b) {
		c := b[p]
		p++
		if inString {
			switch c {
			case '\\':
				p++ // the escaped byte
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				return p, depth, inString, true
			}
		}
	}
	return p, depth, inString, false
}

const (
	swarOnes = 0x0101010101010101
	swarLow7 = 0x7f7f7f7f7f7f7f7f
)

// swarEq returns a word with the high bit of byte k set exactly where
// byte k of x is c.
func swarEq(x uint64, c byte) uint64 {
	y := x ^ (swarOnes * uint64(c))
	return ^((y&swarLow7 + swarLow7) | y | swarLow7)
}
