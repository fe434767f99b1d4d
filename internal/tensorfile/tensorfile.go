// Package tensorfile reads and writes named float32 and int32 vectors in the
// safetensors layout (an 8-byte little-endian header length, a JSON header
// of names, dtypes, shapes and byte offsets, then the raw little-endian
// data). It holds checkpoint state that is not model weights.
package tensorfile

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
)

// ErrFormat is returned for a malformed file.
var ErrFormat = errors.New("tensorfile: malformed file")

type entry struct {
	DType   string   `json:"dtype"`
	Shape   []int    `json:"shape"`
	Offsets [2]int64 `json:"data_offsets"`
}

// Write writes f32 and i32 vectors, sorted by name.
func Write(w io.Writer, f32 map[string][]float32, i32 map[string][]int32) error {
	names := make([]string, 0, len(f32)+len(i32))
	for n := range f32 {
		names = append(names, n)
	}
	for n := range i32 {
		if _, dup := f32[n]; dup {
			return fmt.Errorf("tensorfile: %q is both float32 and int32", n)
		}
		names = append(names, n)
	}
	slices.Sort(names)
	hdr := make(map[string]entry, len(names))
	var off int64
	for _, n := range names {
		if v, ok := f32[n]; ok {
			hdr[n] = entry{"F32", []int{len(v)}, [2]int64{off, off + 4*int64(len(v))}}
			off += 4 * int64(len(v))
		} else {
			v := i32[n]
			hdr[n] = entry{"I32", []int{len(v)}, [2]int64{off, off + 4*int64(len(v))}}
			off += 4 * int64(len(v))
		}
	}
	hb, err := json.Marshal(hdr)
	if err != nil {
		return fmt.Errorf("tensorfile: %w", err)
	}
	for len(hb)%8 != 0 {
		hb = append(hb, ' ')
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(len(hb)))
	bw.Write(l[:])
	bw.Write(hb)
	var b [4]byte
	for _, n := range names {
		if v, ok := f32[n]; ok {
			for _, x := range v {
				binary.LittleEndian.PutUint32(b[:], math.Float32bits(x))
				bw.Write(b[:])
			}
		} else {
			for _, x := range i32[n] {
				binary.LittleEndian.PutUint32(b[:], uint32(x))
				bw.Write(b[:])
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("tensorfile: %w", err)
	}
	return nil
}

// Read reads a file written by Write. The whole header is checked before
// any vector is allocated: names, dtypes, and offsets that tile the data
// section. When r is an io.Seeker (a file) the data section must also
// have exactly the length the header gives, so a corrupt header cannot
// make Read allocate more than the file holds; otherwise vectors grow as
// their data arrive.
func Read(r io.Reader) (f32 map[string][]float32, i32 map[string][]int32, err error) {
	size := int64(-1)
	if sk, ok := r.(io.Seeker); ok {
		if cur, err := sk.Seek(0, io.SeekCurrent); err == nil {
			if end, err := sk.Seek(0, io.SeekEnd); err == nil {
				size = end - cur
			}
			if _, err := sk.Seek(cur, io.SeekStart); err != nil {
				return nil, nil, fmt.Errorf("%w: seek: %v", ErrFormat, err)
			}
		}
	}
	br := bufio.NewReaderSize(r, 1<<16)
	var l [8]byte
	if _, err := io.ReadFull(br, l[:]); err != nil {
		return nil, nil, fmt.Errorf("%w: header length: %v", ErrFormat, err)
	}
	n := binary.LittleEndian.Uint64(l[:])
	if n > 64<<20 || (size >= 0 && n > uint64(size)) {
		return nil, nil, fmt.Errorf("%w: header of %d bytes", ErrFormat, n)
	}
	hb := make([]byte, n)
	if _, err := io.ReadFull(br, hb); err != nil {
		return nil, nil, fmt.Errorf("%w: header: %v", ErrFormat, err)
	}
	var hdr map[string]entry
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return nil, nil, fmt.Errorf("%w: header: %v", ErrFormat, err)
	}
	names := make([]string, 0, len(hdr))
	for n := range hdr {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		ea, eb := hdr[a].Offsets, hdr[b].Offsets
		if ea[0] != eb[0] {
			return cmp.Compare(ea[0], eb[0])
		}
		return cmp.Compare(ea[1], eb[1]) // empty tensors first at a shared offset
	})
	var off int64
	for _, name := range names {
		e := hdr[name]
		cnt := (e.Offsets[1] - e.Offsets[0]) / 4
		if e.Offsets[0] != off || e.Offsets[1] < e.Offsets[0] || (e.Offsets[1]-e.Offsets[0])%4 != 0 ||
			len(e.Shape) != 1 || int64(e.Shape[0]) != cnt || cnt > 1<<31 {
			return nil, nil, fmt.Errorf("%w: tensor %q: bad offsets or shape", ErrFormat, name)
		}
		if e.DType != "F32" && e.DType != "I32" {
			return nil, nil, fmt.Errorf("%w: tensor %q: dtype %q", ErrFormat, name, e.DType)
		}
		off = e.Offsets[1]
	}
	if size >= 0 && size != 8+int64(n)+off {
		return nil, nil, fmt.Errorf("%w: %d bytes, the header describes %d", ErrFormat, size, 8+int64(n)+off)
	}
	f32, i32 = map[string][]float32{}, map[string][]int32{}
	for _, name := range names {
		e := hdr[name]
		cnt := int((e.Offsets[1] - e.Offsets[0]) / 4)
		// The exact length when the file's size vouches for it; otherwise
		// at most a chunk more than the data read so far.
		capHint := cnt
		if size < 0 {
			capHint = min(cnt, 1<<16)
		}
		if e.DType == "F32" {
			f32[name], err = readVector(br, cnt, capHint, math.Float32frombits)
		} else {
			i32[name], err = readVector(br, cnt, capHint, func(w uint32) int32 { return int32(w) })
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: tensor %q truncated", ErrFormat, name)
		}
	}
	return f32, i32, nil
}

// readVector reads cnt little-endian 32-bit words, converted by conv, into
// a slice of initial capacity capHint that grows as they arrive.
func readVector[T any](br *bufio.Reader, cnt, capHint int, conv func(uint32) T) ([]T, error) {
	out := make([]T, 0, capHint)
	var b [4]byte
	for range cnt {
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return nil, err
		}
		out = append(out, conv(binary.LittleEndian.Uint32(b[:])))
	}
	return out, nil
}
