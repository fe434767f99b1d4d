package serving

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/onestone/onestone/internal/jsontext"
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

	sc jsontext.Scanner // unescaped keys, reused between requests
}

// DecodeRequest parses body into dst, reusing dst's slices: decoding a
// request into a reused Request allocates nothing per candidate. With
// maxCandidates > 0 it stops at the candidate after the limit, without
// scanning it or the rest of the body, and returns a *RequestError
// wrapping ErrTooManyCandidates: a body of a million candidates costs no
// more than one of maxCandidates+1. It checks
// the envelope strictly (unknown top-level keys, wrong types, malformed JSON
// anywhere in the body are *RequestError wrapping ErrBadRequest, naming the
// field) but not the features inside the context and candidates: the
// Scorer checks those against the model's schema. Values may nest
// jsontext.MaxDepth (256) deep inside the context and each candidate.
func DecodeRequest(dst *Request, body []byte, maxCandidates int) error {
	return decodeRequest(dst, body, maxCandidates, true)
}

// decodeRequest is DecodeRequest; without strict it splits the
// candidates with jsontext.Span, which finds where each ends without
// checking it: a malformed candidate may then be accepted, or split
// elsewhere, and a later error be reported in place of its. ScoreBody
// does so because the candidates' decoders check every candidate
// anyway, and after any error takes DecodeRequest's (strictErr).
func decodeRequest(dst *Request, body []byte, maxCandidates int, strict bool) error {
	dst.Context = nil
	dst.Candidates = dst.Candidates[:0]
	dst.Objectives = dst.Objectives[:0]
	dst.TopK = 0
	dst.sc.Buf = dst.sc.Buf[:0]
	b := body
	i := jsontext.SkipSpace(b, 0)
	if i >= len(b) {
		return reqErr("", ErrBadRequest, "empty body: want a JSON object")
	}
	if b[i] != '{' {
		return reqErr("", ErrBadRequest, "want a JSON object, found %s at offset %d", jsontext.Describe(b, i), i)
	}
	seen := 0
	i, more := jsontext.Open(b, i)
	for more {
		key, v, err := dst.sc.Key(b, i)
		if err != nil {
			return malformed(string(key), err)
		}
		i = v
		var bit int
		switch string(key) {
		case "context":
			bit = 1
			if jsontext.IsLiteral(b, i, "null") {
				i += 4
				break
			}
			if jsontext.KindAt(b, i) != jsontext.KindObject {
				return reqErr("context", ErrBadRequest, "want a JSON object, found %s", jsontext.Describe(b, i))
			}
			end, err := jsontext.Skip(b, i)
			if err != nil {
				return malformed("context", err)
			}
			dst.Context, i = b[i:end], end
		case "candidates":
			bit = 2
			if jsontext.KindAt(b, i) != jsontext.KindArray {
				return reqErr("candidates", ErrBadRequest, "want a JSON array of objects, found %s", jsontext.Describe(b, i))
			}
			j, more := jsontext.Open(b, i)
			for n := 0; more; n++ {
				if maxCandidates > 0 && n == maxCandidates {
					return reqErr("candidates", ErrTooManyCandidates,
						"more than %d candidates: the limit is %d per request", maxCandidates, maxCandidates)
				}
				if jsontext.KindAt(b, j) != jsontext.KindObject {
					return reqErr(indexField("candidates", n), ErrBadRequest, "want a JSON object, found %s", jsontext.Describe(b, j))
				}
				var end int
				if strict {
					end, err = jsontext.Skip(b, j)
				} else {
					end, err = jsontext.Span(b, j)
				}
				if err != nil {
					return malformed("candidates", err)
				}
				dst.Candidates = append(dst.Candidates, b[j:end])
				if j, more, err = jsontext.Next(b, end, ']'); err != nil {
					return malformed("candidates", err)
				}
			}
			i = j
		case "objectives":
			bit = 4
			if jsontext.IsLiteral(b, i, "null") {
				i += 4
				break
			}
			if jsontext.KindAt(b, i) != jsontext.KindArray {
				return reqErr("objectives", ErrBadRequest, "want a JSON array of strings, found %s", jsontext.Describe(b, i))
			}
			j, more := jsontext.Open(b, i)
			for n := 0; more; n++ {
				if jsontext.KindAt(b, j) != jsontext.KindString {
					return reqErr(indexField("objectives", n), ErrBadRequest, "want a string, found %s", jsontext.Describe(b, j))
				}
				str, end, err := dst.sc.String(b, j)
				if err != nil {
					return malformed(indexField("objectives", n), err)
				}
				dst.Objectives = append(dst.Objectives, string(str))
				if j, more, err = jsontext.Next(b, end, ']'); err != nil {
					return malformed("objectives", err)
				}
			}
			i = j
		case "top_k":
			bit = 8
			if jsontext.IsLiteral(b, i, "null") {
				i += 4
				break
			}
			if jsontext.KindAt(b, i) != jsontext.KindNumber {
				return reqErr("top_k", ErrBadRequest, "want a number, found %s", jsontext.Describe(b, i))
			}
			end, _, err := jsontext.Number(b, i)
			if err != nil {
				return malformed("top_k", err)
			}
			k, err := strconv.Atoi(string(b[i:end]))
			if err != nil || k < 0 {
				return reqErr("top_k", ErrBadRequest, "want a non-negative integer, found %s", b[i:end])
			}
			dst.TopK, i = k, end
		default:
			return reqErr(string(key), ErrBadRequest, "unknown key (want context, candidates, objectives, top_k)")
		}
		if seen&bit != 0 {
			return reqErr(string(key), ErrBadRequest, "key appears twice")
		}
		seen |= bit
		if i, more, err = jsontext.Next(b, i, '}'); err != nil {
			return malformed("", err)
		}
	}
	if i = jsontext.SkipSpace(b, i); i != len(b) {
		return reqErr("", ErrBadRequest, "malformed JSON at offset %d: data after the request object", i)
	}
	if seen&2 == 0 {
		return reqErr("candidates", ErrBadRequest, "missing (want a JSON array of candidate objects)")
	}
	return nil
}

