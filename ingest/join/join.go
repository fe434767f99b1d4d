package join

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
)

// Reasons the join gives a message to the dead letters
// (ingest.DeadLetter.Reason), besides ingest's decoding reasons (bad_json,
// wrong_type, missing_field, oversize) for a message whose id or time
// cannot be read.
const (
	// ReasonOrphanClick and ReasonOrphanConversion: no impression with
	// this id arrived by the time it should have (the impressions'
	// watermark passed the event's time plus MaxSkew), or it was
	// forgotten (more than Retention after its window).
	ReasonOrphanClick      = "orphan_click"
	ReasonOrphanConversion = "orphan_conversion"
	// ReasonDuplicateImpression, ReasonDuplicateClick and
	// ReasonDuplicateConversion: a second message for the same id; the
	// first counts, the second is dropped.
	ReasonDuplicateImpression = "duplicate_impression"
	ReasonDuplicateClick      = "duplicate_click"
	ReasonDuplicateConversion = "duplicate_conversion"
	// ReasonConversionWithoutClick: the impression's click window closed
	// without a click. The conversion is dropped (it is not attributed to
	// an unclicked impression).
	ReasonConversionWithoutClick = "conversion_without_click"
	// ReasonLateImpression: the impression came after its own topic's
	// watermark (more than Lateness out of order in its partition, or its
	// partition was idle); its clicks may have been taken for orphans.
	ReasonLateImpression = "late_impression"
	// ReasonLateClick and ReasonLateConversion: after the window (the
	// delay exceeds it, or the window was already closed by the
	// watermark or the state cap).
	ReasonLateClick      = "late_click"
	ReasonLateConversion = "late_conversion"
	// ReasonClockSkew: a click more than MaxSkew before its impression, or
	// a conversion more than MaxSkew before its click.
	ReasonClockSkew = "clock_skew"
	// ReasonFuture: an event time more than MaxFuture after the
	// processing time.
	ReasonFuture = "future"
	// ReasonBadTime: an event time that is not after the epoch.
	ReasonBadTime = "bad_time"
	// ReasonEvicted: a click or conversion still waiting for its
	// impression when the state cap forgot it.
	ReasonEvicted = "evicted"
)

// Join joins impressions with their clicks and conversions into labelled
// examples, by event time, with bounded and checkpointable state (see the
// package doc). A Join is not safe for concurrent use, except Stats.
type Join struct {
	cfg Config
	// event-time durations in ms; idle in ns of processing time
	clickW, convW, lateness, skew, future, retention int64
	idle                                             int64
	members                                          [2][2][]byte // pre-encoded label members by [click][conversion]

	dec  *features.JSONDecoder
	rows []int32 // per message of the current Add: its row, or -1
	errs []error

	idx    map[uint64]int32
	ents   []entry
	free   []int32
	held   map[uint64]*held
	q      [numQueues]queue
	arenas [2]arena // 0: pending impressions, 1: clicked impressions
	parts  [numTopics][]partition
	wm     [numTopics]int64 // per topic, monotone; math.MinInt64 until known
	clock  int64
	seq    uint64

	now     int64 // processing time of the current call (Unix ns)
	started int64 // processing time of the first call (Unix ns), 0 before
	out     *Output
	used    bool // a message was consumed (ReadFrom refuses then)

	heldBytes int64
	msgBytes  int64    // bytes of the impressions in the arenas
	states    [6]int64 // entries per state
	c         counters

	mu   sync.Mutex
	snap Stats
}

// partition is the consumption state of one topic partition.
type partition struct {
	known bool
	next  int64 // next offset to consume
	maxTs int64 // largest event time delivered, math.MinInt64 before
	seen  int64 // processing time of the last message (Unix ns); 0 = not since start or restore
	idle  bool
}

// counters are the cumulative counts, part of the checkpoint.
type counters struct {
	messages [numTopics]int64
	skipped  [numTopics]int64
	examples [numKinds]int64
	evicted  [4]int64 // pending, clicked, waiting, tombstones
	dead     map[string]int64
}

