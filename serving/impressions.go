package serving

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/onestone/onestone/internal/jsontext"
)

// Defaults of ImpressionLogConfig.
const (
	DefaultImpressionQueueBytes = 64 << 20
	DefaultImpressionBatch      = 1000
)

// ImpressionLogConfig configures the logging of served impressions to a
// Kafka topic, in the impression format of the three-topic stream
// (docs/streaming.md, "Event formats"), so that `onestone stream` trains on
// the features the model was served with.
type ImpressionLogConfig struct {
	// Brokers are the bootstrap addresses. Required.
	Brokers []string
	// Topic receives the impressions. Required.
	Topic string
	// KeyField is the feature whose text (a string's contents or an
	// integer's digits; from the candidate, else the context) is the
	// message key, so a user's impressions, clicks and conversions share
	// a partition number. Default: "user_id".
	KeyField string
	// IDField and TimeField are the keys of the impression id and the
	// event time (ms since the epoch) in each message. Defaults:
	// "impression_id", "ts_ms" (ingest/join's defaults).
	IDField, TimeField string
	// QueueBytes bounds the messages waiting to be written: a request whose
	// impressions do not fit is served but not logged, and counted in
	// onestone_impressions_dropped_total{reason="queue_full"}. Default:
	// DefaultImpressionQueueBytes (64 MiB).
	QueueBytes int64
	// BatchSize is the most messages per produce request. Default:
	// DefaultImpressionBatch.
	BatchSize int
	// WriteTimeout bounds one produce request; messages of a request that
	// fails are dropped (reason="write_error"). Default: 10s.
	WriteTimeout time.Duration
}

// Validate reports whether the configuration is usable.
func (c ImpressionLogConfig) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("serving: ImpressionLogConfig.Brokers is empty")
	case c.Topic == "":
		return errors.New("serving: ImpressionLogConfig.Topic is empty")
	case c.QueueBytes < 0 || c.BatchSize < 0 || c.WriteTimeout < 0:
		return fmt.Errorf("serving: ImpressionLogConfig: negative QueueBytes %d, BatchSize %d or WriteTimeout %v", c.QueueBytes, c.BatchSize, c.WriteTimeout)
	}
	return nil
}

func (c ImpressionLogConfig) withDefaults() ImpressionLogConfig {
	if c.KeyField == "" {
		c.KeyField = "user_id"
	}
	if c.IDField == "" {
		c.IDField = "impression_id"
	}
	if c.TimeField == "" {
		c.TimeField = "ts_ms"
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = DefaultImpressionQueueBytes
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultImpressionBatch
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	return c
}

// impBatch is the impressions of one request: their messages, whose keys
// and values live in buf.
type impBatch struct {
	buf  []byte
	msgs []kafka.Message
	size int64
}

// impressionLog writes served impressions to Kafka from its own goroutine.
// Logging never blocks a request and never fails it: a request's
// impressions go into a bounded queue or are dropped and counted.
type impressionLog struct {
	cfg     ImpressionLogConfig
	log     *slog.Logger
	w       *kafka.Writer
	tr      *kafka.Transport
	q       chan *impBatch
	queued  atomic.Int64 // bytes in q
	pool    sync.Pool
	base    uint64 // impression ids are mix64(base + n)
	seq     atomic.Uint64
	idKey   []byte // IDField and TimeField as JSON keys with their colon
	tsKey   []byte
	done    chan struct{}
	started bool
	// wctx bounds the writes; close cancels it when it gives up, so a
	// write stuck on a broker that does not answer ends at once.
	wctx    context.Context
	wcancel context.CancelFunc
	// abandon is set when close gives up: what is still queued is
	// dropped as "closed" instead of written.
	abandon atomic.Bool

	mLogged  prometheus.Counter
	mDropped *prometheus.CounterVec
	mQueue   prometheus.Gauge
}

func newImpressionLog(cfg ImpressionLogConfig, log *slog.Logger, reg *prometheus.Registry) (*impressionLog, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("serving: impression ids: %w", err)
	}
	tr := &kafka.Transport{}
	l := &impressionLog{
		cfg: cfg,
		log: log,
		tr:  tr,
		w: &kafka.Writer{
			Transport:              tr,
			Addr:                   kafka.TCP(cfg.Brokers...),
			Topic:                  cfg.Topic,
			Balancer:               &kafka.Murmur2Balancer{},
			RequiredAcks:           kafka.RequireAll,
			BatchSize:              cfg.BatchSize,
			BatchBytes:             16 << 20,
			BatchTimeout:           time.Millisecond,
			WriteTimeout:           cfg.WriteTimeout,
			AllowAutoTopicCreation: true,
		},
		// The byte budget is the bound; the channel only needs room for
		// many small requests.
		q:     make(chan *impBatch, 4096),
		base:  binary.LittleEndian.Uint64(seed[:]),
		idKey: append(jsontext.AppendString(nil, cfg.IDField), ':'),
		tsKey: append(jsontext.AppendString(nil, cfg.TimeField), ':'),
		done:  make(chan struct{}),
	}
	l.pool.New = func() any { return new(impBatch) }
	l.wctx, l.wcancel = context.WithCancel(context.Background())
	l.mLogged = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "onestone_impressions_logged_total", Help: "Served impressions written to the impression topic.",
	})
	l.mDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onestone_impressions_dropped_total", Help: "Served impressions not logged, by reason (queue_full: the queue was over its byte bound; write_error: the broker did not take them; closed: left at shutdown).",
	}, []string{"reason"})
	l.mQueue = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "onestone_impression_queue_bytes", Help: "Bytes of served impressions waiting to be written.",
	})
	for _, r := range []string{"queue_full", "write_error", "closed"} {
		l.mDropped.WithLabelValues(r)
	}
	reg.MustRegister(l.mLogged, l.mDropped, l.mQueue)
	return l, nil
}

