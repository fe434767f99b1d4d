package bundle

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
)

// ErrTooLarge is wrapped by the error about a version whose model would
// take more memory than Limits.MaxBytes allows.
var ErrTooLarge = errors.New("bundle: model over the memory budget")

// fallbackMaxBytes is the budget where the machine's memory is unknown.
const fallbackMaxBytes = 4 << 30

// Limits bound what reading a version may allocate.
type Limits struct {
	// MaxBytes bounds one model's memory: its tensors (exactly what the
	// weights' data section holds, mmoe.SizeOf) plus the size of its
	// manifest. A version over it is refused before its weights are read.
	// Default (0): DefaultMaxBytes().
	MaxBytes int64
}

// Validate reports whether the limits are usable.
func (l Limits) Validate() error {
	if l.MaxBytes < 0 {
		return fmt.Errorf("bundle: Limits.MaxBytes %d: want >= 0 (0: the default)", l.MaxBytes)
	}
	return nil
}

func (l Limits) maxBytes() int64 {
	if l.MaxBytes > 0 {
		return l.MaxBytes
	}
	return DefaultMaxBytes()
}

// DefaultMaxBytes is the default model budget: a quarter of the memory
// this process may use (the machine's RAM, or its cgroup's memory limit
// when lower), or 4 GiB where that is unknown. A quarter because a server
// holds two models while it swaps one for the next, and Go's collector
// lets the heap grow to twice what is live (GOGC=100) before it collects.
var DefaultMaxBytes = sync.OnceValue(func() int64 {
	mem := totalMemory()
	if lim := cgroupLimit(); lim > 0 && (mem <= 0 || lim < mem) {
		mem = lim
	}
	if mem <= 0 {
		return fallbackMaxBytes
	}
	return mem / 4
})

// cgroupLimit is the memory limit of the process's cgroup (v2, else v1),
// or 0 when there is none.
func cgroupLimit() int64 {
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err == nil && n > 0 {
			return n // "max" (no limit) does not parse
		}
	}
	return 0
}

// ReadModel reads the weights of the version in dir into a new model of
// m.Model for layout and heads (the transform's layout and the tasks'
// names, which the caller builds from m). Every check runs before
// anything is allocated in proportion to the model:
//
//   - the configuration's footprint (mmoe.SizeOf) plus the manifest must
//     fit lim.MaxBytes, else the error wraps ErrTooLarge;
//   - the weights file must have the size and checksum m.Files records
//     (Verify), else the error wraps ErrCorrupt;
//   - its header must describe exactly the model's tensors and the file's
//     length (mmoe.NewFromSafetensors), else the error wraps
//     mmoe.ErrFormat.
//
// A delta version (m.Delta) is read by following its chain back to its
// snapshot (each parent checked: ErrChain), reading the snapshot's
// weights as above and applying each delta in order (ReadModelFrom).
func ReadModel(dir string, m *Manifest, layout features.Layout, heads []string, lim Limits) (*mmoe.Model, error) {
	return ReadModelFrom(dir, m, layout, heads, lim, nil)
}

// ReadModelFrom is ReadModel, where a delta's chain may start from base
// or one of base.Next (models loaded before) when the chain passes
// through its version: the deltas after it are applied to a copy of a
// read-only base, which is left unchanged, or onto a Writable base's
// model itself, which is then the model returned. A full version, a
// chain's snapshot, or the copy of a read-only base is written into the
// storage of a Writable base (of base and its Next) whose tensors take
// the same sizes (mmoe.Model.Fits) rather than into new memory. base may
// be nil.
func ReadModelFrom(dir string, m *Manifest, layout features.Layout, heads []string, lim Limits, base *Base) (*mmoe.Model, error) {
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	if m.Delta == nil {
		return readWeights(dir, m, layout, heads, lim, base.storage(m, layout, heads))
	}
	fp, err := mmoe.SizeOf(m.Model, layout, heads)
	if err != nil {
		return nil, fmt.Errorf("bundle: %s: %w", dir, err)
	}
	if need, budget := addSat(fp.Bytes(), m.size), lim.maxBytes(); need > budget {
		return nil, fmt.Errorf("%w: %s: the model needs %s (%d tensors of %s, and a %s manifest), the budget is %s",
			ErrTooLarge, dir, formatBytes(need), fp.Tensors, formatBytes(fp.Bytes()), formatBytes(m.size), formatBytes(budget))
	}
	return readDeltaModel(dir, m, layout, heads, lim, base)
}

// readWeights is ReadModel for a full version.
// It reads into into's storage when into is not nil (storage).
func readWeights(dir string, m *Manifest, layout features.Layout, heads []string, lim Limits, into *mmoe.Model) (*mmoe.Model, error) {
	fp, err := mmoe.SizeOf(m.Model, layout, heads)
	if err != nil {
		return nil, fmt.Errorf("bundle: %s: %w", dir, err)
	}
	if need, budget := addSat(fp.Bytes(), m.size), lim.maxBytes(); need > budget {
		return nil, fmt.Errorf("%w: %s: the model needs %s (%d tensors of %s, and a %s manifest), the budget is %s",
			ErrTooLarge, dir, formatBytes(need), fp.Tensors, formatBytes(fp.Bytes()), formatBytes(m.size), formatBytes(budget))
	}
	if err := Verify(dir, m, WeightsFile); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(dir, WeightsFile))
	if err != nil {
		return nil, fmt.Errorf("bundle: %s: %w", dir, err)
	}
	defer f.Close()
	model, err := mmoe.NewFromSafetensorsInto(m.Model, layout, heads, f, into)
	if err != nil {
		return nil, fmt.Errorf("bundle: %s: %s: %w", dir, WeightsFile, err)
	}
	return model, nil
}

// formatBytes renders n bytes for people: "1.5 GiB", "170.2 MiB", "512 B".
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[i])
}

func addSat(a, b int64) int64 {
	if s := a + b; s >= a {
		return s
	}
	return 1<<63 - 1
}