// Stats describe a Join. Counts are cumulative since the stream began
// (they are part of the checkpoint); the rest is the current state.
type Stats struct {
	// Messages consumed and Skipped (below the consumed offset: read
	// again after a rebalance or restart), per topic.
	Messages [3]int64
	Skipped  [3]int64
	// Examples emitted, by Kind.
	Examples [4]int64
	// DeadLetters by reason.
	DeadLetters map[string]int64
	// EvictedPending, EvictedClicked, EvictedWaiting and
	// EvictedTombstones count what the state cap did: impressions emitted
	// early as negatives, clicked impressions that stopped waiting for
	// their conversion, held clicks or conversions forgotten, and closed
	// ids forgotten before their Retention.
	EvictedPending, EvictedClicked, EvictedWaiting, EvictedTombstones int64
	// Pending impressions (waiting for a click), Clicked impressions
	// (waiting for a conversion), Waiting ids (clicks or conversions
	// waiting for their impression) and Tombstones (closed ids
	// remembered for Retention).
	Pending, Clicked, Waiting, Tombstones int64
	// StateBytes is the accounted memory of the state, the quantity
	// MaxStateBytes caps; ArenaBytes the message chunks actually held.
	StateBytes, ArenaBytes int64
	// Watermarks per topic (ms since the epoch; math.MinInt64 while
	// unknown) and the event clock (largest event time consumed).
	Watermarks [3]int64
	Clock      int64
	// IdlePartitions per topic.
	IdlePartitions [3]int
}

// New returns an empty join.
func New(cfg Config) (*Join, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	j := &Join{
		cfg:       cfg,
		clickW:    ms(cfg.ClickWindow),
		convW:     ms(cfg.ConversionWindow),
		lateness:  ms(cfg.Lateness),
		skew:      ms(cfg.MaxSkew),
		future:    ms(cfg.MaxFuture),
		retention: ms(cfg.Retention),
		idle:      int64(cfg.IdleTimeout),
		idx:       map[uint64]int32{},
		held:      map[uint64]*held{},
		arenas:    [2]arena{newArena(), newArena()},
		clock:     math.MinInt64,
		c:         counters{dead: map[string]int64{}},
	}
	for t := range j.wm {
		j.wm[t] = math.MinInt64
	}
	ck, err := json.Marshal(cfg.ClickLabel)
	if err != nil {
		return nil, err
	}
	cv, err := json.Marshal(cfg.ConversionLabel)
	if err != nil {
		return nil, err
	}
	for c := range 2 {
		for v := range 2 {
			m := append(append([]byte(nil), ck...), ':', byte('0'+c), ',')
			j.members[c][v] = append(append(m, cv...), ':', byte('0'+v))
		}
	}
	schema := arrow.NewSchema([]arrow.Field{
		{Name: cfg.IDField, Type: arrow.BinaryTypes.String},
		{Name: cfg.TimeField, Type: arrow.PrimitiveTypes.Int64},
	}, nil)
	if j.dec, err = features.NewJSONDecoder(schema, features.JSONConfig{Allocator: cfg.Allocator, MaxEventBytes: cfg.MaxEventBytes}); err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	j.publish()
	return j, nil
}

// Config returns the effective configuration.
func (j *Join) Config() Config { return j.cfg }

// Close releases the decoder's buffers.
func (j *Join) Close() { j.dec.Release() }

// maxPartitions bounds partition numbers (Kafka's are small and dense).
const maxPartitions = 1 << 16

// Assign declares the partitions of a topic this join consumes, so that a
// partition that delivers nothing holds its topic's watermark until it
// becomes idle (IdleTimeout after the next call), instead of being
// unknown. Partitions seen in messages are added by themselves.
func (j *Join) Assign(t Topic, partitions []int) error {
	if t >= numTopics {
		return fmt.Errorf("join: Assign: unknown topic %d", t)
	}
	for _, p := range partitions {
		if p < 0 || p >= maxPartitions {
			return fmt.Errorf("join: Assign: %s partition %d out of range", t, p)
		}
		j.part(t, p)
	}
	return nil
}

func (j *Join) part(t Topic, p int) *partition {
	ps := j.parts[t]
	for len(ps) <= p {
		ps = append(ps, partition{maxTs: math.MinInt64})
	}
	j.parts[t] = ps
	pp := &ps[p]
	if !pp.known {
		pp.known = true
		pp.seen = j.now
	}
	return pp
}