// start starts the goroutine that writes the queue.
func (l *impressionLog) start() {
	l.started = true
	go l.run()
}

// add logs the results of resp, whose request is still alive, as
// impressions at time now, and gives each result its impression id.
func (l *impressionLog) add(resp *Response, now time.Time) {
	if len(resp.Results) == 0 {
		return
	}
	req := resp.req
	// Each result takes an id whether or not its message is queued: the
	// client may log clicks for it all the same (they become orphans).
	first := l.seq.Add(uint64(len(resp.Results))) - uint64(len(resp.Results))
	for i := range resp.Results {
		resp.Results[i].ImpressionID = mix64(l.base + first + uint64(i))
	}
	resp.logged = true
	b := l.pool.Get().(*impBatch)
	b.buf, b.msgs = b.buf[:0], b.msgs[:0]
	ts := now.UnixMilli()
	var sc jsontext.Scanner
	for i := range resp.Results {
		r := &resp.Results[i]
		o := len(b.buf)
		var key []byte
		b.buf, key = l.appendImpression(b.buf, &sc, r.ImpressionID, ts, req.Candidates[r.Index], req.Context)
		val := b.buf[o:len(b.buf):len(b.buf)]
		b.msgs = append(b.msgs, kafka.Message{Value: val, Key: key})
	}
	// Keys were recorded as offsets into buf (it may have moved): make
	// them slices of the final buf.
	for i := range b.msgs {
		m := &b.msgs[i]
		if m.Key != nil {
			off := binary.LittleEndian.Uint32(m.Key[:4])
			n := binary.LittleEndian.Uint32(m.Key[4:8])
			m.Key = b.buf[off : off+n : off+n]
		}
	}
	b.size = int64(cap(b.buf)) + int64(cap(b.msgs))*64
	if l.queued.Add(b.size) > l.cfg.QueueBytes {
		l.queued.Add(-b.size)
		l.mDropped.WithLabelValues("queue_full").Add(float64(len(b.msgs)))
		l.pool.Put(b)
		return
	}
	select {
	case l.q <- b:
		l.mQueue.Set(float64(l.queued.Load()))
	default:
		l.queued.Add(-b.size)
		l.mDropped.WithLabelValues("queue_full").Add(float64(len(b.msgs)))
		l.pool.Put(b)
	}
}

// appendImpression appends one impression message: the id, the time, the
// candidate's non-null members, and the context's members the candidate
// does not set (a candidate's key overrides the context's, as in scoring).
// Members named like the id or time are left out. It returns the key as
// 8 bytes of offset and length into dst (fixed up by the caller), or nil.
func (l *impressionLog) appendImpression(dst []byte, sc *jsontext.Scanner, id uint64, ts int64, cand, ctx []byte) ([]byte, []byte) {
	dst = append(dst, '{')
	dst = append(dst, l.idKey...)
	dst = append(dst, '"')
	dst = appendHex16(dst, id)
	dst = append(dst, `",`...)
	dst = append(dst, l.tsKey...)
	dst = strconv.AppendInt(dst, ts, 10)
	var key []byte
	keyFrom := func(v []byte) {
		if key != nil {
			return
		}
		var off, n int
		switch jsontext.KindAt(v, 0) {
		case jsontext.KindNumber:
			off, n = 0, len(v)
		case jsontext.KindString:
			if len(v) >= 2 {
				off, n = 1, len(v)-2 // only unescaped keys are used: see below
			}
		default:
			return
		}
		key = make([]byte, 8)
		binary.LittleEndian.PutUint32(key[:4], uint32(len(dst)-len(v)+off))
		binary.LittleEndian.PutUint32(key[4:], uint32(n))
	}
	members(cand, sc, func(k, raw, v []byte) {
		if jsontext.IsLiteral(v, 0, "null") || string(k) == l.cfg.IDField || string(k) == l.cfg.TimeField {
			return
		}
		dst = append(append(dst, ','), raw...)
		if string(k) == l.cfg.KeyField && !hasEscape(v) {
			keyFrom(v)
		}
	})
	members(ctx, sc, func(k, raw, v []byte) {
		if string(k) == l.cfg.IDField || string(k) == l.cfg.TimeField || setIn(cand, sc, k) {
			return
		}
		dst = append(append(dst, ','), raw...)
		if string(k) == l.cfg.KeyField && !hasEscape(v) && !jsontext.IsLiteral(v, 0, "null") {
			keyFrom(v)
		}
	})
	return append(dst, '}'), key
}

