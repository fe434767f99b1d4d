package mmoe

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"

	"github.com/onestone/onestone/internal/jsontext"
)

// maxHeader bounds the JSON header of a safetensors file (as the reference
// implementation does).
const maxHeader = 100 << 20

type tensorRef struct {
	name  string
	shape []int
	data  []float32
}

// tensors lists every dense parameter, then every embedding table.
func (m *Model) tensors() []tensorRef {
	var ts []tensorRef
	for _, p := range m.Params() {
		ts = append(ts, tensorRef{p.Name, p.Shape, p.Data})
	}
	for _, e := range m.Embeddings() {
		ts = append(ts, tensorRef{e.Name, []int{e.Rows, e.Dim}, e.Data})
	}
	return ts
}

// CopyFrom copies every dense parameter and embedding table of src into m:
// what saving src and loading the file into m would do, without the file.
// The models must have the same tensors (names and shapes); otherwise it is
// an error naming the first difference and m is unchanged.
func (m *Model) CopyFrom(src *Model) error {
	dst, from := m.tensors(), src.tensors()
	if len(dst) != len(from) {
		return fmt.Errorf("mmoe: copy: the models have %d and %d tensors", len(dst), len(from))
	}
	for i, t := range dst {
		if f := from[i]; f.name != t.name || !slices.Equal(f.shape, t.shape) {
			return fmt.Errorf("mmoe: copy: tensor %d is %q %v here, %q %v in the source", i, t.name, t.shape, f.name, f.shape)
		}
	}
	for i, t := range dst {
		copy(t.data, from[i].data)
	}
	return nil
}

// Clone returns a new model with m's configuration and a copy of every
// weight: changing one does not change the other. A delta is applied to
// a clone of the model served, which keeps serving meanwhile.
func (m *Model) Clone() (*Model, error) {
	return m.CloneInto(nil)
}

// CloneInto is Clone into the storage of old, a model nobody uses any
// more, when old's tensors take exactly m's sizes (Fits); otherwise, or
// when old is nil, into new memory. old must not be used after the call
// (NewFromSafetensorsInto).
func (m *Model) CloneInto(old *Model) (*Model, error) {
	c, err := planModel(m.cfg, m.layout, m.heads)
	if err != nil {
		return nil, err
	}
	if old != nil && old != m && old.fits(c) {
		c.arena, c.emb = old.arena, old.emb
	} else {
		c.allocate()
	}
	if err := c.CopyFrom(m); err != nil {
		return nil, err
	}
	return c, nil
}

