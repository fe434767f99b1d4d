package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// ManifestSumFile is the manifest's own checksum, beside it: the manifest
// cannot hold a checksum of itself. It is a FileSum as JSON.
const ManifestSumFile = ManifestFile + ".crc32c"

// ErrCorrupt is wrapped by every error about a file whose size or checksum
// differs from what its version recorded: a flipped bit, a truncated or
// half-copied file, or an edit.
var ErrCorrupt = errors.New("bundle: file does not match its checksum")

// castagnoli is CRC-32C, the checksum of iSCSI, ext4, GCS and S3
// (x-amz-checksum-crc32c): SSE4.2 and ARMv8 compute it in hardware, which
// hash/crc32 uses.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// FileSum is the size and CRC-32C of a file.
type FileSum struct {
	Size int64 `json:"size"`
	// CRC32C is the checksum as 8 lowercase hexadecimal digits (the 4
	// bytes big-endian: S3 and GCS give the same 4 bytes in base64).
	CRC32C string `json:"crc32c"`
}

// summer counts and checksums what is written through it.
type summer struct {
	w io.Writer
	h hash.Hash32
	n int64
}

func newSummer(w io.Writer) *summer { return &summer{w: w, h: crc32.New(castagnoli)} }

func (s *summer) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.h.Write(p[:n])
	s.n += int64(n)
	return n, err
}

func (s *summer) sum() FileSum { return FileSum{Size: s.n, CRC32C: hexSum(s.h.Sum32())} }

func hexSum(c uint32) string { return fmt.Sprintf("%08x", c) }

// sumOf returns the FileSum of data.
func sumOf(data []byte) FileSum {
	return FileSum{Size: int64(len(data)), CRC32C: hexSum(crc32.Checksum(data, castagnoli))}
}

// Verify checks the file name of the version in dir against the size and
// checksum m.Files records for it: the size first (a stat), then the
// checksum (one read of the file). A manifest that records checksums
// must record one for every file a reader uses: a file it lacks is an
// error. A manifest without checksums (written before they existed,
// Manifest.Verified false) verifies nothing and returns nil. Errors about
// the contents wrap ErrCorrupt.
func Verify(dir string, m *Manifest, name string) error {
	if m.Files == nil {
		return nil
	}
	want, ok := m.Files[name]
	if !ok {
		return fmt.Errorf("%w: %s: %s has no checksum in %s", ErrCorrupt, dir, name, ManifestFile)
	}
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return fmt.Errorf("bundle: %s: %w", dir, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("bundle: %s: %w", dir, err)
	}
	if st.Size() != want.Size {
		return fmt.Errorf("%w: %s: %s has %d bytes, %s records %d (truncated or still being copied?)",
			ErrCorrupt, dir, name, st.Size(), ManifestFile, want.Size)
	}
	h := crc32.New(castagnoli)
	n, err := io.CopyBuffer(h, f, make([]byte, min(want.Size, 1<<20)+1))
	if err != nil {
		return fmt.Errorf("bundle: %s: %s: %w", dir, name, err)
	}
	if got := hexSum(h.Sum32()); n != want.Size || got != want.CRC32C {
		return fmt.Errorf("%w: %s: %s: %d bytes of CRC-32C %s, %s records %d bytes of %s",
			ErrCorrupt, dir, name, n, got, ManifestFile, want.Size, want.CRC32C)
	}
	return nil
}

// checkManifestSum checks the manifest's bytes against its sidecar
// (ManifestSumFile) when there is one, and reports whether there was.
func checkManifestSum(dir string, data []byte) (found bool, err error) {
	side, err := os.ReadFile(filepath.Join(dir, ManifestSumFile))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("bundle: %s: %w", dir, err)
	}
	var want FileSum
	dec := json.NewDecoder(bytes.NewReader(side))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&want); err != nil || dec.More() {
		return true, fmt.Errorf("%w: %s: %s is not a checksum: %q", ErrCorrupt, dir, ManifestSumFile, side)
	}
	if got := sumOf(data); got != want {
		return true, fmt.Errorf("%w: %s: %s: %d bytes of CRC-32C %s, %s records %d bytes of %s",
			ErrCorrupt, dir, ManifestFile, got.Size, got.CRC32C, ManifestSumFile, want.Size, want.CRC32C)
	}
	return true, nil
}
