package serving

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Sentinel errors of request handling. A *RequestError unwraps to one of
// them; the HTTP layer maps each to a status code.
var (
	// ErrBadRequest: the request body is not a valid score request
	// (malformed JSON, a wrong type, a missing required feature). HTTP 400.
	ErrBadRequest = errors.New("serving: bad request")
	// ErrTooManyCandidates: more candidates than ScorerConfig.MaxCandidates.
	// HTTP 400.
	ErrTooManyCandidates = errors.New("serving: too many candidates")
	// ErrUnknownObjective: the request asks for an objective the model does
	// not produce. HTTP 400.
	ErrUnknownObjective = errors.New("serving: unknown objective")
	// ErrTooLarge: the request body exceeds the size limit. HTTP 413.
	ErrTooLarge = errors.New("serving: request too large")
)

// RequestError is a rejected request: what was wrong and in which field.
type RequestError struct {
	// Field names the offending part of the request, as a path:
	// "top_k", "objectives[1]", "context.age", "candidates[3].price", or ""
	// for the body as a whole.
	Field string
	// Kind is one of ErrBadRequest, ErrTooManyCandidates,
	// ErrUnknownObjective, ErrTooLarge.
	Kind error
	// Msg says what was wanted and what was found.
	Msg string
}

// Error implements error.
func (e *RequestError) Error() string {
	if e.Field == "" {
		return "serving: request: " + e.Msg
	}
	return fmt.Sprintf("serving: request field %q: %s", e.Field, e.Msg)
}

// Unwrap returns Kind.
func (e *RequestError) Unwrap() error { return e.Kind }

func reqErr(field string, kind error, format string, args ...any) *RequestError {
	return &RequestError{Field: field, Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Request is a decoded score request:
//
//	{"context": {...}, "candidates": [{...}, ...], "objectives": ["ctr"], "top_k": 50}
//
// Context and each candidate are raw JSON objects whose keys are the spec's
// columns; a candidate's (non-null) keys override the context's, and a key
// that is null or absent in the candidate takes the context's value.
// "context", "objectives" and "top_k" are optional (no context, every
// objective, every candidate). The byte slices alias the body the request was
// decoded from. A Request is not safe for concurrent mutation.
type Request struct {
	// Context is the raw JSON object of the request context, or nil.
	Context []byte
	// Candidates are the raw JSON objects of the candidates, in order.
	Candidates [][]byte
	// Objectives names the scores to return; empty means all of the model's.
	Objectives []string
	// TopK keeps the TopK best-ranked candidates; 0 keeps all.
	TopK int
}

// maxRequestDepth bounds the nesting of values inside a request.
const maxRequestDepth = 256

// DecodeRequest parses body into dst, reusing dst's slices: decoding a
// request into a reused Request allocates nothing per candidate. It checks
// the envelope strictly (unknown top-level keys, wrong types, malformed JSON
// anywhere in the body are *RequestError wrapping ErrBadRequest, naming the
// field) but not the features inside the context and candidates: the
// Scorer checks those against the model's schema.
func DecodeRequest(dst *Request, body []byte) error {
	dst.Context = nil
	dst.Candidates = dst.Candidates[:0]
	dst.Objectives = dst.Objectives[:0]
	dst.TopK = 0
	s := scanner{b: body}
	s.ws()
	if s.p >= len(s.b) {
		return reqErr("", ErrBadRequest, "empty body: want a JSON object")
	}
	if s.b[s.p] != '{' {
		return reqErr("", ErrBadRequest, "want a JSON object, found %s at offset %d", s.what(), s.p)
	}
	s.p++
	seen := 0
	for first := true; ; first = false {
		s.ws()
		if s.p < len(s.b) && s.b[s.p] == '}' {
			s.p++
			break
		}
		if !first {
			if s.p >= len(s.b) || s.b[s.p] != ',' {
				return s.syntax("", "want ',' or '}' after a value")
			}
			s.p++
			s.ws()
		}
		key, err := s.key()
		if err != nil {
			return err
		}
		s.ws()
		var bit int
		switch string(key) {
		case "context":
			bit = 1
			start := s.p
			if s.lit("null") {
				break
			}
			if s.p >= len(s.b) || s.b[s.p] != '{' {
				return reqErr("context", ErrBadRequest, "want a JSON object, found %s", s.what())
			}
			if err := s.skip(0, "context"); err != nil {
				return err
			}
			dst.Context = s.b[start:s.p]
		case "candidates":
			bit = 2
			if s.p >= len(s.b) || s.b[s.p] != '[' {
				return reqErr("candidates", ErrBadRequest, "want a JSON array of objects, found %s", s.what())
			}
			err := s.elements("candidates", "a candidate", func(i int) error {
				if s.p >= len(s.b) || s.b[s.p] != '{' {
					return reqErr(indexField("candidates", i), ErrBadRequest, "want a JSON object, found %s", s.what())
				}
				start := s.p
				if err := s.skip(1, "candidates"); err != nil {
					return err
				}
				dst.Candidates = append(dst.Candidates, s.b[start:s.p])
				return nil
			})
			if err != nil {
				return err
			}
		case "objectives":
			bit = 4
			if s.lit("null") {
				break
			}
			if s.p >= len(s.b) || s.b[s.p] != '[' {
				return reqErr("objectives", ErrBadRequest, "want a JSON array of strings, found %s", s.what())
			}
			err := s.elements("objectives", "an objective", func(i int) error {
				if s.p >= len(s.b) || s.b[s.p] != '"' {
					return reqErr(indexField("objectives", i), ErrBadRequest, "want a string, found %s", s.what())
				}
				str, err := s.str(indexField("objectives", i))
				if err != nil {
					return err
				}
				dst.Objectives = append(dst.Objectives, string(str))
				return nil
			})
			if err != nil {
				return err
			}
		case "top_k":
			bit = 8
			if s.lit("null") {
				break
			}
			start := s.p
			if err := s.number("top_k"); err != nil {
				return err
			}
			k, err := strconv.Atoi(string(s.b[start:s.p]))
			if err != nil || k < 0 {
				return reqErr("top_k", ErrBadRequest, "want a non-negative integer, found %s", s.b[start:s.p])
			}
			dst.TopK = k
		default:
			return reqErr(string(key), ErrBadRequest, "unknown key (want context, candidates, objectives, top_k)")
		}
		if seen&bit != 0 {
			return reqErr(string(key), ErrBadRequest, "key appears twice")
		}
		seen |= bit
	}
	s.ws()
	if s.p != len(s.b) {
		return s.syntax("", "data after the request object")
	}
	if seen&2 == 0 {
		return reqErr("candidates", ErrBadRequest, "missing (want a JSON array of candidate objects)")
	}
	return nil
}

func indexField(name string, i int) string {
	return name + "[" + strconv.Itoa(i) + "]"
}

// scanner is a strict, allocation-free JSON scanner over a byte slice.
type scanner struct {
	b   []byte
	p   int
	buf []byte // unescaped key or string
}

func (s *scanner) ws() {
	for s.p < len(s.b) {
		switch s.b[s.p] {
		case ' ', '\t', '\n', '\r':
			s.p++
		default:
			return
		}
	}
}

// what describes the value at s.p for an error message.
func (s *scanner) what() string {
	if s.p >= len(s.b) {
		return "end of input"
	}
	switch c := s.b[s.p]; {
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == '-' || c >= '0' && c <= '9':
		return "a number"
	default:
		return fmt.Sprintf("%q", c)
	}
}

func (s *scanner) syntax(field, msg string) error {
	return reqErr(field, ErrBadRequest, "malformed JSON at offset %d: %s", s.p, msg)
}

// lit consumes the literal word if it is next.
func (s *scanner) lit(word string) bool {
	if len(s.b)-s.p >= len(word) && string(s.b[s.p:s.p+len(word)]) == word {
		s.p += len(word)
		return true
	}
	return false
}

// key reads an object key and the colon after it.
func (s *scanner) key() ([]byte, error) {
	if s.p >= len(s.b) || s.b[s.p] != '"' {
		return nil, s.syntax("", "want a quoted key")
	}
	k, err := s.str("")
	if err != nil {
		return nil, err
	}
	s.ws()
	if s.p >= len(s.b) || s.b[s.p] != ':' {
		return nil, s.syntax(string(k), "want ':' after a key")
	}
	s.p++
	return k, nil
}

// str reads a JSON string at s.p (which holds '"') and returns its
// unescaped bytes; they alias the input when there are no escapes, else a
// scratch buffer valid until the next call.
func (s *scanner) str(field string) ([]byte, error) {
	s.p++
	start := s.p
	for s.p < len(s.b) {
		c := s.b[s.p]
		switch {
		case c == '"':
			out := s.b[start:s.p]
			s.p++
			return out, nil
		case c == '\\':
			return s.strSlow(start, field)
		case c < 0x20:
			return nil, s.syntax(field, "control character in a string")
		case c < utf8.RuneSelf:
			s.p++
		default:
			r, n := utf8.DecodeRune(s.b[s.p:])
			if r == utf8.RuneError && n == 1 {
				return nil, s.syntax(field, "invalid UTF-8 in a string")
			}
			s.p += n
		}
	}
	return nil, s.syntax(field, "unterminated string")
}

func (s *scanner) strSlow(start int, field string) ([]byte, error) {
	s.buf = append(s.buf[:0], s.b[start:s.p]...)
	for s.p < len(s.b) {
		c := s.b[s.p]
		switch {
		case c == '"':
			s.p++
			return s.buf, nil
		case c == '\\':
			if s.p+1 >= len(s.b) {
				return nil, s.syntax(field, "unterminated escape")
			}
			e := s.b[s.p+1]
			s.p += 2
			switch e {
			case '"', '\\', '/':
				s.buf = append(s.buf, e)
			case 'b':
				s.buf = append(s.buf, '\b')
			case 'f':
				s.buf = append(s.buf, '\f')
			case 'n':
				s.buf = append(s.buf, '\n')
			case 'r':
				s.buf = append(s.buf, '\r')
			case 't':
				s.buf = append(s.buf, '\t')
			case 'u':
				r, ok := s.hex4()
				if !ok {
					return nil, s.syntax(field, "bad \\u escape")
				}
				if r >= 0xd800 && r < 0xdc00 {
					// A high surrogate: a low one must follow, else U+FFFD.
					save := s.p
					if s.p+1 < len(s.b) && s.b[s.p] == '\\' && s.b[s.p+1] == 'u' {
						s.p += 2
						if r2, ok := s.hex4(); ok && r2 >= 0xdc00 && r2 < 0xe000 {
							r = (r-0xd800)<<10 | (r2 - 0xdc00) + 0x10000
						} else {
							s.p = save
							r = utf8.RuneError
						}
					} else {
						r = utf8.RuneError
					}
				} else if r >= 0xdc00 && r < 0xe000 {
					r = utf8.RuneError
				}
				s.buf = utf8.AppendRune(s.buf, r)
			default:
				return nil, s.syntax(field, "unknown escape")
			}
		case c < 0x20:
			return nil, s.syntax(field, "control character in a string")
		case c < utf8.RuneSelf:
			s.buf = append(s.buf, c)
			s.p++
		default:
			r, n := utf8.DecodeRune(s.b[s.p:])
			if r == utf8.RuneError && n == 1 {
				return nil, s.syntax(field, "invalid UTF-8 in a string")
			}
			s.buf = append(s.buf, s.b[s.p:s.p+n]...)
			s.p += n
		}
	}
	return nil, s.syntax(field, "unterminated string")
}

func (s *scanner) hex4() (rune, bool) {
	if s.p+4 > len(s.b) {
		return 0, false
	}
	var r rune
	for _, c := range s.b[s.p : s.p+4] {
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
	s.p += 4
	return r, true
}

// number consumes a JSON number (RFC 8259 grammar).
func (s *scanner) number(field string) error {
	start := s.p
	if s.p < len(s.b) && s.b[s.p] == '-' {
		s.p++
	}
	switch {
	case s.p < len(s.b) && s.b[s.p] == '0':
		s.p++
	case s.p < len(s.b) && s.b[s.p] >= '1' && s.b[s.p] <= '9':
		for s.p < len(s.b) && s.b[s.p] >= '0' && s.b[s.p] <= '9' {
			s.p++
		}
	default:
		s.p = start
		return reqErr(field, ErrBadRequest, "want a number, found %s", s.what())
	}
	if s.p < len(s.b) && s.b[s.p] == '.' {
		s.p++
		d := s.p
		for s.p < len(s.b) && s.b[s.p] >= '0' && s.b[s.p] <= '9' {
			s.p++
		}
		if s.p == d {
			return s.syntax(field, "want a digit after '.'")
		}
	}
	if s.p < len(s.b) && (s.b[s.p] == 'e' || s.b[s.p] == 'E') {
		s.p++
		if s.p < len(s.b) && (s.b[s.p] == '+' || s.b[s.p] == '-') {
			s.p++
		}
		d := s.p
		for s.p < len(s.b) && s.b[s.p] >= '0' && s.b[s.p] <= '9' {
			s.p++
		}
		if s.p == d {
			return s.syntax(field, "want a digit in the exponent")
		}
	}
	return nil
}

// skip consumes one JSON value, checking its syntax. depth is the nesting
// of the value.
func (s *scanner) skip(depth int, field string) error {
	if depth > maxRequestDepth {
		return s.syntax(field, "nesting too deep")
	}
	s.ws()
	if s.p >= len(s.b) {
		return s.syntax(field, "unexpected end of input")
	}
	switch c := s.b[s.p]; {
	case c == '{':
		s.p++
		for first := true; ; first = false {
			s.ws()
			if s.p < len(s.b) && s.b[s.p] == '}' {
				s.p++
				return nil
			}
			if !first {
				if s.p >= len(s.b) || s.b[s.p] != ',' {
					return s.syntax(field, "want ',' or '}' in an object")
				}
				s.p++
				s.ws()
			}
			if _, err := s.key(); err != nil {
				if re, ok := err.(*RequestError); ok && re.Field == "" {
					re.Field = field
				}
				return err
			}
			if err := s.skip(depth+1, field); err != nil {
				return err
			}
		}
	case c == '[':
		s.p++
		for first := true; ; first = false {
			s.ws()
			if s.p < len(s.b) && s.b[s.p] == ']' {
				s.p++
				return nil
			}
			if !first {
				if s.p >= len(s.b) || s.b[s.p] != ',' {
					return s.syntax(field, "want ',' or ']' in an array")
				}
				s.p++
			}
			if err := s.skip(depth+1, field); err != nil {
				return err
			}
		}
	case c == '"':
		_, err := s.str(field)
		return err
	case c == '-' || c >= '0' && c <= '9':
		return s.number(field)
	case s.lit("true"), s.lit("false"), s.lit("null"):
		return nil
	}
	return s.syntax(field, "want a JSON value")
}

// objectNumber finds key among the top-level keys of the JSON object obj
// (already validated) and parses its value as a number. found is false
// when the key is absent or null; err is set when the value is not a
// number.
func (s *scanner) objectNumber(obj []byte, key string) (v float64, found bool, err error) {
	s.b, s.p = obj, 1
	for {
		s.ws()
		if s.p >= len(s.b) || s.b[s.p] == '}' {
			return v, found, nil
		}
		if s.b[s.p] == ',' {
			s.p++
			s.ws()
		}
		k, kerr := s.key()
		if kerr != nil {
			return 0, false, kerr
		}
		match := string(k) == key
		s.ws()
		if !match {
			if err := s.skip(1, key); err != nil {
				return 0, false, err
			}
			continue
		}
		if s.lit("null") {
			// A later duplicate key would win in the decoder too: keep going.
			found = false
			continue
		}
		start := s.p
		if s.p >= len(s.b) || !(s.b[s.p] == '-' || s.b[s.p] >= '0' && s.b[s.p] <= '9') {
			return 0, false, fmt.Errorf("want a number, found %s", s.what())
		}
		if err := s.number(key); err != nil {
			return 0, false, err
		}
		x, perr := strconv.ParseFloat(string(s.b[start:s.p]), 64)
		if perr != nil {
			return 0, false, fmt.Errorf("number %s out of range", s.b[start:s.p])
		}
		v, found = x, true
		// Continue: a later duplicate key wins.
	}
}

// elements walks the JSON array whose '[' is at s.p, calling elem with s.p
// at each element's first byte (elem consumes the element); after names an
// element in the error for a missing separator.
func (s *scanner) elements(field, after string, elem func(i int) error) error {
	s.p++
	for i := 0; ; i++ {
		s.ws()
		if s.p < len(s.b) && s.b[s.p] == ']' {
			s.p++
			return nil
		}
		if i > 0 {
			if s.p >= len(s.b) || s.b[s.p] != ',' {
				return s.syntax(field, "want ',' or ']' after "+after)
			}
			s.p++
			s.ws()
		}
		if err := elem(i); err != nil {
			return err
		}
	}
}