// members calls fn for each member of the JSON object obj (already checked
// by the request decoder) with its unescaped key, its raw text (key, colon
// and value) and its value. The key is valid until the next call.
func members(obj []byte, sc *jsontext.Scanner, fn func(k, raw, v []byte)) {
	i := jsontext.SkipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return
	}
	i, more := jsontext.Open(obj, i)
	for more {
		sc.Buf = sc.Buf[:0]
		k, v, err := sc.Key(obj, i)
		if err != nil {
			return
		}
		end, err := jsontext.Skip(obj, v)
		if err != nil {
			return
		}
		fn(k, obj[i:end], obj[v:end])
		if i, more, err = jsontext.Next(obj, end, '}'); err != nil {
			return
		}
	}
}

// setIn reports whether the object cand has a non-null member named key.
func setIn(cand []byte, sc *jsontext.Scanner, key []byte) bool {
	var sc2 jsontext.Scanner
	found := false
	members(cand, &sc2, func(k, _, v []byte) {
		found = found || string(k) == string(key) && !jsontext.IsLiteral(v, 0, "null")
	})
	return found
}

func hasEscape(v []byte) bool {
	for _, c := range v {
		if c == '\\' {
			return true
		}
	}
	return false
}

const hexDigits = "0123456789abcdef"

// appendHex16 appends v as 16 lower-case hex digits.
func appendHex16(dst []byte, v uint64) []byte {
	for s := 60; s >= 0; s -= 4 {
		dst = append(dst, hexDigits[v>>uint(s)&15])
	}
	return dst
}

// mix64 is the splitmix64 finalizer, a bijection on uint64: distinct
// sequence numbers give distinct ids.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// run writes queued batches until the queue is closed.
func (l *impressionLog) run() {
	defer close(l.done)
	var msgs []kafka.Message
	var held []*impBatch
	for b := range l.q {
		if l.abandon.Load() {
			l.mDropped.WithLabelValues("closed").Add(float64(len(b.msgs)))
			l.queued.Add(-b.size)
			continue
		}
		msgs, held = append(msgs[:0], b.msgs...), append(held[:0], b)
		// Take what else is queued, up to a produce request's worth.
	more:
		for len(msgs) < l.cfg.BatchSize {
			select {
			case b, ok := <-l.q:
				if !ok {
					break more
				}
				msgs, held = append(msgs, b.msgs...), append(held, b)
			default:
				break more
			}
		}
		ctx, cancel := context.WithTimeout(l.wctx, l.cfg.WriteTimeout)
		err := l.w.WriteMessages(ctx, msgs...)
		cancel()
		if err != nil {
			l.mDropped.WithLabelValues("write_error").Add(float64(len(msgs)))
			l.log.Warn("serving: impressions not logged", "topic", l.cfg.Topic, "messages", len(msgs), "err", err)
		} else {
			l.mLogged.Add(float64(len(msgs)))
		}
		for _, b := range held {
			l.queued.Add(-b.size)
			l.pool.Put(b)
		}
		l.mQueue.Set(float64(l.queued.Load()))
		clear(msgs)
	}
}

// close stops taking impressions, writes what is queued until ctx ends
// (what is left is dropped as "closed") and closes the writer.
func (l *impressionLog) close(ctx context.Context) error {
	close(l.q)
	if !l.started {
		l.abandon.Store(true)
		go l.run()
	}
	select {
	case <-l.done:
	case <-ctx.Done():
		// The write in progress is cancelled (its messages count as
		// write_error) and the batches still queued are dropped.
		l.abandon.Store(true)
		l.wcancel()
		l.log.Warn("serving: impression log not flushed at shutdown", "queued_bytes", l.queued.Load())
		<-l.done
	}
	l.wcancel()
	err := l.w.Close()
	l.tr.CloseIdleConnections()
	return err
}