// Offsets returns, per partition of topic t, the next offset after the
// messages consumed (Add's offsets, merged with a restored checkpoint's):
// the position to resume reading from with this state.
func (j *Join) Offsets(t Topic) map[int]int64 {
	m := map[int]int64{}
	if t < numTopics {
		for p, pp := range j.parts[t] {
			if pp.known && pp.next > 0 {
				m[p] = pp.next
			}
		}
	}
	return m
}

// SetOffsets sets the next offset to consume of partitions of topic t:
// messages below it are skipped. Use it when a stream starts from known
// offsets without a join checkpoint; ReadFrom restores them with the state.
func (j *Join) SetOffsets(t Topic, offsets map[int]int64) error {
	if t >= numTopics {
		return fmt.Errorf("join: SetOffsets: unknown topic %d", t)
	}
	for p, off := range offsets {
		if p < 0 || p >= maxPartitions || off < 0 {
			return fmt.Errorf("join: SetOffsets: %s partition %d offset %d out of range", t, p, off)
		}
		j.part(t, p).next = off
	}
	return nil
}

// Add consumes msgs in order at processing time now and appends what they
// produce to out: examples whose label became known, and dead letters.
// Messages below a partition's consumed offset are skipped. Bad input never
// stops the join (it becomes a dead letter); Add fails only on a message
// that names an unknown topic or a negative partition or offset, and then
// consumes nothing.
func (j *Join) Add(out *Output, msgs []Message, now time.Time) error {
	for i := range msgs {
		m := &msgs[i]
		if m.Topic >= numTopics || m.Partition < 0 || m.Partition >= maxPartitions || m.Offset < 0 {
			return fmt.Errorf("join: Add: message %d: topic %d partition %d offset %d out of range", i, m.Topic, m.Partition, m.Offset)
		}
	}
	j.begin(out, now)
	defer j.end()
	// Read every id and time in one pass of the decoder.
	j.rows, j.errs = j.rows[:0], j.errs[:0]
	for i := range msgs {
		if err := j.dec.Append(msgs[i].Value); err != nil {
			j.rows = append(j.rows, -1)
			j.errs = append(j.errs, err)
		} else {
			j.rows = append(j.rows, int32(j.dec.Len()-1))
			j.errs = append(j.errs, nil)
		}
	}
	rec := j.dec.NewRecordBatch()
	defer rec.Release()
	ids := rec.Column(0).(*array.String)
	tss := rec.Column(1).(*array.Int64)
	j.used = j.used || len(msgs) > 0
	for i := range msgs {
		m := &msgs[i]
		p := j.part(m.Topic, m.Partition)
		if m.Offset < p.next {
			j.c.skipped[m.Topic]++
			continue
		}
		p.next = m.Offset + 1
		j.c.messages[m.Topic]++
		ev := event{partition: int32(m.Partition), offset: m.Offset, key: m.Key, value: m.Value}
		if j.rows[i] < 0 {
			j.deadLetter(m.Topic, &ev, decodeReason(j.errs[i]), j.errs[i].Error())
			continue
		}
		r := int(j.rows[i])
		ev.ts = tss.Value(r)
		switch {
		case ev.ts <= 0:
			j.deadLetter(m.Topic, &ev, ReasonBadTime, fmt.Sprintf("event time %d ms is not after the epoch", ev.ts))
			continue
		case ev.ts > j.now/1e6+j.future:
			j.deadLetter(m.Topic, &ev, ReasonFuture, fmt.Sprintf("event time %s is more than %v after the processing time %s",
				fmtMs(ev.ts), j.cfg.MaxFuture, time.Unix(0, j.now).UTC().Format(time.RFC3339Nano)))
			continue
		}
		// A valid event: the partition is active (a partition that only
		// delivers garbage still turns idle).
		p.seen = j.now
		before := j.wm[m.Topic]
		if ev.ts > p.maxTs || p.idle {
			p.maxTs = max(p.maxTs, ev.ts)
			p.idle = false
			j.updateWatermarks()
		}
		j.clock = max(j.clock, ev.ts)
		j.expire()
		id := HashID(ids.Value(r))
		switch m.Topic {
		case Impressions:
			j.impression(id, &ev, before)
		case Clicks:
			j.clickEvent(id, &ev)
		case Conversions:
			j.conversionEvent(id, &ev)
		}
		j.expire()
		j.enforceCap()
	}
	return nil
}

