package join

import "unsafe"

// Entry states.
const (
	stWaiting uint8 = iota + 1 // impression not seen yet; holds a click and/or a conversion
	stPending                  // impression seen, no click yet (may hold a conversion)
	stClicked                  // clicked, its conversion window open
	stClosed                   // closed without a click (tombstone)
	stDone                     // clicked and finished: converted or window over (tombstone)
)

// Entry flags.
const (
	flConverted uint8 = 1 << iota // its conversion was applied
	flEvicted                     // closed or finished early by the state cap
	flMoved                       // a stDone tombstone waiting in qClosed
	flForget                      // a tombstone waiting in qForget
)

// entry is the state of one impression id. It is 64 bytes.
type entry struct {
	id    uint64 // HashID of the impression id
	seq   uint64 // creation order: ties between equal deadlines, checkpoint order
	imp   int64  // impression event time (ms), 0 before it is seen
	click int64  // click event time, 0 without
	conv  int64  // conversion event time, 0 without
	ref   ref    // the impression message, in arena pending (stPending) or clicked (stClicked)
	gen   uint32 // bumped when the entry is queued again (older queue items are stale)
	slot  int32  // its index in Join.ents
	state uint8
	flags uint8
}

// entryOverhead is the accounted memory of one entry besides its message
// bytes: the entry (64 B), its slot in the id map (map[uint64]int32, about
// 32 B at the map's load factor and growth), a live queue item (24 B) and
// a stale one on average (another 24 B, left by each state change).
// TestStateBytesMatchesHeap checks it against the heap.
const entryOverhead = int64(unsafe.Sizeof(entry{})) + 32 + 2*int64(unsafe.Sizeof(item{}))

// heldOverhead is the accounted memory of a held event besides its bytes.
const heldOverhead = int64(unsafe.Sizeof(held{})) + 48

// event is one click or conversion, as consumed or as held.
type event struct {
	ts        int64 // event time (ms); 0 = none
	partition int32
	offset    int64
	key       []byte
	value     []byte
}

// held are the events of an impression id that wait: a click or a
// conversion whose impression was not seen yet, or a conversion whose
// click was not seen yet. Such events are rare (out of order across
// topics), so they live in a map of their own with their own copies of the
// message.
type held struct {
	click, conv event
}

func (h *held) bytes() int64 {
	return int64(len(h.click.key) + len(h.click.value) + len(h.conv.key) + len(h.conv.value))
}

// Queues, each ordered by (deadline, seq) and compared with the watermark
// of one topic (queueTopic).
const (
	qPending = iota // stPending: imp + ClickWindow, clicks' watermark
	qClicked        // stClicked: click + ConversionWindow, conversions' watermark
	qWaiting        // stWaiting: earliest held event time + MaxSkew, impressions' watermark
	qClosed         // stClosed (and moved stDone): imp + ClickWindow + Retention, clicks' watermark
	qDone           // stDone: click + ConversionWindow + Retention, conversions' watermark
	qForget         // tombstones past their retention: imp, impressions' watermark
	numQueues
)

var queueTopic = [numQueues]Topic{Clicks, Conversions, Impressions, Clicks, Conversions, Impressions}

// item is a queue entry; it is stale when the entry's seq or gen differ.
type item struct {
	deadline int64
	seq      uint64
	slot     int32
	gen      uint32
}

// queue is a binary min-heap of items by (deadline, seq).
type queue []item

func (q queue) less(i, j int) bool {
	if q[i].deadline != q[j].deadline {
		return q[i].deadline < q[j].deadline
	}
	return q[i].seq < q[j].seq
}

func (q *queue) push(it item) {
	*q = append(*q, it)
	h := *q
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (q *queue) pop() item {
	h := *q
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*q = h
	return top
}

// ref locates a message in an arena; n == 0 means none.
type ref struct {
	chunk, off, n uint32
}

// chunkSize is the size of an arena chunk; a longer message gets a chunk
// of its own.
const chunkSize = 1 << 20

// arena stores messages in chunks and frees a chunk when its last message
// is freed. Impressions leave the join roughly in the order they came
// (their windows close in event-time order), so chunks empty in turn; the
// messages of clicked impressions move to an arena of their own, whose
// chunks empty in click order, so the few long-lived ones do not pin the
// chunks of the many short-lived ones. It allocates nothing in steady
// state: an empty chunk is kept for reuse.
type arena struct {
	chunks [][]byte
	live   []int32 // live messages per chunk
	freeIx []uint32
	cur    int32 // chunk being filled, -1 for none
	spare  []byte
	held   int64 // bytes of the chunks held (not counting spare)
}

func newArena() arena { return arena{cur: -1} }

func (a *arena) put(b []byte) ref {
	n := len(b)
	if n == 0 {
		return ref{}
	}
	if n > chunkSize {
		ix := a.newChunk(make([]byte, 0, n))
		a.chunks[ix] = append(a.chunks[ix], b...)
		a.live[ix] = 1
		return ref{chunk: ix, off: 0, n: uint32(n)}
	}
	if a.cur < 0 || len(a.chunks[a.cur])+n > chunkSize {
		c := a.spare
		a.spare = nil
		if c == nil {
			c = make([]byte, 0, chunkSize)
		}
		old := a.cur
		a.cur = int32(a.newChunk(c))
		if old >= 0 && a.live[old] == 0 {
			a.release(uint32(old))
		}
	}
	ix := uint32(a.cur)
	off := len(a.chunks[ix])
	a.chunks[ix] = append(a.chunks[ix], b...)
	a.live[ix]++
	return ref{chunk: ix, off: uint32(off), n: uint32(n)}
}

func (a *arena) newChunk(c []byte) uint32 {
	a.held += int64(cap(c))
	if k := len(a.freeIx); k > 0 {
		ix := a.freeIx[k-1]
		a.freeIx = a.freeIx[:k-1]
		a.chunks[ix] = c[:0]
		return ix
	}
	a.chunks = append(a.chunks, c[:0])
	a.live = append(a.live, 0)
	return uint32(len(a.chunks) - 1)
}

func (a *arena) get(r ref) []byte {
	return a.chunks[r.chunk][r.off : r.off+r.n : r.off+r.n]
}

func (a *arena) free(r ref) {
	if r.n == 0 {
		return
	}
	a.live[r.chunk]--
	if a.live[r.chunk] == 0 && int32(r.chunk) != a.cur {
		a.release(r.chunk)
	}
}

func (a *arena) release(ix uint32) {
	c := a.chunks[ix]
	a.held -= int64(cap(c))
	if cap(c) == chunkSize && a.spare == nil {
		a.spare = c[:0]
	}
	a.chunks[ix] = nil
	a.freeIx = append(a.freeIx, ix)
}
