package join

import (
	"strconv"

	"github.com/cespare/xxhash/v2"

	"github.com/onestone/onestone/ingest"
)

// Topic is one of the join's three inputs.
type Topic uint8

// The inputs.
const (
	Impressions Topic = iota
	Clicks
	Conversions
	numTopics
)

// String returns "impressions", "clicks" or "conversions".
func (t Topic) String() string {
	switch t {
	case Impressions:
		return "impressions"
	case Clicks:
		return "clicks"
	case Conversions:
		return "conversions"
	}
	return "topic(" + strconv.Itoa(int(t)) + ")"
}

// Message is one message of one of the inputs: a Kafka record, or a line
// of a file (with offsets counted by the reader).
type Message struct {
	Topic     Topic
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
}

// Kind says why an example was emitted.
type Kind uint8

// Example kinds.
const (
	// Negative: the click window closed without a click (click 0,
	// conversion 0). Both emission modes.
	Negative Kind = iota
	// Click: EmitClick, at the click (click 1, conversion 0; the
	// conversion may come later).
	Click
	// Conversion: EmitClick, a clicked impression re-sent when its
	// conversion arrived (click 1, conversion 1). The click was trained
	// already: with ESMM the CTR task must skip this row (mtl
	// DelayedResend and DelayedFNW do).
	Conversion
	// Final: EmitLabel, a clicked impression with its final conversion
	// label (at the conversion, or when the conversion window closed).
	Final
	numKinds
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case Negative:
		return "negative"
	case Click:
		return "click"
	case Conversion:
		return "conversion"
	case Final:
		return "final"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Example is one joined training example.
type Example struct {
	Kind Kind
	// ID is HashID of the impression id.
	ID                uint64
	Click, Conversion bool
	// ImpressionTime, ClickTime and ConversionTime are event times (ms
	// since the epoch); 0 when there is none (a Click example has no
	// conversion time even if the conversion comes later).
	ImpressionTime, ClickTime, ConversionTime int64
	// EmitTime is the join's event clock when the example was emitted:
	// the largest event time consumed so far. EmitTime minus the time of
	// the event that decided the label is the label's delay in event time.
	EmitTime int64
	// Evicted marks an example the state cap emitted before its window
	// closed.
	Evicted bool
	// Value is the impression message with the label keys added
	// ({..., "click":1, "conversion":0}): an event of the single
	// pre-joined topic's format, for features.JSONDecoder. It is valid
	// until the Output is Reset.
	Value []byte
}

// Output receives what Add, Advance and Finish produce. Reset it between
// uses; its buffers are reused, so a steady state allocates nothing. An
// Output is not safe for concurrent use.
type Output struct {
	// Examples in emission order.
	Examples []Example
	// DeadLetters are the messages the join could not use, with their
	// reason (the Reason* constants of this package and of ingest), in
	// the order they were classified. Their Key and Value are copies,
	// valid until Reset.
	DeadLetters []ingest.DeadLetter
	buf         []byte
}

// Reset empties the output; the Values of its examples and dead letters
// are then invalid.
func (o *Output) Reset() {
	o.Examples = o.Examples[:0]
	clear(o.DeadLetters)
	o.DeadLetters = o.DeadLetters[:0]
	o.buf = o.buf[:0]
}

// keep copies b into the output's buffer.
func (o *Output) keep(b []byte) []byte {
	if b == nil {
		return nil
	}
	s := len(o.buf)
	o.buf = append(o.buf, b...)
	return o.buf[s:len(o.buf):len(o.buf)]
}

// HashID is the 64-bit key the join identifies an impression id by:
// xxhash64 of its text (a JSON string's contents, or a number's text).
// Two ids with the same hash are taken as one; for n live ids the chance
// that any two collide is about n²/2^65 (3·10^-8 for a million).
func HashID(id string) uint64 { return xxhash.Sum64String(id) }

// isSpace reports JSON whitespace.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// appendLabelled appends the JSON object obj (already validated) with the
// pre-encoded label members added before its closing brace. Keys already
// in obj are overridden: features.JSONDecoder keeps the last value.
func appendLabelled(dst, obj, members []byte) []byte {
	end := len(obj)
	for end > 0 && isSpace(obj[end-1]) {
		end--
	}
	body := obj[:end-1] // without '}'
	k := len(body)
	for k > 0 && isSpace(body[k-1]) {
		k--
	}
	dst = append(dst, body[:k]...)
	if k > 0 && body[k-1] != '{' {
		dst = append(dst, ',')
	}
	dst = append(dst, members...)
	return append(dst, '}')
}