// Advance moves the processing time to now without messages: partitions
// that have been silent for IdleTimeout leave their topic's watermark,
// which may close windows.
func (j *Join) Advance(out *Output, now time.Time) {
	j.begin(out, now)
	j.end()
}

// Finish closes every window as if all three inputs had ended: each
// pending impression becomes a negative, each clicked one finishes (with
// EmitLabel, a Final example without conversion), and held events become
// orphans or conversions without a click. It is for finite inputs (files,
// tests); a stream checkpoints its state instead. The join stays usable.
func (j *Join) Finish(out *Output) {
	j.out = out
	for t := range j.wm {
		j.wm[t] = math.MaxInt64
	}
	j.expire()
	j.end()
}

func (j *Join) begin(out *Output, now time.Time) {
	j.out = out
	j.now = now.UnixNano()
	if j.started == 0 {
		j.started = j.now
	}
	for t := range j.parts {
		for p := range j.parts[t] {
			pp := &j.parts[t][p]
			if !pp.known {
				continue
			}
			if pp.seen == 0 {
				pp.seen = j.now
			}
			pp.idle = j.now-pp.seen > j.idle
		}
	}
	j.updateWatermarks()
	j.expire()
}

func (j *Join) end() {
	j.out = nil
	j.publish()
}

// updateWatermarks recomputes each topic's watermark: the smallest
// (largest event time - Lateness) over its active partitions, where a
// known partition without events holds it back entirely. A topic without
// active partitions (all idle, or none known IdleTimeout after the start)
// follows the smallest of the other topics' candidates. Watermarks never
// move back.
func (j *Join) updateWatermarks() {
	var cand [numTopics]int64
	var ok [numTopics]bool
	global, anyActive := int64(math.MaxInt64), false
	for t := range j.parts {
		c, active := int64(math.MaxInt64), false
		for p := range j.parts[t] {
			pp := &j.parts[t][p]
			if !pp.known || pp.idle {
				continue
			}
			active = true
			if pp.maxTs == math.MinInt64 {
				c = math.MinInt64
				break
			}
			c = min(c, pp.maxTs-j.lateness)
		}
		if !active && j.now-j.started <= j.idle {
			// No partition seen yet: the topic may just not have been
			// fetched; it holds its watermark until it counts as idle.
			c, active = math.MinInt64, true
		}
		cand[t], ok[t] = c, active
		if active {
			global, anyActive = min(global, c), true
		}
	}
	for t := range cand {
		w := cand[t]
		if !ok[t] {
			if !anyActive {
				continue
			}
			w = global
		}
		if w > j.wm[t] {
			j.wm[t] = w
		}
	}
}

// lookup returns the entry of id, or nil.
func (j *Join) lookup(id uint64) *entry {
	if s, ok := j.idx[id]; ok {
		return &j.ents[s]
	}
	return nil
}

// newEntry creates the entry of id.
func (j *Join) newEntry(id uint64) *entry {
	var s int32
	if k := len(j.free); k > 0 {
		s = j.free[k-1]
		j.free = j.free[:k-1]
	} else {
		j.ents = append(j.ents, entry{})
		s = int32(len(j.ents) - 1)
	}
	j.seq++
	j.ents[s] = entry{id: id, seq: j.seq, slot: s}
	j.idx[id] = s
	return &j.ents[s]
}

// setState moves e to state st, keeping the per-state counts.
func (j *Join) setState(e *entry, st uint8) {
	if e.state != 0 {
		j.states[e.state]--
	}
	j.states[st]++
	e.state = st
}

func (j *Join) deleteEntry(e *entry) {
	s := e.slot
	j.states[e.state]--
	delete(j.idx, e.id)
	if h := j.held[e.id]; h != nil {
		j.heldBytes -= h.bytes() + heldOverhead
		delete(j.held, e.id)
	}
	*e = entry{}
	j.free = append(j.free, s)
}

