package join

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"slices"
)

// The checkpoint format (little endian), version 1:
//
//	magic "onestone-join\n", version u32
//	emit, click label, conversion label (strings: u32 length + bytes)
//	seq u64, clock i64, watermarks 3 × i64
//	per topic: n u32, then n × (partition u32, next offset i64, max event time i64)
//	counters: messages 3 × i64, skipped 3 × i64, examples 4 × i64,
//	  evicted 4 × i64, dead letters n u32 then n × (reason string, count i64)
//	entries: n u64, then n × (id u64, seq u64, impression, click and
//	  conversion times i64, state u8, flags u8, message bytes), by seq
//	held events: n u32, then n × (id u64, click, conversion), by entry seq;
//	  an event is its time i64 and, when not 0, partition i32, offset i64,
//	  key bytes, value bytes
//	CRC-32C of everything before, u32
//
// Queues, arenas and the id map are rebuilt from the entries: what a
// restored join does next depends only on the saved state and the
// configuration, which may change windows but not the emission mode or the
// label keys.
const (
	ckMagic   = "onestone-join\n"
	ckVersion = 1
	// ckMaxBytes bounds one length read from a checkpoint, so a corrupt
	// file fails instead of allocating the machine away.
	ckMaxBytes = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCheckpoint is wrapped by ReadFrom's errors about the checkpoint's
// content.
var ErrCheckpoint = errors.New("join: bad checkpoint")

type ckWriter struct {
	w   *bufio.Writer
	crc hash.Hash32
	n   int64
	err error
	b   [8]byte
}

func (c *ckWriter) write(p []byte) {
	if c.err != nil {
		return
	}
	c.crc.Write(p)
	var n int
	n, c.err = c.w.Write(p)
	c.n += int64(n)
}

func (c *ckWriter) u8(v uint8) { c.b[0] = v; c.write(c.b[:1]) }
func (c *ckWriter) u32(v uint32) {
	binary.LittleEndian.PutUint32(c.b[:4], v)
	c.write(c.b[:4])
}
func (c *ckWriter) u64(v uint64) {
	binary.LittleEndian.PutUint64(c.b[:8], v)
	c.write(c.b[:8])
}
func (c *ckWriter) i64(v int64)    { c.u64(uint64(v)) }
func (c *ckWriter) bytes(p []byte) { c.u32(uint32(len(p))); c.write(p) }
func (c *ckWriter) str(s string)   { c.bytes([]byte(s)) }

// WriteTo writes the join's state, with the offsets it corresponds to, to
// w (io.WriterTo). Call it between Add calls, after training every example
// they emitted (see the package doc). It returns the bytes written.
func (j *Join) WriteTo(w io.Writer) (int64, error) {
	c := &ckWriter{w: bufio.NewWriterSize(w, 1<<16), crc: crc32.New(castagnoli)}
	c.write([]byte(ckMagic))
	c.u32(ckVersion)
	c.str(j.cfg.Emit)
	c.str(j.cfg.ClickLabel)
	c.str(j.cfg.ConversionLabel)
	c.u64(j.seq)
	c.i64(j.clock)
	for _, w := range j.wm {
		c.i64(w)
	}
	for t := range j.parts {
		var n uint32
		for _, p := range j.parts[t] {
			if p.known {
				n++
			}
		}
		c.u32(n)
		for i, p := range j.parts[t] {
			if p.known {
				c.u32(uint32(i))
				c.i64(p.next)
				c.i64(p.maxTs)
			}
		}
	}
	for _, v := range j.c.messages {
		c.i64(v)
	}
	for _, v := range j.c.skipped {
		c.i64(v)
	}
	for _, v := range j.c.examples {
		c.i64(v)
	}
	for _, v := range j.c.evicted {
		c.i64(v)
	}
	reasons := make([]string, 0, len(j.c.dead))
	for r := range j.c.dead {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	c.u32(uint32(len(reasons)))
	for _, r := range reasons {
		c.str(r)
		c.i64(j.c.dead[r])
	}
	slots := make([]int32, 0, len(j.idx))
	for _, s := range j.idx {
		slots = append(slots, s)
	}
	slices.SortFunc(slots, func(a, b int32) int {
		if j.ents[a].seq < j.ents[b].seq {
			return -1
		}
		return 1
	})
	c.u64(uint64(len(slots)))
	var nheld uint32
	for _, s := range slots {
		e := &j.ents[s]
		c.u64(e.id)
		c.u64(e.seq)
		c.i64(e.imp)
		c.i64(e.click)
		c.i64(e.conv)
		c.u8(e.state)
		c.u8(e.flags)
		var msg []byte
		switch e.state {
		case stPending:
			msg = j.arenas[0].get(e.ref)
		case stClicked:
			msg = j.arenas[1].get(e.ref)
		}
		c.bytes(msg)
		if j.held[e.id] != nil {
			nheld++
		}
	}
	c.u32(nheld)
	for _, s := range slots {
		e := &j.ents[s]
		h := j.held[e.id]
		if h == nil {
			continue
		}
		c.u64(e.id)
		for _, ev := range []*event{&h.click, &h.conv} {
			c.i64(ev.ts)
			if ev.ts != 0 {
				c.u32(uint32(ev.partition))
				c.i64(ev.offset)
				c.bytes(ev.key)
				c.bytes(ev.value)
			}
		}
	}
	if c.err == nil {
		var sum [4]byte
		binary.LittleEndian.PutUint32(sum[:], c.crc.Sum32())
		var n int
		n, c.err = c.w.Write(sum[:])
		c.n += int64(n)
	}
	if c.err == nil {
		c.err = c.w.Flush()
	}
	if c.err != nil {
		return c.n, fmt.Errorf("join: write checkpoint: %w", c.err)
	}
	return c.n, nil
}

type ckReader struct {
	r   *bufio.Reader
	crc hash.Hash32
	n   int64
	err error
	b   [8]byte
}

func (c *ckReader) read(p []byte) {
	if c.err != nil {
		clear(p)
		return
	}
	var n int
	n, c.err = io.ReadFull(c.r, p)
	c.n += int64(n)
	c.crc.Write(p[:n])
	if errors.Is(c.err, io.ErrUnexpectedEOF) || errors.Is(c.err, io.EOF) {
		c.err = fmt.Errorf("%w: truncated", ErrCheckpoint)
	}
}

func (c *ckReader) u8() uint8 { c.read(c.b[:1]); return c.b[0] }
func (c *ckReader) u32() uint32 {
	c.read(c.b[:4])
	return binary.LittleEndian.Uint32(c.b[:4])
}
func (c *ckReader) u64() uint64 {
	c.read(c.b[:8])
	return binary.LittleEndian.Uint64(c.b[:8])
}
func (c *ckReader) i64() int64 { return int64(c.u64()) }
func (c *ckReader) bytes() []byte {
	n := c.u32()
	if c.err != nil {
		return nil
	}
	if n > ckMaxBytes {
		c.err = fmt.Errorf("%w: a length of %d bytes", ErrCheckpoint, n)
		return nil
	}
	if n == 0 {
		return nil
	}
	p := make([]byte, n)
	c.read(p)
	return p
}
func (c *ckReader) str() string { return string(c.bytes()) }

// bytesTo reads a length-prefixed byte string into scratch (grown as
// needed) and returns it; it is valid until the next call.
func (c *ckReader) bytesTo(scratch *[]byte) []byte {
	n := c.u32()
	if c.err != nil {
		return nil
	}
	if n > ckMaxBytes {
		c.err = fmt.Errorf("%w: a length of %d bytes", ErrCheckpoint, n)
		return nil
	}
	if cap(*scratch) < int(n) {
		*scratch = make([]byte, n)
	}
	p := (*scratch)[:n]
	c.read(p)
	return p
}

// ReadFrom restores a state WriteTo wrote (io.ReaderFrom) into a join that
// has consumed nothing yet. The configuration may differ from the writer's
// in its windows, tolerances and cap (deadlines are recomputed), but not in
// its emission mode or label keys. Processing times are not saved: every
// partition counts as active from the next call on. On error the join must
// be discarded.
func (j *Join) ReadFrom(r io.Reader) (int64, error) {
	if j.used || len(j.idx) > 0 {
		return 0, errors.New("join: ReadFrom: the join has consumed messages already")
	}
	j.used = true
	c := &ckReader{r: bufio.NewReaderSize(r, 1<<16), crc: crc32.New(castagnoli)}
	n, err := j.readFrom(c)
	j.publish()
	return n, err
}

func (j *Join) readFrom(c *ckReader) (int64, error) {
	magic := make([]byte, len(ckMagic))
	c.read(magic)
	if c.err == nil && string(magic) != ckMagic {
		return c.n, fmt.Errorf("%w: not a join checkpoint", ErrCheckpoint)
	}
	if v := c.u32(); c.err == nil && v != ckVersion {
		return c.n, fmt.Errorf("%w: version %d, want %d", ErrCheckpoint, v, ckVersion)
	}
	emit, ck, cv := c.str(), c.str(), c.str()
	if c.err == nil && (emit != j.cfg.Emit || ck != j.cfg.ClickLabel || cv != j.cfg.ConversionLabel) {
		return c.n, fmt.Errorf("join: checkpoint written with emit %q and labels %q, %q; this join has %q, %q, %q (start a new stream to change them)",
			emit, ck, cv, j.cfg.Emit, j.cfg.ClickLabel, j.cfg.ConversionLabel)
	}
	j.seq = c.u64()
	j.clock = c.i64()
	for t := range j.wm {
		j.wm[t] = c.i64()
	}
	for t := range j.parts {
		n := c.u32()
		for range n {
			p, next, maxTs := c.u32(), c.i64(), c.i64()
			if c.err != nil {
				break
			}
			if p >= maxPartitions {
				return c.n, fmt.Errorf("%w: partition %d", ErrCheckpoint, p)
			}
			pp := j.part(Topic(t), int(p))
			pp.next, pp.maxTs, pp.seen = next, maxTs, 0
		}
	}
	for t := range j.c.messages {
		j.c.messages[t] = c.i64()
	}
	for t := range j.c.skipped {
		j.c.skipped[t] = c.i64()
	}
	for k := range j.c.examples {
		j.c.examples[k] = c.i64()
	}
	for i := range j.c.evicted {
		j.c.evicted[i] = c.i64()
	}
	nr := c.u32()
	for range nr {
		r := c.str()
		v := c.i64()
		if c.err != nil {
			break
		}
		j.c.dead[r] = v
	}
	ne := c.u64()
	if c.err == nil && ne > 0 {
		hint := int(min(ne, 1<<24))
		j.idx = make(map[uint64]int32, hint)
		j.ents = make([]entry, 0, hint)
	}
	var scratch []byte
	for range ne {
		if c.err != nil {
			break
		}
		id, seq := c.u64(), c.u64()
		imp, click, conv := c.i64(), c.i64(), c.i64()
		st, fl := c.u8(), c.u8()
		msg := c.bytesTo(&scratch)
		if c.err != nil {
			break
		}
		if st < stWaiting || st > stDone || (st == stPending || st == stClicked) != (len(msg) > 0) {
			return c.n, fmt.Errorf("%w: entry %d in state %d with a message of %d bytes", ErrCheckpoint, seq, st, len(msg))
		}
		if _, dup := j.idx[id]; dup {
			return c.n, fmt.Errorf("%w: id %x twice", ErrCheckpoint, id)
		}
		j.ents = append(j.ents, entry{id: id, seq: seq, imp: imp, click: click, conv: conv, slot: int32(len(j.ents)), flags: fl})
		e := &j.ents[len(j.ents)-1]
		j.idx[id] = e.slot
		j.setState(e, st)
		switch st {
		case stPending:
			e.ref = j.arenas[0].put(msg)
		case stClicked:
			e.ref = j.arenas[1].put(msg)
		}
		j.msgBytes += int64(e.ref.n)
	}
	nh := c.u32()
	for range nh {
		id := c.u64()
		h := &held{}
		for _, ev := range []*event{&h.click, &h.conv} {
			ev.ts = c.i64()
			if ev.ts != 0 {
				ev.partition = int32(c.u32())
				ev.offset = c.i64()
				ev.key = c.bytes()
				ev.value = c.bytes()
			}
		}
		if c.err != nil {
			break
		}
		if _, ok := j.idx[id]; !ok || j.held[id] != nil {
			return c.n, fmt.Errorf("%w: held events of id %x without an entry, or twice", ErrCheckpoint, id)
		}
		j.held[id] = h
		j.heldBytes += h.bytes() + heldOverhead
	}
	if c.err != nil {
		return c.n, c.err
	}
	want := c.crc.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(c.r, sum[:]); err != nil {
		return c.n, fmt.Errorf("%w: truncated", ErrCheckpoint)
	}
	c.n += 4
	if got := binary.LittleEndian.Uint32(sum[:]); got != want {
		return c.n, fmt.Errorf("%w: checksum %08x, want %08x", ErrCheckpoint, got, want)
	}
	// Queues, in seq order (the entries were written so).
	for i := range j.ents {
		e := &j.ents[i]
		switch e.state {
		case stWaiting:
			h := j.held[e.id]
			if h == nil {
				return c.n, fmt.Errorf("%w: waiting entry %d holds nothing", ErrCheckpoint, e.seq)
			}
			first := h.click.ts
			if first == 0 || (h.conv.ts != 0 && h.conv.ts < first) {
				first = h.conv.ts
			}
			j.enqueue(e, qWaiting, first+j.skew)
		case stPending:
			j.enqueue(e, qPending, e.imp+j.clickW)
		case stClicked:
			j.enqueue(e, qClicked, e.click+j.convW)
		case stClosed, stDone:
			if e.flags&flForget != 0 {
				j.enqueue(e, qForget, e.imp)
			} else if e.state == stClosed || e.flags&flMoved != 0 {
				j.enqueue(e, qClosed, e.imp+j.clickW+j.retention)
			} else {
				j.enqueue(e, qDone, e.click+j.convW+j.retention)
			}
		}
	}
	if j.clock == math.MinInt64 && len(j.ents) > 0 {
		return c.n, fmt.Errorf("%w: entries without an event clock", ErrCheckpoint)
	}
	return c.n, nil
}
