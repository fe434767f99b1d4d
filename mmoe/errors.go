package mmoe

import (
	"errors"
	"fmt"
)

var (
	// ErrConfig is wrapped by every error about an invalid Config, Layout or
	// head list.
	ErrConfig = errors.New("mmoe: invalid configuration")
	// ErrBatch is wrapped by every error about a batch, gradient or workspace
	// that does not match the model.
	ErrBatch = errors.New("mmoe: batch does not match the model")
	// ErrFormat is wrapped by every error about a safetensors file that does
	// not match the model or is malformed or truncated.
	ErrFormat = errors.New("mmoe: bad safetensors file")
)

// kindError carries a complete message and unwraps to one of the sentinels
// (and, optionally, an underlying cause).
type kindError struct {
	msg   string
	kind  error
	cause error
}

func (e *kindError) Error() string { return e.msg }

func (e *kindError) Unwrap() []error {
	if e.cause != nil {
		return []error{e.kind, e.cause}
	}
	return []error{e.kind}
}

func configErr(format string, args ...any) error {
	return &kindError{msg: "mmoe: config: " + fmt.Sprintf(format, args...), kind: ErrConfig}
}

func batchErr(format string, args ...any) error {
	return &kindError{msg: "mmoe: " + fmt.Sprintf(format, args...), kind: ErrBatch}
}

func formatErr(cause error, format string, args ...any) error {
	msg := "mmoe: safetensors: " + fmt.Sprintf(format, args...)
	if cause != nil {
		msg += ": " + cause.Error()
	}
	return &kindError{msg: msg, kind: ErrFormat, cause: cause}
}
