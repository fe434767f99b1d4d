package ingest

import (
	"errors"
	"fmt"
	"io"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/parquet-go/parquet-go"
)

// physKind is the physical type of a leaf column we can read.
type physKind uint8

const (
	kindBool physKind = iota
	kindInt32
	kindInt64
	kindFloat
	kindDouble
	kindBytes
)

func (k physKind) arrowType() arrow.DataType {
	switch k {
	case kindBool:
		return arrow.FixedWidthTypes.Boolean
	case kindInt32:
		return arrow.PrimitiveTypes.Int32
	case kindInt64:
		return arrow.PrimitiveTypes.Int64
	case kindFloat:
		return arrow.PrimitiveTypes.Float32
	case kindDouble:
		return arrow.PrimitiveTypes.Float64
	default:
		return arrow.BinaryTypes.String
	}
}

// colLayout is how one projected top-level column is stored in a file: the
// leaf it reads, its kind and the definition levels that separate a null
// list, an empty list, a null element and a value.
type colLayout struct {
	leaf    int // leaf column index in the file
	kind    physKind
	list    bool // the column is a list of kind
	maxDef  byte // definition level of a present value
	maxRep  byte
	listDef byte // lists: definition level at which the list itself is present
	dict    bool // byte arrays (values or list elements) read as dictionary<int32, utf8>
}

// dictType is the Arrow type of a column read with ParquetConfig.Dictionary.
var dictType = &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}

// arrowType is the Arrow type the layout produces.
func (l colLayout) arrowType() arrow.DataType {
	elem := l.kind.arrowType()
	if l.dict {
		elem = dictType
	}
	if l.list {
		return arrow.ListOf(elem)
	}
	return elem
}

// layoutOf maps a top-level parquet column to a layout, or explains why it is
// not supported.
func layoutOf(top *parquet.Column) (l colLayout, err error) {
	defer func() {
		// parquet-go panics on some inconsistent schemas (a MAP-typed leaf).
		if r := recover(); r != nil {
			err = fmt.Errorf("invalid schema node: %v", r)
		}
	}()
	// Walk down single-child groups to the leaf, noting the repeated node.
	var def byte
	repeated := 0
	n := top
	for {
		if n.Repeated() {
			if repeated == 0 {
				l.listDef = def
			}
			repeated++
		}
		if n.Optional() || n.Repeated() {
			def++
		}
		if n.Leaf() {
			break
		}
		children := n.Columns()
		if len(children) != 1 {
			return l, fmt.Errorf("group with %d fields is not supported (only primitive columns and lists)", len(children))
		}
		n = children[0]
	}
	if repeated > 1 {
		return l, errors.New("nested lists are not supported")
	}
	if repeated == 0 && n != top {
		return l, errors.New("struct columns are not supported (only primitive columns and lists)")
	}
	l.list = repeated == 1
	l.leaf = n.Index()
	l.maxDef = byte(n.MaxDefinitionLevel())
	l.maxRep = byte(n.MaxRepetitionLevel())
	if l.maxDef != def {
		return l, fmt.Errorf("unexpected definition level %d (want %d)", l.maxDef, def)
	}
	switch n.Type().Kind() {
	case parquet.Boolean:
		l.kind = kindBool
	case parquet.Int32:
		l.kind = kindInt32
	case parquet.Int64:
		l.kind = kindInt64
	case parquet.Float:
		l.kind = kindFloat
	case parquet.Double:
		l.kind = kindDouble
	case parquet.ByteArray:
		l.kind = kindBytes
	default:
		return l, fmt.Errorf("physical type %s is not supported", n.Type().Kind())
	}
	return l, nil
}

// pageValues are the non-null values of the current page, either plain or as
// dictionary indexes into dictionary values.
type pageValues struct {
	n    int // number of values (indexes when dict)
	pos  int
	idx  []int32 // dictionary indexes, nil when plain
	dn   int     // number of dictionary values
	i32  []int32
	i64  []int64
	f32  []float32
	f64  []float64
	b    []bool
	data []byte
	offs []uint32
}

