package jsontext

import (
	"math"
	"strconv"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. The quote and the backslash are
// escaped, newline, carriage return and tab as \n, \r and \t, the other
// control characters as \u00XX; each byte of invalid UTF-8 becomes U+FFFD
// (as encoding/json does). Everything else, non-ASCII included, is written
// as it is: the result is valid JSON and reads back as s when s is valid
// UTF-8. (No HTML escaping: the text is not meant for a <script> element.)
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if plain[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// AppendFloat appends v as a JSON number: the shortest text that reads back
// as the same float of bitSize bits (32 for a float32 value, 64 for a
// float64), in Go's 'g' form ("0.1", "1e+21", "-0"), which is valid JSON.
// JSON has no NaN or infinity: those are written as null, so a reader
// takes them as a missing value.
func AppendFloat(dst []byte, v float64, bitSize int) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(dst, "null"...)
	}
	return strconv.AppendFloat(dst, v, 'g', -1, bitSize)
}
