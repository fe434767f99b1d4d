//go:build unix

package pipelines

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrRootInUse is returned when another stream process runs on the same
// model root.
var ErrRootInUse = errors.New("pipelines: stream: the model root is in use by another stream")

// lockRoot takes an exclusive lock on root (flock on its lockFile), held
// until release is called or the process ends, however it ends: holding it
// proves that no earlier run on root is still alive.
func lockRoot(root string) (release func(), err error) {
	path := filepath.Join(root, lockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pipelines: stream: lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s is locked)", ErrRootInUse, path)
		}
		return nil, fmt.Errorf("pipelines: stream: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