// enqueue makes q the entry's queue with the given deadline.
func (j *Join) enqueue(e *entry, q int, deadline int64) {
	e.gen++
	j.q[q].push(item{deadline: deadline, seq: e.seq, slot: e.slot, gen: e.gen})
}

// head returns the entry at the head of queue q, dropping stale items.
func (j *Join) head(q int) (*entry, int64) {
	for len(j.q[q]) > 0 {
		it := j.q[q][0]
		e := &j.ents[it.slot]
		if e.seq == it.seq && e.gen == it.gen {
			return e, it.deadline
		}
		j.q[q].pop()
	}
	return nil, 0
}

// expire handles every queued entry whose deadline its topic's watermark
// has passed.
func (j *Join) expire() {
	for again := true; again; {
		again = false
		for q := range numQueues {
			w := j.wm[queueTopic[q]]
			for {
				e, d := j.head(q)
				if e == nil || !(d < w) {
					break
				}
				j.q[q].pop()
				j.expireEntry(q, e)
				again = true
			}
		}
	}
}

func (j *Join) expireEntry(q int, e *entry) {
	switch q {
	case qPending:
		j.closeUnclicked(e)
	case qClicked:
		j.finishClicked(e)
	case qWaiting:
		j.dropWaiting(e, "")
	case qClosed:
		j.forget(e)
	case qDone:
		if d := e.imp + j.clickW; !(d < j.wm[Clicks]) {
			// A click for the impression could still come on time:
			// remember the id until its click window is closed too.
			e.flags |= flMoved
			j.enqueue(e, qClosed, d+j.retention)
			return
		}
		j.forget(e)
	case qForget:
		j.deleteEntry(e)
	}
}

// forget deletes a tombstone once no duplicate of its impression can come
// on time: when the impressions' watermark has passed its time (a
// duplicate would then be late). Until then it waits in qForget.
func (j *Join) forget(e *entry) {
	if e.imp < j.wm[Impressions] {
		j.deleteEntry(e)
		return
	}
	e.flags |= flForget
	j.enqueue(e, qForget, e.imp)
}

// closeUnclicked emits a pending impression as a negative and keeps a
// tombstone.
func (j *Join) closeUnclicked(e *entry) {
	j.emit(e, Negative, false, false, j.arenas[0].get(e.ref))
	j.arenas[0].free(e.ref)
	j.msgBytes -= int64(e.ref.n)
	e.ref = ref{}
	j.setState(e, stClosed)
	if h := j.held[e.id]; h != nil && h.conv.ts != 0 {
		j.deadLetter(Conversions, &h.conv, ReasonConversionWithoutClick, "the impression's click window closed without a click")
		j.unhold(e.id, h, false, true)
	}
	j.enqueue(e, qClosed, e.imp+j.clickW+j.retention)
}

// finishClicked ends a clicked impression's conversion window without a
// conversion.
func (j *Join) finishClicked(e *entry) {
	if j.cfg.Emit == EmitLabel {
		j.emit(e, Final, true, false, j.arenas[1].get(e.ref))
	}
	j.arenas[1].free(e.ref)
	j.msgBytes -= int64(e.ref.n)
	e.ref = ref{}
	j.setState(e, stDone)
	j.enqueue(e, qDone, e.click+j.convW+j.retention)
}

// dropWaiting turns the held events of an impression that never came into
// dead letters and forgets the id.
func (j *Join) dropWaiting(e *entry, reason string) {
	if h := j.held[e.id]; h != nil {
		if h.click.ts != 0 {
			r := reason
			if r == "" {
				r = ReasonOrphanClick
			}
			j.deadLetter(Clicks, &h.click, r, "no impression with this id arrived")
		}
		if h.conv.ts != 0 {
			r := reason
			if r == "" {
				r = ReasonOrphanConversion
			}
			j.deadLetter(Conversions, &h.conv, r, "no impression with this id arrived")
		}
	}
	j.deleteEntry(e)
}