// strictErr is the error of a request whose candidates were split
// without being checked (decodeRequest without strict) and that failed
// with err: DecodeRequest's error when it finds one (a malformed
// candidate, before any error after it), else err. Only failed requests
// pay for the second scan.
func strictErr(body []byte, maxCandidates int, err error) error {
	var req Request
	if serr := DecodeRequest(&req, body, maxCandidates); serr != nil {
		return serr
	}
	return err
}

// malformed turns a syntax error of the scanner into a RequestError for
// field.
func malformed(field string, err error) error {
	if se, ok := err.(*jsontext.SyntaxError); ok {
		return reqErr(field, ErrBadRequest, "malformed JSON at offset %d: %s", se.Offset, se.Msg)
	}
	return reqErr(field, ErrBadRequest, "%v", err)
}

func indexField(name string, i int) string {
	return name + "[" + strconv.Itoa(i) + "]"
}

// objectNumber finds key among the top-level keys of the JSON object obj
// (already validated) and parses its value as a number. found is false
// when the key is absent or null; err is set when the value is not a
// number. A later duplicate key wins, as in the event decoder.
func objectNumber(sc *jsontext.Scanner, obj []byte, key string) (v float64, found bool, err error) {
	sc.Buf = sc.Buf[:0]
	i, more := jsontext.Open(obj, 0)
	for more {
		k, j, err := sc.Key(obj, i)
		if err != nil {
			return 0, false, err
		}
		switch {
		case string(k) != key:
			if j, err = jsontext.Skip(obj, j); err != nil {
				return 0, false, err
			}
		case jsontext.IsLiteral(obj, j, "null"):
			found = false
			j += 4
		case jsontext.KindAt(obj, j) != jsontext.KindNumber:
			return 0, false, fmt.Errorf("want a number, found %s", jsontext.Describe(obj, j))
		default:
			end, _, err := jsontext.Number(obj, j)
			if err != nil {
				return 0, false, err
			}
			x, perr := strconv.ParseFloat(string(obj[j:end]), 64)
			if perr != nil {
				return 0, false, fmt.Errorf("number %s out of range", obj[j:end])
			}
			v, found, j = x, true, end
		}
		if i, more, err = jsontext.Next(obj, j, '}'); err != nil {
			return 0, false, err
		}
	}
	return v, found, nil
}
