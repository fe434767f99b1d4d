//go:build !unix

package pipelines

import "errors"

// ErrRootInUse is returned when another stream process runs on the same
// model root (never on this platform: see lockRoot).
var ErrRootInUse = errors.New("pipelines: stream: the model root is in use by another stream")

// lockRoot does nothing on this platform: two streams on one model root
// are not detected.
func lockRoot(string) (release func(), err error) { return func() {}, nil }