// load points v at the values of page p.
func (v *pageValues) load(kind physKind, p parquet.Page, boolScratch *[]bool, valScratch *[]parquet.Value) error {
	*v = pageValues{}
	src := p.Data()
	if d := p.Dictionary(); d != nil {
		v.idx = src.Int32()
		v.n = len(v.idx)
		src = d.Page().Data()
	}
	var count int
	switch kind {
	case kindInt32:
		v.i32 = src.Int32()
		count = len(v.i32)
	case kindInt64:
		v.i64 = src.Int64()
		count = len(v.i64)
	case kindFloat:
		v.f32 = src.Float()
		count = len(v.f32)
	case kindDouble:
		v.f64 = src.Double()
		count = len(v.f64)
	case kindBytes:
		v.data, v.offs = src.ByteArray()
		count = len(v.offs) - 1
		if count < 0 {
			count = 0
		}
	case kindBool:
		// Boolean pages are bit-packed with a possible bit offset: decode
		// them through the value reader (bool columns are rare).
		if v.idx != nil {
			return errors.New("dictionary-encoded booleans are not supported")
		}
		bs := (*boolScratch)[:0]
		vals := *valScratch
		if cap(vals) < 1024 {
			vals = make([]parquet.Value, 1024)
			*valScratch = vals
		}
		r := p.Values()
		for {
			n, err := r.ReadValues(vals[:cap(vals)])
			for _, x := range vals[:n] {
				if !x.IsNull() {
					bs = append(bs, x.Boolean())
				}
			}
			if err == io.EOF || (err == nil && n == 0) {
				break
			}
			if err != nil {
				return err
			}
		}
		*boolScratch = bs
		v.b = bs
		count = len(bs)
	}
	if v.idx == nil {
		v.n = count
	} else {
		v.dn = count
	}
	return nil
}

// growBuf is an Arrow buffer filled in place and handed over whole at the
// end of a batch, so values are copied once, from the page into Arrow.
type growBuf struct {
	buf  *memory.Buffer
	n    int // bytes used
	hint int // bytes used by the previous batch: the first reservation
}

// grow makes room for extra more bytes and returns the whole capacity.
func (g *growBuf) grow(mem memory.Allocator, extra int) []byte {
	need := g.n + extra
	if g.buf == nil {
		g.buf = memory.NewResizableBuffer(mem)
		g.buf.Reserve(max(need, g.hint+g.hint/32, 64))
	} else if need > g.buf.Cap() {
		g.buf.Reserve(max(need, g.buf.Cap()+g.buf.Cap()/4))
	}
	return g.buf.Buf()
}

// take hands the filled buffer over (nil when nothing was written) and
// starts afresh.
func (g *growBuf) take() *memory.Buffer {
	b := g.buf
	if b != nil {
		b.ResizeNoShrink(g.n)
		g.hint = g.n
	}
	g.buf, g.n = nil, 0
	return b
}

// release drops an unfinished buffer.
func (g *growBuf) release() {
	if g.buf != nil {
		g.buf.Release()
	}
	g.buf, g.n = nil, 0
}

// castTo views b as a slice of T (Arrow buffers are 64-byte aligned).
func castTo[T int32 | int64 | float32 | float64](b []byte) []T {
	var zero T
	size := int(unsafe.Sizeof(zero))
	if len(b) < size {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), len(b)/size)
}

func bytesOf[T int32 | int64 | float32 | float64](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(s[0])))
}

// bitmap is a validity bitmap built lazily: while every value is present
// there is none, and the first null materialises it.
type bitmap struct {
	g     growBuf
	on    bool
	nulls int
}

// grow makes room for bits [0, n+m) and clears the new bytes.
func (v *bitmap) grow(mem memory.Allocator, n, m int) []byte {
	need := (n + m + 7) >> 3
	b := v.g.grow(mem, need-v.g.n)
	if need > v.g.n {
		clear(b[v.g.n:need])
		v.g.n = need
	}
	return b
}

// present marks m values from bit n present.
func (v *bitmap) present(mem memory.Allocator, n, m int) {
	if !v.on {
		return
	}
	b := v.grow(mem, n, m)
	bitutil.SetBitsTo(b, int64(n), int64(m), true)
}

// null marks bit n null, materialising the bitmap on the first null.
func (v *bitmap) null(mem memory.Allocator, n int) {
	if !v.on {
		v.on = true
		b := v.grow(mem, 0, n+1)
		bitutil.SetBitsTo(b, 0, int64(n), true)
	} else {
		v.grow(mem, n, 1)
	}
	v.nulls++
}

func (v *bitmap) take() (*memory.Buffer, int) {
	nulls := v.nulls
	v.nulls = 0
	if !v.on {
		return nil, 0
	}
	v.on = false
	return v.g.take(), nulls
}

func (v *bitmap) release() {
	v.g.release()
	v.on, v.nulls = false, 0
}

