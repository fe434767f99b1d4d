// Package tensorfile reads and writes named vectors of float32, int32,
// int64 and uint64 in the safetensors layout (an 8-byte little-endian
// header length, a JSON header of names, dtypes, shapes and byte offsets,
// then the raw little-endian data). It holds the state that is not model
// weights: a checkpoint's optimizer tensors and the id maps of exact
// tables.
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

// Tensors are named vectors, one map per dtype (safetensors "F32", "I32",
// "I64", "U64"). A name appears in one map only. Nil maps are empty.
type Tensors struct {
	F32 map[string][]float32
	I32 map[string][]int32
	I64 map[string][]int64
	U64 map[string][]uint64
}

type entry struct {
	DType   string   `json:"dtype"`
	Shape   []int    `json:"shape"`
	Offsets [2]int64 `json:"data_offsets"`
}

// width is the bytes per element of a dtype, 0 for an unknown one.
func width(dtype string) int64 {
	switch dtype {
	case "F32", "I32":
		return 4
	case "I64", "U64":
		return 8
	}
	return 0
}

// Write writes the vectors of t, sorted by name.
func Write(w io.Writer, t Tensors) error {
	dtypes := map[string]string{}
	lens := map[string]int{}
	add := func(dtype, n string, l int) error {
		if d, dup := dtypes[n]; dup {
			return fmt.Errorf("tensorfile: %q is both %s and %s", n, d, dtype)
		}
		dtypes[n], lens[n] = dtype, l
		return nil
	}
	for n, v := range t.F32 {
		add("F32", n, len(v))
	}
	for n, v := range t.I32 {
		if err := add("I32", n, len(v)); err != nil {
			return err
		}
	}
	for n, v := range t.I64 {
		if err := add("I64", n, len(v)); err != nil {
			return err
		}
	}
	for n, v := range t.U64 {
		if err := add("U64", n, len(v)); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(dtypes))
	for n := range dtypes {
		names = append(names, n)
	}
	slices.Sort(names)
	hdr := make(map[string]entry, len(names))
	var off int64
	for _, n := range names {
		size := width(dtypes[n]) * int64(lens[n])
		hdr[n] = entry{dtypes[n], []int{lens[n]}, [2]int64{off, off + size}}
		off += size
	}
	hb, err := json.Marshal(hdr)
	if err != nil {
		return fmt.Errorf("tensorfile: %w", err)
	}
	for len(hb)%8 != 0 {
		hb = append(hb, ' ')
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(len(hb)))
	bw.Write(b[:])
	bw.Write(hb)
	for _, n := range names {
		switch dtypes[n] {
		case "F32":
			for _, x := range t.F32[n] {
				bw.Write(binary.LittleEndian.AppendUint32(b[:0], math.Float32bits(x)))
			}
		case "I32":
			for _, x := range t.I32[n] {
				bw.Write(binary.LittleEndian.AppendUint32(b[:0], uint32(x)))
			}
		case "I64":
			for _, x := range t.I64[n] {
				bw.Write(binary.LittleEndian.AppendUint64(b[:0], uint64(x)))
			}
		case "U64":
			for _, x := range t.U64[n] {
				bw.Write(binary.LittleEndian.AppendUint64(b[:0], x))
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
// their data arrive. Every map of the result is non-nil.
func Read(r io.Reader) (Tensors, error) {
	size := int64(-1)
	if sk, ok := r.(io.Seeker); ok {
		if cur, err := sk.Seek(0, io.SeekCurrent); err == nil {
			if end, err := sk.Seek(0, io.SeekEnd); err == nil {
				size = end - cur
			}
			if _, err := sk.Seek(cur, io.SeekStart); err != nil {
				return Tensors{}, fmt.Errorf("%w: seek: %v", ErrFormat, err)
			}
		}
	}
	br := bufio.NewReaderSize(r, 1<<16)
	var l [8]byte
	if _, err := io.ReadFull(br, l[:]); err != nil {
		return Tensors{}, fmt.Errorf("%w: header length: %v", ErrFormat, err)
	}
	n := binary.LittleEndian.Uint64(l[:])
	if n > 64<<20 || (size >= 0 && n > uint64(size)) {
		return Tensors{}, fmt.Errorf("%w: header of %d bytes", ErrFormat, n)
	}
	hb := make([]byte, n)
	if _, err := io.ReadFull(br, hb); err != nil {
		return Tensors{}, fmt.Errorf("%w: header: %v", ErrFormat, err)
	}
	var hdr map[string]entry
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return Tensors{}, fmt.Errorf("%w: header: %v", ErrFormat, err)
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
		w := width(e.DType)
		if w == 0 {
			return Tensors{}, fmt.Errorf("%w: tensor %q: dtype %q", ErrFormat, name, e.DType)
		}
		cnt := (e.Offsets[1] - e.Offsets[0]) / w
		if e.Offsets[0] != off || e.Offsets[1] < e.Offsets[0] || (e.Offsets[1]-e.Offsets[0])%w != 0 ||
			len(e.Shape) != 1 || int64(e.Shape[0]) != cnt || cnt > 1<<31 {
			return Tensors{}, fmt.Errorf("%w: tensor %q: bad offsets or shape", ErrFormat, name)
		}
		off = e.Offsets[1]
	}
	if size >= 0 && size != 8+int64(n)+off {
		return Tensors{}, fmt.Errorf("%w: %d bytes, the header describes %d", ErrFormat, size, 8+int64(n)+off)
	}
	t := Tensors{F32: map[string][]float32{}, I32: map[string][]int32{}, I64: map[string][]int64{}, U64: map[string][]uint64{}}
	for _, name := range names {
		e := hdr[name]
		cnt := int((e.Offsets[1] - e.Offsets[0]) / width(e.DType))
		// The exact length when the file's size vouches for it; otherwise
		// at most a chunk more than the data read so far.
		capHint := cnt
		if size < 0 {
			capHint = min(cnt, 1<<16)
		}
		var err error
		switch e.DType {
		case "F32":
			t.F32[name], err = readVector(br, cnt, capHint, math.Float32frombits)
		case "I32":
			t.I32[name], err = readVector(br, cnt, capHint, func(w uint32) int32 { return int32(w) })
		case "I64":
			t.I64[name], err = readVector(br, cnt, capHint, func(w uint64) int64 { return int64(w) })
		case "U64":
			t.U64[name], err = readVector(br, cnt, capHint, func(w uint64) uint64 { return w })
		}
		if err != nil {
			return Tensors{}, fmt.Errorf("%w: tensor %q truncated", ErrFormat, name)
		}
	}
	return t, nil
}

// readVector reads cnt little-endian words (32- or 64-bit, as conv
// takes), converted by conv, into a slice of initial capacity capHint
// that grows as they arrive.
func readVector[W uint32 | uint64, T any](br *bufio.Reader, cnt, capHint int, conv func(W) T) ([]T, error) {
	out := make([]T, 0, capHint)
	var b [8]byte
	var zero W
	w := 4
	if any(zero) == any(uint64(0)) {
		w = 8
	}
	for range cnt {
		if _, err := io.ReadFull(br, b[:w]); err != nil {
			return nil, err
		}
		if w == 4 {
			out = append(out, conv(W(binary.LittleEndian.Uint32(b[:4]))))
		} else {
			out = append(out, conv(W(binary.LittleEndian.Uint64(b[:]))))
		}
	}
	return out, nil
}