// impression handles an impression message; before is its topic's
// watermark before the message.
func (j *Join) impression(id uint64, ev *event, before int64) {
	if ev.ts < before {
		j.deadLetter(Impressions, ev, ReasonLateImpression, fmt.Sprintf("event time %s is behind the impressions' watermark %s", fmtMs(ev.ts), fmtMs(before)))
		return
	}
	e := j.lookup(id)
	if e != nil && e.state != stWaiting {
		j.deadLetter(Impressions, ev, ReasonDuplicateImpression, "an impression with this id arrived before")
		return
	}
	if e == nil {
		e = j.newEntry(id)
	}
	e.imp = ev.ts
	e.ref = j.arenas[0].put(ev.value)
	j.msgBytes += int64(e.ref.n)
	j.setState(e, stPending)
	j.enqueue(e, qPending, ev.ts+j.clickW)
	if h := j.held[id]; h != nil && h.click.ts != 0 {
		c := h.click
		j.unhold(id, h, true, false)
		j.applyClick(e, &c)
	}
}

// clickEvent handles a click message.
func (j *Join) clickEvent(id uint64, ev *event) {
	e := j.lookup(id)
	if e == nil {
		if j.wm[Impressions] > ev.ts+j.skew {
			j.deadLetter(Clicks, ev, ReasonOrphanClick, "no impression with this id arrived, and the impressions' watermark passed the click")
			return
		}
		e = j.newEntry(id)
		j.setState(e, stWaiting)
		j.hold(e, ev, true)
		return
	}
	switch e.state {
	case stWaiting:
		if h := j.held[id]; h != nil && h.click.ts != 0 {
			j.deadLetter(Clicks, ev, ReasonDuplicateClick, "a click with this id arrived before")
			return
		}
		j.hold(e, ev, true)
	case stPending:
		j.applyClick(e, ev)
	case stClosed:
		detail := "its impression's click window had closed"
		if e.flags&flEvicted != 0 {
			detail = "the state cap had closed its impression's click window early"
		}
		j.deadLetter(Clicks, ev, ReasonLateClick, detail)
	default:
		j.deadLetter(Clicks, ev, ReasonDuplicateClick, "a click with this id arrived before")
	}
}

// applyClick attributes a click to a pending impression.
func (j *Join) applyClick(e *entry, ev *event) {
	d := ev.ts - e.imp
	if d < -j.skew {
		j.deadLetter(Clicks, ev, ReasonClockSkew, fmt.Sprintf("click %v before its impression", time.Duration(-d)*time.Millisecond))
		return
	}
	if d > j.clickW {
		j.deadLetter(Clicks, ev, ReasonLateClick, fmt.Sprintf("click %v after its impression, beyond the click window", time.Duration(d)*time.Millisecond))
		return
	}
	e.click = ev.ts
	j.setState(e, stClicked)
	b := j.arenas[0].get(e.ref)
	if j.cfg.Emit == EmitClick {
		j.emit(e, Click, true, false, b)
	}
	r := j.arenas[1].put(b)
	j.arenas[0].free(e.ref)
	e.ref = r
	j.enqueue(e, qClicked, ev.ts+j.convW)
	if h := j.held[e.id]; h != nil && h.conv.ts != 0 {
		c := h.conv
		j.unhold(e.id, h, false, true)
		j.applyConversion(e, &c)
	}
}

// conversionEvent handles a conversion message.
func (j *Join) conversionEvent(id uint64, ev *event) {
	e := j.lookup(id)
	if e == nil {
		if j.wm[Impressions] > ev.ts+j.skew {
			j.deadLetter(Conversions, ev, ReasonOrphanConversion, "no impression with this id arrived, and the impressions' watermark passed the conversion")
			return
		}
		e = j.newEntry(id)
		j.setState(e, stWaiting)
		j.hold(e, ev, false)
		return
	}
	switch e.state {
	case stWaiting, stPending:
		if h := j.held[id]; h != nil && h.conv.ts != 0 {
			j.deadLetter(Conversions, ev, ReasonDuplicateConversion, "a conversion with this id arrived before")
			return
		}
		j.hold(e, ev, false)
	case stClicked:
		j.applyConversion(e, ev)
	case stClosed:
		j.deadLetter(Conversions, ev, ReasonConversionWithoutClick, "the impression's click window closed without a click")
	default: // stDone
		switch {
		case e.flags&flConverted != 0:
			j.deadLetter(Conversions, ev, ReasonDuplicateConversion, "a conversion with this id arrived before")
		case e.flags&flEvicted != 0:
			j.deadLetter(Conversions, ev, ReasonLateConversion, "the state cap had closed its click's conversion window early")
		default:
			j.deadLetter(Conversions, ev, ReasonLateConversion, "its click's conversion window had closed")
		}
	}
}