// acc accumulates one Arrow array of a primitive kind directly in Arrow
// buffers from mem.
type acc struct {
	mem   memory.Allocator
	kind  physKind
	n     int
	valid bitmap
	vals  growBuf // fixed-width values, utf8 offsets (n+1 int32) or dictionary indexes
	data  growBuf // utf8 bytes (of the dictionary's values, with dict)
	b     []bool  // booleans, packed at the end

	// dict builds a dictionary<int32, utf8> array: vals holds the
	// indexes, data and doffs the batch's dictionary, dn values long.
	// remap maps an index of the column chunk's dictionary to the
	// batch's: entry gen<<32 | index when the value is in this batch's
	// dictionary (gen counts batches from 1, so 0 is never current).
	dict  bool
	doffs growBuf
	dn    int
	remap []uint64
	gen   uint64
}

// reset drops what was accumulated (after an error).
func (a *acc) reset() {
	a.n = 0
	a.valid.release()
	a.vals.release()
	a.data.release()
	a.doffs.release()
	a.dn = 0
	a.gen++
	a.b = a.b[:0]
}

// newChunk forgets the mapping of the previous column chunk's dictionary:
// each chunk has its own.
func (a *acc) newChunk() { clear(a.remap) }

// addDict appends s to the batch's dictionary and returns its index.
func (a *acc) addDict(s []byte) int32 {
	if a.dn == 0 {
		castTo[int32](a.doffs.grow(a.mem, 4))[0] = 0
		a.doffs.n = 4
	}
	end := a.data.n
	copy(a.data.grow(a.mem, len(s))[end:], s)
	a.data.n = end + len(s)
	castTo[int32](a.doffs.grow(a.mem, 4))[a.dn+1] = int32(a.data.n)
	a.doffs.n += 4
	a.dn++
	return int32(a.dn - 1)
}

// appendDict appends byte-array values lo..hi of v as dictionary indexes:
// a value of the chunk's dictionary is added to the batch's on first use,
// a plain page's values each as they come.
func (a *acc) appendDict(v *pageValues, lo, hi int) error {
	m := hi - lo
	out := castTo[int32](a.vals.grow(a.mem, 4*m))[a.n : a.n+m]
	a.vals.n += 4 * m
	if v.idx == nil {
		if v.offs[lo] > v.offs[hi] || int(v.offs[hi]) > len(v.data) {
			return errValues
		}
		for k := lo; k < hi; k++ {
			out[k-lo] = a.addDict(v.data[v.offs[k]:v.offs[k+1]])
		}
		return nil
	}
	if len(a.remap) < v.dn {
		a.remap = append(a.remap, make([]uint64, v.dn-len(a.remap))...)
	}
	gen := a.gen
	for k, i := range v.idx[lo:hi] {
		e := a.remap[i]
		if e>>32 != gen {
			e = gen<<32 | uint64(a.addDict(v.data[v.offs[i]:v.offs[i+1]]))
			a.remap[i] = e
		}
		out[k] = int32(uint32(e))
	}
	return nil
}

var errValues = errors.New("page holds fewer values than its levels announce")
var errDictIndex = errors.New("dictionary index out of range")

// appendFixed appends src[lo:hi], or src[idx[k]] when idx is not nil.
func appendFixed[T int32 | int64 | float32 | float64](a *acc, src []T, idx []int32, lo, hi int) {
	m := hi - lo
	var zero T
	size := int(unsafe.Sizeof(zero))
	dst := castTo[T](a.vals.grow(a.mem, m*size))[a.n : a.n+m]
	if idx == nil {
		copy(dst, src[lo:hi])
	} else {
		for k, i := range idx[lo:hi] {
			dst[k] = src[i]
		}
	}
	a.vals.n += m * size
}

// appendRun appends the next m values of v, all present.
func (a *acc) appendRun(v *pageValues, m int) error {
	if m <= 0 {
		return nil
	}
	if v.pos+m > v.n {
		return errValues
	}
	lo, hi := v.pos, v.pos+m
	if v.idx != nil {
		dn := uint32(v.dn)
		for _, i := range v.idx[lo:hi] {
			if uint32(i) >= dn {
				return errDictIndex
			}
		}
	}
	a.valid.present(a.mem, a.n, m)
	switch a.kind {
	case kindInt32:
		appendFixed(a, v.i32, v.idx, lo, hi)
	case kindInt64:
		appendFixed(a, v.i64, v.idx, lo, hi)
	case kindFloat:
		appendFixed(a, v.f32, v.idx, lo, hi)
	case kindDouble:
		appendFixed(a, v.f64, v.idx, lo, hi)
	case kindBool:
		a.b = append(a.b, v.b[lo:hi]...)
	case kindBytes:
		appendValues := a.appendBytes
		if a.dict {
			appendValues = a.appendDict
		}
		if err := appendValues(v, lo, hi); err != nil {
			return err
		}
	}
	v.pos += m
	a.n += m
	return nil
}