// SaveSafetensors writes every dense parameter and embedding table in the
// safetensors format: an 8-byte little-endian header length, a JSON header
// mapping each name to {"dtype":"F32","shape":[...],"data_offsets":[begin,
// end]} (byte offsets into the data section, tensors contiguous in Params
// then Embeddings order) plus "__metadata__" {"format":"pt", "arch": ...},
// padded with spaces to a multiple of 8 bytes, then the little-endian float32
// data. PyTorch's safetensors.torch.load_file reads it.
func (m *Model) SaveSafetensors(w io.Writer) error {
	ts := m.tensors()
	var h bytes.Buffer
	h.WriteString(`{"__metadata__":{"format":"pt","arch":`)
	h.Write(jsontext.AppendString(nil, m.cfg.Arch))
	h.WriteString(`}`)
	var offset int64
	for _, t := range ts {
		h.WriteByte(',')
		h.Write(jsontext.AppendString(nil, t.name))
		h.WriteString(`:{"dtype":"F32","shape":[`)
		for i, s := range t.shape {
			if i > 0 {
				h.WriteByte(',')
			}
			h.WriteString(strconv.Itoa(s))
		}
		end := offset + 4*int64(len(t.data))
		fmt.Fprintf(&h, `],"data_offsets":[%d,%d]}`, offset, end)
		offset = end
	}
	h.WriteByte('}')
	for h.Len()%8 != 0 {
		h.WriteByte(' ')
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(h.Len()))
	bw.Write(n[:])
	bw.Write(h.Bytes())
	buf := make([]byte, 1<<16)
	for _, t := range ts {
		for d := t.data; len(d) > 0; {
			k := min(len(d), len(buf)/4)
			for i, v := range d[:k] {
				binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
			}
			if _, err := bw.Write(buf[:4*k]); err != nil {
				return fmt.Errorf("mmoe: safetensors: write %s: %w", t.name, err)
			}
			d = d[k:]
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("mmoe: safetensors: write: %w", err)
	}
	return nil
}

type stEntry struct {
	Dtype       string   `json:"dtype"`
	Shape       []int    `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
	name        string
}

// stFile is a safetensors file whose header has been read and checked:
// its tensors in data order, the size of the data section, and the reader
// at the start of the data.
type stFile struct {
	es   []stEntry
	data int64
	br   *bufio.Reader
}

// readSafetensors reads and checks the header of r. When r is an
// io.Seeker (a file) its size is checked against the header too, so a
// truncated file or trailing bytes are refused before any data is read.
func readSafetensors(r io.Reader) (*stFile, error) {
	size := int64(-1)
	if sk, ok := r.(io.Seeker); ok {
		if cur, err := sk.Seek(0, io.SeekCurrent); err == nil {
			if end, err := sk.Seek(0, io.SeekEnd); err == nil {
				size = end - cur
			}
			if _, err := sk.Seek(cur, io.SeekStart); err != nil {
				return nil, formatErr(err, "seek")
			}
		}
	}
	br := bufio.NewReaderSize(r, 1<<16)
	es, hl, data, err := readHeader(br)
	if err != nil {
		return nil, err
	}
	need := 8 + hl + data
	if size >= 0 && size < need {
		return nil, formatErr(io.ErrUnexpectedEOF, "file truncated: %d bytes, the header describes %d", size, need)
	}
	if size > need {
		return nil, formatErr(nil, "%d trailing bytes after the last tensor", size-need)
	}
	return &stFile{es: es, data: data, br: br}, nil
}

// readHeader reads and checks the header: F32 tensors whose offsets tile the
// data section from 0 without holes or overlaps, returned in data order,
// with the header's length and the data section's.
func readHeader(r io.Reader) (es []stEntry, header, data int64, err error) {
	var n [8]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, 0, 0, formatErr(err, "reading the header length")
	}
	hl := binary.LittleEndian.Uint64(n[:])
	if hl > maxHeader {
		return nil, 0, 0, formatErr(nil, "header length %d exceeds %d bytes", hl, maxHeader)
	}
	// Grow with the data actually present rather than trusting hl.
	hb, err := io.ReadAll(io.LimitReader(r, int64(hl)))
	if err != nil {
		return nil, 0, 0, formatErr(err, "reading the %d-byte header", hl)
	}
	if uint64(len(hb)) < hl {
		return nil, 0, 0, formatErr(io.ErrUnexpectedEOF, "reading the %d-byte header: file truncated after %d bytes", hl, len(hb))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(hb, &raw); err != nil {
		return nil, 0, 0, formatErr(err, "header is not a JSON object")
	}
	for name, v := range raw {
		if name == "__metadata__" {
			continue
		}
		var e stEntry
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return nil, 0, 0, formatErr(err, "tensor %q: bad header entry", name)
		}
		e.name = name
		if e.Dtype != "F32" {
			return nil, 0, 0, formatErr(nil, "tensor %q: dtype %q, want F32", name, e.Dtype)
		}
		numel := int64(1)
		for _, s := range e.Shape {
			if s < 0 || s > math.MaxInt32 {
				return nil, 0, 0, formatErr(nil, "tensor %q: bad shape %v", name, e.Shape)
			}
			numel = mulSat(numel, int64(s))
		}
		if e.DataOffsets[0] < 0 || e.DataOffsets[1]-e.DataOffsets[0] != mulSat(numel, 4) {
			return nil, 0, 0, formatErr(nil, "tensor %q: data_offsets %v do not hold shape %v of F32", name, e.DataOffsets, e.Shape)
		}
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b stEntry) int {
		if a.DataOffsets[0] != b.DataOffsets[0] {
			return int(min(max(a.DataOffsets[0]-b.DataOffsets[0], -1), 1))
		}
		return int(min(max(a.DataOffsets[1]-b.DataOffsets[1], -1), 1))
	})
	var at int64
	for _, e := range es {
		if e.DataOffsets[0] != at {
			return nil, 0, 0, formatErr(nil, "tensor %q: data_offsets %v: want begin %d (tensors must tile the data section)", e.name, e.DataOffsets, at)
		}
		at = e.DataOffsets[1]
	}
	return es, int64(hl), at, nil
}

// LoadSafetensors replaces every parameter and embedding table with the
// tensors of a file written by SaveSafetensors (or any safetensors writer
// using the same names). It checks the whole header first: a missing, extra
// or mis-shaped tensor, or a dtype other than F32, is an error naming it
// (wrapping ErrFormat) and leaves the model unchanged. When r is an
// io.Seeker (a file) its size is checked against the header too, so a
// truncated file also leaves the model unchanged; otherwise the data are read
// in place and a truncation, reported with the tensor it cut short, leaves
// the model partly loaded (load into a fresh model from New when that
// matters).
func (m *Model) LoadSafetensors(r io.Reader) error {
	_, _, err := m.load(r, true)
	return err
}

// LoadSafetensorsMatching loads every tensor of the file whose name and shape
// match one of the model's, and skips the rest: the warm start of a model
// from a related one (more tasks, another tower). It returns the names
// loaded, and the model's tensors that were not (missing from the file or of
// another shape).
func (m *Model) LoadSafetensorsMatching(r io.Reader) (loaded, skipped []string, err error) {
	return m.load(r, false)
}

func (m *Model) load(r io.Reader, strict bool) (loaded, skipped []string, err error) {
	f, err := readSafetensors(r)
	if err != nil {
		return nil, nil, err
	}
	found, skipped, err := m.match(f.es, strict)
	if err != nil {
		return nil, nil, err
	}
	loaded, err = m.readData(f, found)
	if err != nil {
		return nil, nil, err
	}
	return loaded, skipped, nil
}

// shapes lists the name and shape of every tensor of the model, in
// tensors() order, without touching their storage (which build has only
// planned when NewFromSafetensors checks a file).
func (m *Model) shapes() map[string][]int {
	out := make(map[string][]int, len(m.params)+len(m.layout.Sparse))
	for _, p := range m.params {
		out[p.name] = p.shape
	}
	for _, f := range m.layout.Sparse {
		out["embeddings."+f.Name+".weight"] = []int{f.Cardinality, m.dim}
	}
	return out
}

// match checks the file's tensors against the model's names and shapes and
// returns the names to load. Strict, any difference is an error; otherwise
// the model's tensors the file lacks (or has in another shape) are
// returned as skipped.
func (m *Model) match(es []stEntry, strict bool) (found map[string]bool, skipped []string, err error) {
	want := m.shapes()
	found = map[string]bool{}
	for _, e := range es {
		shape, ok := want[e.name]
		if !ok {
			if strict {
				return nil, nil, formatErr(nil, "tensor %q is not a parameter of this model", e.name)
			}
			continue
		}
		if !slices.Equal(shape, e.Shape) {
			if strict {
				return nil, nil, formatErr(nil, "tensor %q: shape %v, the model has %v", e.name, e.Shape, shape)
			}
			continue
		}
		found[e.name] = true
	}
	for _, p := range m.params {
		if !found[p.name] {
			if strict {
				return nil, nil, formatErr(nil, "tensor %q %v missing from the file", p.name, p.shape)
			}
			skipped = append(skipped, p.name)
		}
	}
	for _, f := range m.layout.Sparse {
		if name := "embeddings." + f.Name + ".weight"; !found[name] {
			if strict {
				return nil, nil, formatErr(nil, "tensor %q %v missing from the file", name, want[name])
			}
			skipped = append(skipped, name)
		}
	}
	return found, skipped, nil
}

// readData reads the data section of f into the model's tensors named in
// found, and skips the others.
func (m *Model) readData(f *stFile, found map[string]bool) (loaded []string, err error) {
	data := map[string][]float32{}
	for _, t := range m.tensors() {
		data[t.name] = t.data
	}
	br := f.br
	buf := make([]byte, 1<<16)
	for _, e := range f.es {
		size := e.DataOffsets[1] - e.DataOffsets[0]
		if !found[e.name] {
			if _, err := io.CopyN(io.Discard, br, size); err != nil {
				return nil, formatErr(truncated(err), "tensor %q: data", e.name)
			}
			continue
		}
		d := data[e.name]
		for len(d) > 0 {
			k := min(len(d), len(buf)/4)
			if _, err := io.ReadFull(br, buf[:4*k]); err != nil {
				return nil, formatErr(truncated(err), "tensor %q: data", e.name)
			}
			for i := range d[:k] {
				d[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
			}
			d = d[k:]
		}
		loaded = append(loaded, e.name)
	}
	if _, err := br.ReadByte(); err == nil {
		return nil, formatErr(nil, "trailing bytes after the last tensor")
	} else if !errors.Is(err, io.EOF) {
		return nil, formatErr(err, "reading past the last tensor")
	}
	return loaded, nil
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("file truncated: %w", io.ErrUnexpectedEOF)
	}
	return err
}