// applyConversion attributes a conversion to a clicked impression.
func (j *Join) applyConversion(e *entry, ev *event) {
	d := ev.ts - e.click
	if d < -j.skew {
		j.deadLetter(Conversions, ev, ReasonClockSkew, fmt.Sprintf("conversion %v before its click", time.Duration(-d)*time.Millisecond))
		return
	}
	if d > j.convW {
		j.deadLetter(Conversions, ev, ReasonLateConversion, fmt.Sprintf("conversion %v after its click, beyond the conversion window", time.Duration(d)*time.Millisecond))
		return
	}
	e.conv = ev.ts
	e.flags |= flConverted
	kind := Conversion
	if j.cfg.Emit == EmitLabel {
		kind = Final
	}
	j.emit(e, kind, true, true, j.arenas[1].get(e.ref))
	j.arenas[1].free(e.ref)
	j.msgBytes -= int64(e.ref.n)
	e.ref = ref{}
	j.setState(e, stDone)
	j.enqueue(e, qDone, e.click+j.convW+j.retention)
}

// hold keeps a click (or conversion) of e until its impression (or click)
// arrives. A waiting entry's deadline follows its earliest held event.
func (j *Join) hold(e *entry, ev *event, click bool) {
	h := j.held[e.id]
	if h == nil {
		h = &held{}
		j.held[e.id] = h
		j.heldBytes += heldOverhead
	}
	c := event{ts: ev.ts, partition: ev.partition, offset: ev.offset,
		key: append([]byte(nil), ev.key...), value: append([]byte(nil), ev.value...)}
	if click {
		h.click = c
	} else {
		h.conv = c
	}
	j.heldBytes += int64(len(c.key) + len(c.value))
	if e.state == stWaiting {
		first := h.click.ts
		if first == 0 || (h.conv.ts != 0 && h.conv.ts < first) {
			first = h.conv.ts
		}
		if first == ev.ts {
			j.enqueue(e, qWaiting, first+j.skew)
		}
	}
}

// unhold forgets a held click and/or conversion of id.
func (j *Join) unhold(id uint64, h *held, click, conv bool) {
	if click {
		j.heldBytes -= int64(len(h.click.key) + len(h.click.value))
		h.click = event{}
	}
	if conv {
		j.heldBytes -= int64(len(h.conv.key) + len(h.conv.value))
		h.conv = event{}
	}
	if h.click.ts == 0 && h.conv.ts == 0 {
		j.heldBytes -= heldOverhead
		delete(j.held, id)
	}
}

// emit appends an example of e to the output.
func (j *Join) emit(e *entry, k Kind, click, conv bool, msg []byte) {
	o := j.out
	s := len(o.buf)
	var cv int
	if conv {
		cv = 1
	}
	var ck int
	if click {
		ck = 1
	}
	o.buf = appendLabelled(o.buf, msg, j.members[ck][cv])
	ex := Example{Kind: k, ID: e.id, Click: click, Conversion: conv, ImpressionTime: e.imp,
		EmitTime: j.clock, Evicted: e.flags&flEvicted != 0, Value: o.buf[s:len(o.buf):len(o.buf)]}
	if click {
		ex.ClickTime = e.click
	}
	if conv {
		ex.ConversionTime = e.conv
	}
	o.Examples = append(o.Examples, ex)
	j.c.examples[k]++
}

// deadLetter appends a dead letter for ev of topic t.
func (j *Join) deadLetter(t Topic, ev *event, reason, detail string) {
	o := j.out
	o.DeadLetters = append(o.DeadLetters, ingest.DeadLetter{
		Topic: j.cfg.Topics[t], Partition: int(ev.partition), Offset: ev.offset,
		Key: o.keep(ev.key), Value: o.keep(ev.value),
		Reason: reason, Detail: detail, Time: time.Unix(0, j.now),
	})
	j.c.dead[reason]++
}