// appendBytes appends byte-array values lo..hi of v as utf8.
func (a *acc) appendBytes(v *pageValues, lo, hi int) error {
	m := hi - lo
	if a.n == 0 {
		castTo[int32](a.vals.grow(a.mem, 4))[0] = 0
		a.vals.n = 4
	}
	offs := castTo[int32](a.vals.grow(a.mem, 4*m))[a.n+1 : a.n+1+m]
	a.vals.n += 4 * m
	end := a.data.n
	if v.idx == nil {
		if v.offs[lo] > v.offs[hi] || int(v.offs[hi]) > len(v.data) {
			return errValues
		}
		src := v.data[v.offs[lo]:v.offs[hi]]
		data := a.data.grow(a.mem, len(src))
		copy(data[end:], src)
		base := int32(end) - int32(v.offs[lo])
		for k, o := range v.offs[lo+1 : hi+1] {
			offs[k] = base + int32(o)
		}
		end += len(src)
	} else {
		total := 0
		idx := v.idx[lo:hi]
		for _, i := range idx {
			total += int(v.offs[i+1]) - int(v.offs[i])
		}
		data := a.data.grow(a.mem, total)
		for k, i := range idx {
			end += copy(data[end:], v.data[v.offs[i]:v.offs[i+1]])
			offs[k] = int32(end)
		}
	}
	a.data.n = end
	return nil
}

// appendNull appends a null (a zero value with its validity bit clear).
func (a *acc) appendNull() {
	a.valid.null(a.mem, a.n)
	switch a.kind {
	case kindInt32, kindFloat:
		clear(a.vals.grow(a.mem, 4)[a.vals.n : a.vals.n+4])
		a.vals.n += 4
	case kindInt64, kindDouble:
		clear(a.vals.grow(a.mem, 8)[a.vals.n : a.vals.n+8])
		a.vals.n += 8
	case kindBool:
		a.b = append(a.b, false)
	case kindBytes:
		if a.dict {
			castTo[int32](a.vals.grow(a.mem, 4))[a.n] = 0
			a.vals.n += 4
			break
		}
		if a.n == 0 {
			castTo[int32](a.vals.grow(a.mem, 4))[0] = 0
			a.vals.n = 4
		}
		castTo[int32](a.vals.grow(a.mem, 4))[a.n+1] = int32(a.data.n)
		a.vals.n += 4
	}
	a.n++
}

// buffer copies b into a new buffer from mem.
func buffer(mem memory.Allocator, b []byte) *memory.Buffer {
	buf := memory.NewResizableBuffer(mem)
	buf.Resize(len(b))
	copy(buf.Bytes(), b)
	return buf
}

// validityBuffer returns a copy of the validity bitmap, or nil when no value
// is null.
func validityBuffer(mem memory.Allocator, valid []byte, n, nulls int) *memory.Buffer {
	if nulls == 0 {
		return nil
	}
	return buffer(mem, valid[:(n+7)>>3])
}

// arrayData hands the accumulated values over as Arrow data and starts a
// new batch. The caller releases the data.
func (a *acc) arrayData() *array.Data {
	valid, nulls := a.valid.take()
	bufs := make([]*memory.Buffer, 0, 3)
	bufs = append(bufs, valid)
	switch a.kind {
	case kindBool:
		bits := memory.NewResizableBuffer(a.mem)
		bits.Resize(int(bitutil.BytesForBits(int64(a.n))))
		out := bits.Bytes()
		clear(out)
		for i, x := range a.b {
			if x {
				bitutil.SetBit(out, i)
			}
		}
		a.b = a.b[:0]
		bufs = append(bufs, bits)
	case kindBytes:
		if a.dict {
			return a.dictData(valid, nulls)
		}
		if a.n == 0 {
			castTo[int32](a.vals.grow(a.mem, 4))[0] = 0
			a.vals.n = 4
		}
		data := a.data.take()
		if data == nil {
			data = memory.NewResizableBuffer(a.mem)
		}
		bufs = append(bufs, a.vals.take(), data)
	default:
		vals := a.vals.take()
		if vals == nil {
			vals = memory.NewResizableBuffer(a.mem)
		}
		bufs = append(bufs, vals)
	}
	d := array.NewData(a.kind.arrowType(), a.n, bufs, nil, nulls, 0)
	for _, b := range bufs {
		if b != nil {
			b.Release()
		}
	}
	a.n = 0
	return d
}

// dictData is arrayData for a dictionary column: the indexes with their
// validity, and the batch's dictionary. It starts the next batch, whose
// dictionary starts empty.
func (a *acc) dictData(valid *memory.Buffer, nulls int) *array.Data {
	if a.dn == 0 {
		castTo[int32](a.doffs.grow(a.mem, 4))[0] = 0
		a.doffs.n = 4
	}
	data := a.data.take()
	if data == nil {
		data = memory.NewResizableBuffer(a.mem)
	}
	idx := a.vals.take()
	if idx == nil {
		idx = memory.NewResizableBuffer(a.mem)
	}
	dbufs := []*memory.Buffer{nil, a.doffs.take(), data}
	dict := array.NewData(arrow.BinaryTypes.String, a.dn, dbufs, nil, 0, 0)
	d := array.NewDataWithDictionary(dictType, a.n, []*memory.Buffer{valid, idx}, nulls, 0, dict)
	dict.Release()
	for _, b := range append(dbufs, valid, idx) {
		if b != nil {
			b.Release()
		}
	}
	a.n, a.dn = 0, 0
	a.gen++
	return d
}

// colReader streams one projected column of the current row group.
type colReader struct {
	name  string
	index int
	lay   colLayout

	pages parquet.Pages
	page  parquet.Page
	def   []byte
	rep   []byte
	nlev  int // levels (or values, for required flat columns) in the page
	lvl   int
	vals  pageValues
	done  bool // no more pages in the row group

	boolScratch []bool
	valScratch  []parquet.Value

	out acc
	// lists
	loffs  []int32
	lvalid []byte
	ln     int
	lnulls int
}

func newColReader(mem memory.Allocator, name string, lay colLayout) *colReader {
	c := &colReader{name: name, lay: lay}
	c.out.kind = lay.kind
	c.out.dict = lay.dict
	c.out.mem = mem
	c.resetBatch()
	return c
}

func (c *colReader) resetBatch() {
	c.out.reset()
	c.loffs = append(c.loffs[:0], 0)
	c.lvalid = c.lvalid[:0]
	c.ln, c.lnulls = 0, 0
}

// startRowGroup starts reading pages of a column chunk from row.
func (c *colReader) startRowGroup(chunk parquet.ColumnChunk, row int64) error {
	c.closePages()
	c.pages = chunk.Pages()
	c.done = false
	c.out.newChunk()
	if row > 0 {
		if err := c.pages.SeekToRow(row); err != nil {
			return fmt.Errorf("seek to row %d: %w", row, err)
		}
	}
	return nil
}

func (c *colReader) closePages() {
	if c.page != nil {
		parquet.Release(c.page)
		c.page = nil
	}
	if c.pages != nil {
		c.pages.Close()
		c.pages = nil
	}
	c.nlev, c.lvl = 0, 0
	c.def, c.rep = nil, nil
	c.vals = pageValues{}
}

// nextPage loads the next page; it sets done at the end of the chunk.
func (c *colReader) nextPage() error {
	if c.page != nil {
		parquet.Release(c.page)
		c.page = nil
	}
	for {
		p, err := c.pages.ReadPage()
		if err == io.EOF {
			c.done = true
			c.nlev, c.lvl = 0, 0
			return nil
		}
		if err != nil {
			return err
		}
		c.page = p
		c.def = p.DefinitionLevels()
		c.rep = p.RepetitionLevels()
		if c.lay.maxDef > 0 && len(c.def) == 0 && p.NumValues() > 0 {
			return errors.New("page without definition levels in an optional column")
		}
		if c.lay.list && len(c.rep) != len(c.def) {
			return errors.New("page repetition and definition levels differ in length")
		}
		if c.lay.maxDef > 0 {
			c.nlev = len(c.def)
		} else {
			c.nlev = int(p.NumValues())
		}
		c.lvl = 0
		if err := c.vals.load(c.lay.kind, p, &c.boolScratch, &c.valScratch); err != nil {
			return err
		}
		if c.nlev > 0 {
			return nil
		}
		parquet.Release(p)
		c.page = nil
	}
}

// readRows appends k rows of the column to the batch.
func (c *colReader) readRows(k int) error {
	if c.lay.list {
		return c.readListRows(k)
	}
	for k > 0 {
		if c.lvl == c.nlev {
			if err := c.nextPage(); err != nil {
				return err
			}
			if c.done {
				return fmt.Errorf("column chunk ended %d rows early", k)
			}
		}
		m := min(k, c.nlev-c.lvl)
		if c.lay.maxDef == 0 {
			if err := c.out.appendRun(&c.vals, m); err != nil {
				return err
			}
		} else {
			def := c.def[c.lvl : c.lvl+m]
			maxDef := c.lay.maxDef
			// Bulk-append runs of present values, one null at a time.
			i := 0
			for i < len(def) {
				j := i
				for j < len(def) && def[j] == maxDef {
					j++
				}
				if j > i {
					if err := c.out.appendRun(&c.vals, j-i); err != nil {
						return err
					}
				}
				for j < len(def) && def[j] != maxDef {
					c.out.appendNull()
					j++
				}
				i = j
			}
		}
		c.lvl += m
		k -= m
	}
	return nil
}

// readListRows appends k list rows. A row starts at a repetition level of 0;
// it ends where the next row starts, possibly on a later page. The level
// loop keeps the list state in locals (the struct's fields would be
// loaded and stored at every level) and writes it back when it leaves.
func (c *colReader) readListRows(k int) error {
	rows := 0
	maxDef, listDef := c.lay.maxDef, c.lay.listDef
	// Present elements are appended in runs spanning rows: pending counts
	// those seen but not yet appended (always from the current page).
	pending := 0
	flush := func() error {
		if pending == 0 {
			return nil
		}
		n := pending
		pending = 0
		return c.out.appendRun(&c.vals, n)
	}
	for {
		if c.lvl == c.nlev {
			if err := flush(); err != nil {
				return err
			}
			if err := c.nextPage(); err != nil {
				return err
			}
			if c.done {
				if rows < k {
					return fmt.Errorf("column chunk ended %d rows early", k-rows)
				}
				return nil
			}
		}
		rep, def := c.rep[:c.nlev], c.def[:c.nlev]
		def = def[:len(rep)]
		lvl := c.lvl
		loffs, lvalid, ln, lnulls := c.loffs, c.lvalid, c.ln, c.lnulls
		elems := c.out.n // elements appended, besides pending
		full := false
		for lvl < len(rep) {
			r, d := rep[lvl], def[lvl]
			if r == 0 {
				if rows == k {
					full = true
					break
				}
				rows++
				// Close the previous list, open this one.
				if ln > 0 {
					loffs = append(loffs, int32(elems+pending))
				}
				if ln&7 == 0 {
					lvalid = append(lvalid, 0)
				}
				ln++
				if d < listDef {
					lnulls++
					lvl++
					continue
				}
				lvalid[(ln-1)>>3] |= 1 << ((ln - 1) & 7)
				if d == listDef {
					lvl++
					continue // empty list
				}
			} else if rows == 0 {
				c.loffs, c.lvalid, c.ln, c.lnulls = loffs, lvalid, ln, lnulls
				return errors.New("list continues a row that was not started")
			}
			if d == maxDef {
				pending++
				lvl++
				continue
			}
			// A null element: append the run before it.
			if err := flush(); err != nil {
				c.loffs, c.lvalid, c.ln, c.lnulls = loffs, lvalid, ln, lnulls
				return err
			}
			c.out.appendNull()
			elems = c.out.n
			lvl++
		}
		c.loffs, c.lvalid, c.ln, c.lnulls = loffs, lvalid, ln, lnulls
		c.lvl = lvl
		if full {
			return flush()
		}
	}
}

// arrayData builds the batch's Arrow data for the column. The caller
// releases it.
func (c *colReader) arrayData() *array.Data {
	mem := c.out.mem
	elems := c.out.n
	leaf := c.out.arrayData()
	if !c.lay.list {
		return leaf
	}
	defer leaf.Release()
	offs := append(c.loffs, int32(elems))
	if c.ln == 0 {
		offs = offs[:1]
	}
	c.loffs = offs
	bufs := []*memory.Buffer{validityBuffer(mem, c.lvalid, c.ln, c.lnulls), buffer(mem, bytesOf(offs))}
	d := array.NewData(c.lay.arrowType(), c.ln, bufs, []arrow.ArrayData{leaf}, c.lnulls, 0)
	for _, b := range bufs {
		if b != nil {
			b.Release()
		}
	}
	return d
}