// stateBytes is the accounted memory of the state.
func (j *Join) stateBytes() int64 {
	return j.msgBytes + j.heldBytes + int64(len(j.idx))*entryOverhead
}

// enforceCap forgets state while it is above MaxStateBytes: first
// tombstones whose click window the watermark has closed (forgetting them
// changes only how later events of their id are classified: a duplicate
// impression is late, a click or conversion an orphan; nothing is trained
// twice), then the entry that has waited longest by the event time it
// waits from.
func (j *Join) enforceCap() {
	for j.stateBytes() > j.cfg.MaxStateBytes {
		if q, e := j.oldTombstone(); e != nil {
			j.q[q].pop()
			j.c.evicted[3]++
			j.deleteEntry(e)
			continue
		}
		best, bq := (*entry)(nil), -1
		var bt int64
		for _, q := range [...]int{qPending, qClicked, qWaiting} {
			e, d := j.head(q)
			if e == nil {
				continue
			}
			var t int64
			switch q {
			case qPending:
				t = d - j.clickW
			case qClicked:
				t = d - j.convW
			default:
				t = d - j.skew
			}
			if best == nil || t < bt {
				best, bq, bt = e, q, t
			}
		}
		if best == nil {
			return // only tombstones of open windows: they close with the watermark
		}
		j.q[bq].pop()
		best.flags |= flEvicted
		switch bq {
		case qPending:
			j.c.evicted[0]++
			j.closeUnclicked(best)
		case qClicked:
			j.c.evicted[1]++
			j.finishClicked(best)
		default:
			j.c.evicted[2]++
			j.dropWaiting(best, ReasonEvicted)
		}
	}
}

// oldTombstone returns the older of the tombstones at the heads of qClosed
// and qDone whose click window the clicks' watermark has closed and whose
// impression the impressions' watermark has passed (so no duplicate of it
// can come on time and be taken for a new impression).
func (j *Join) oldTombstone() (int, *entry) {
	bq, best := -1, (*entry)(nil)
	for _, q := range [...]int{qClosed, qDone} {
		e, _ := j.head(q)
		if e != nil && e.imp+j.clickW < j.wm[Clicks] && e.imp < j.wm[Impressions] && (best == nil || e.seq < best.seq) {
			bq, best = q, e
		}
	}
	return bq, best
}

// publish updates the Stats snapshot.
func (j *Join) publish() {
	s := Stats{
		Messages: j.c.messages, Skipped: j.c.skipped, Examples: j.c.examples,
		DeadLetters:    maps.Clone(j.c.dead),
		EvictedPending: j.c.evicted[0], EvictedClicked: j.c.evicted[1], EvictedWaiting: j.c.evicted[2],
		EvictedTombstones: j.c.evicted[3],
		StateBytes:        j.stateBytes(), ArenaBytes: j.arenas[0].held + j.arenas[1].held,
		Watermarks: j.wm, Clock: j.clock,
	}
	s.Pending, s.Clicked, s.Waiting = j.states[stPending], j.states[stClicked], j.states[stWaiting]
	s.Tombstones = j.states[stClosed] + j.states[stDone]
	for t := range j.parts {
		for _, p := range j.parts[t] {
			if p.known && p.idle {
				s.IdlePartitions[t]++
			}
		}
	}
	j.mu.Lock()
	j.snap = s
	j.mu.Unlock()
}

// Stats returns the join's counters and state sizes as of the end of the
// last Add, Advance, Finish or ReadFrom. Safe for concurrent use.
func (j *Join) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := j.snap
	s.DeadLetters = maps.Clone(s.DeadLetters)
	return s
}

// decodeReason classifies a decoder error as ingest's KafkaSource does.
func decodeReason(err error) string {
	switch {
	case errors.Is(err, features.ErrEventTooLarge):
		return ingest.ReasonOversize
	case errors.Is(err, features.ErrEventMissingField):
		return ingest.ReasonMissingField
	case errors.Is(err, features.ErrEventType):
		return ingest.ReasonWrongType
	default:
		return ingest.ReasonBadJSON
	}
}

func fmtMs(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }
