package gen

import (
	"bufio"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/onestone/onestone/internal/jsontext"
)

// StreamTopic is one of the three generated event streams.
type StreamTopic uint8

// The generated streams.
const (
	// TopicImpressions: what the ranker logged when it showed an item.
	TopicImpressions StreamTopic = iota
	// TopicClicks: what the client logged when the user clicked.
	TopicClicks
	// TopicConversions: what the shop logged when the click converted.
	TopicConversions
)

// String returns the topic's name: impressions, clicks or conversions.
func (t StreamTopic) String() string {
	switch t {
	case TopicImpressions:
		return "impressions"
	case TopicClicks:
		return "clicks"
	case TopicConversions:
		return "conversions"
	}
	return "topic(" + strconv.Itoa(int(t)) + ")"
}

// Delays of the generated streams, before StreamsConfig.TimeScale.
//
// A click comes a log-normal delay after its impression: median
// ClickDelayMedian, log-scale deviation ClickDelaySigma (mean about 20 s,
// 99th percentile about 2.7 min), redrawn above MaxClickDelay. A
// conversion comes a log-normal delay after its click: mean
// ConversionDelayMean before truncation (median about 58 min),
// ConversionDelaySigma 1.5, so the 99th percentile is about 33 times the
// median where an exponential delay would give 6.6 times; redrawn above
// MaxConversionDelay, which leaves a mean of about 2.9 h. Delays do not
// depend on the impression's features.
const (
	ClickDelayMedian     = 10 * time.Second
	ClickDelaySigma      = 1.2
	MaxClickDelay        = 20 * time.Minute
	ConversionDelayMean  = 3 * time.Hour
	ConversionDelaySigma = 1.5
	MaxConversionDelay   = 6 * 24 * time.Hour
	// MaxEarlyClick is how long before its impression an early click (a
	// client clock running behind the ranker's) is logged at most.
	MaxEarlyClick = 2 * time.Second
	// MaxRetryDelay is how long after the original a duplicate is logged
	// at most.
	MaxRetryDelay = 5 * time.Second
)

// StreamsConfig configures NewStreams and WriteStreams.
type StreamsConfig struct {
	// Dir is where WriteStreams writes its files (created if missing).
	// Required by WriteStreams, unused by NewStreams.
	Dir string
	// Impressions is the number of impressions drawn (logged or not).
	// Default: 100,000.
	Impressions int64
	// Users, Items, Seed and TaskCorr draw the World as in Config: the
	// same values give the same world as Generate, so Generate's Parquet
	// files (for onestone fit and held-out evaluation) and the streams
	// share it. The impressions are drawn from their own random stream.
	// Defaults: 20,000 users and items, seed 0, correlation 0.
	Users, Items int
	Seed         uint64
	TaskCorr     float64
	// Rate is the mean number of impressions per second of event time (a
	// Poisson process). Default: 1000.
	Rate float64
	// Start is the event time of the first impression.
	// Default: 2024-01-01T00:00:00Z.
	Start time.Time
	// TimeScale multiplies every delay (clicks, conversions, early clicks,
	// retries) but not the impression rate, so a test covers hours of
	// conversions in seconds: 0.01 turns the 3 h mean conversion delay into
	// 108 s. Default: 1.
	TimeScale float64
	// Duplicates is the share of the events of each topic that are logged
	// twice (a retry, up to MaxRetryDelay later). Default: 0.002; a
	// negative value means none.
	Duplicates float64
	// EarlyClicks is the share of clicks logged up to MaxEarlyClick before
	// their impression (so an event-time replay sends them first).
	// Default: 0.02; a negative value means none.
	EarlyClicks float64
	// Unlogged is the share of impressions that are never logged, though
	// their clicks and conversions are (orphans). Default: 0.001; a
	// negative value means none.
	Unlogged float64
}

// Validate reports whether the configuration is usable.
func (c StreamsConfig) Validate() error {
	switch {
	case c.Impressions < 0:
		return fmt.Errorf("gen: StreamsConfig.Impressions %d is negative", c.Impressions)
	case c.Users < 0 || c.Items < 0:
		return fmt.Errorf("gen: StreamsConfig.Users %d or Items %d is negative", c.Users, c.Items)
	case !(c.TaskCorr >= -1 && c.TaskCorr <= 1):
		return fmt.Errorf("gen: StreamsConfig.TaskCorr %v outside [-1, 1]", c.TaskCorr)
	case !(c.Rate >= 0) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("gen: StreamsConfig.Rate %v: want a finite rate >= 0", c.Rate)
	case !(c.TimeScale >= 0) || math.IsInf(c.TimeScale, 0):
		return fmt.Errorf("gen: StreamsConfig.TimeScale %v: want a finite factor >= 0", c.TimeScale)
	case !(c.Duplicates < 1) || !(c.EarlyClicks < 1) || !(c.Unlogged < 1):
		return fmt.Errorf("gen: StreamsConfig: shares (duplicates %v, early clicks %v, unlogged %v) must be below 1", c.Duplicates, c.EarlyClicks, c.Unlogged)
	}
	return nil
}

func (c StreamsConfig) withDefaults() StreamsConfig {
	if c.Impressions == 0 {
		c.Impressions = 100_000
	}
	if c.Users == 0 {
		c.Users = 20_000
	}
	if c.Items == 0 {
		c.Items = 20_000
	}
	if c.Rate == 0 {
		c.Rate = 1000
	}
	if c.Start.IsZero() {
		c.Start = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if c.TimeScale == 0 {
		c.TimeScale = 1
	}
	share := func(v *float64, def float64) {
		switch {
		case *v == 0:
			*v = def
		case *v < 0:
			*v = 0
		}
	}
	share(&c.Duplicates, 0.002)
	share(&c.EarlyClicks, 0.02)
	share(&c.Unlogged, 0.001)
	return c
}

// StreamEvent is one message of a generated stream.
type StreamEvent struct {
	Topic StreamTopic
	// Time orders the topic's log: the event time (Value's ts_ms), plus
	// the retry delay for a duplicate. Events come in non-decreasing Time,
	// within each topic and across the three.
	Time int64
	// Key is the Kafka message key: the user id's decimal text.
	Key []byte
	// Value is the JSON message (docs/streaming.md, "Event formats").
	Value []byte
	// Duplicate marks the second copy of an event.
	Duplicate bool
}

// Truth is what happened to one impression, logged or not.
type Truth struct {
	ImpressionID string `json:"impression_id"`
	UserID       int64  `json:"user_id"`
	ItemID       int64  `json:"item_id"`
	// Time is the impression's event time in ms since the epoch.
	Time int64 `json:"ts_ms"`
	// Logged is false for an impression that was never logged (its
	// clicks and conversions are orphans).
	Logged bool `json:"logged"`
	Click  bool `json:"click"`
	// ClickTime is the click's logged event time (0 without a click).
	ClickTime int64 `json:"click_ts_ms,omitempty"`
	// EarlyClick marks a click logged before its impression.
	EarlyClick bool `json:"early_click,omitempty"`
	Conversion bool `json:"conversion"`
	// ConversionTime is the conversion's event time (0 without one).
	ConversionTime int64   `json:"conversion_ts_ms,omitempty"`
	TrueCTR        float64 `json:"true_ctr"`
	TrueCVR        float64 `json:"true_cvr"`
}

// StreamsSummary counts what a Streams generated.
type StreamsSummary struct {
	// Impressions drawn, of which Logged were written.
	Impressions int64 `json:"impressions"`
	Logged      int64 `json:"logged"`
	// Clicks and Conversions are distinct events (duplicates not counted).
	Clicks      int64 `json:"clicks"`
	Conversions int64 `json:"conversions"`
	// Duplicates counts the second copies, by topic.
	Duplicates [3]int64 `json:"duplicates"`
	// EarlyClicks were logged before their impression.
	EarlyClicks int64 `json:"early_clicks"`
	// OrphanClicks and OrphanConversions belong to unlogged impressions.
	OrphanClicks      int64 `json:"orphan_clicks"`
	OrphanConversions int64 `json:"orphan_conversions"`
	// FirstTime and LastTime span the impressions' event times (ms).
	FirstTime int64 `json:"first_ts_ms"`
	LastTime  int64 `json:"last_ts_ms"`
	// Files are the paths WriteStreams wrote: impressions, clicks,
	// conversions and truth.
	Files []string `json:"files,omitempty"`
	// Spec is the spec.yaml WriteStreams wrote: SpecYAML with the join:
	// section of StreamsJoinYAML.
	Spec string `json:"spec,omitempty"`
}

// Streams draws the three event streams and their truth from a World in
// bounded memory: events wait in a queue only until no later impression can
// produce an earlier one. It is deterministic for a configuration. A
// Streams is not safe for concurrent use.
type Streams struct {
	cfg     StreamsConfig
	w       *World
	imp     *Stream
	r       *rand.Rand // delays and anomalies
	ev      Event
	idKey   uint64
	drawn   int64
	acc     float64 // event-time seconds from Start to the next impression
	nextMs  int64   // event time of the next impression
	startMs int64
	margin  int64 // ms an event may precede its impression (early clicks)
	q       eventQueue
	seq     uint64
	truth   []Truth
	sum     StreamsSummary
}

// NewStreams returns the streams of cfg (its Dir is not used).
func NewStreams(cfg StreamsConfig) (*Streams, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	w, err := NewWorld(cfg.Seed, cfg.Users, cfg.Items, cfg.TaskCorr)
	if err != nil {
		return nil, err
	}
	s := &Streams{
		cfg:     cfg,
		w:       w,
		imp:     w.NewStream(cfg.Seed, 1<<40),
		r:       rand.New(rand.NewPCG(cfg.Seed^0x2545f4914f6cdd1d, 1<<40)),
		idKey:   mix64(cfg.Seed ^ 0x6a09e667f3bcc909),
		startMs: cfg.Start.UnixMilli(),
		margin:  scaledMs(MaxEarlyClick.Seconds(), cfg.TimeScale),
	}
	s.nextMs = s.startMs
	s.sum.FirstTime = s.startMs
	return s, nil
}

// Next returns the next event in log order, or false when every event was
// returned. The event's Key and Value are its own (not reused).
func (s *Streams) Next() (StreamEvent, bool) {
	for {
		done := s.drawn == s.cfg.Impressions
		if len(s.q) > 0 && (done || s.q[0].ev.Time < s.nextMs-s.margin) {
			return heap.Pop(&s.q).(queued).ev, true
		}
		if done {
			return StreamEvent{}, false
		}
		s.draw()
	}
}

// DrainTruth appends the truth of the impressions drawn since the last call
// to dst, in drawing order, and forgets them.
func (s *Streams) DrainTruth(dst []Truth) []Truth {
	dst = append(dst, s.truth...)
	s.truth = s.truth[:0]
	return dst
}

// Summary returns the counts so far (final once Next returned false).
func (s *Streams) Summary() StreamsSummary { return s.sum }

// draw draws the next impression and queues its events.
func (s *Streams) draw() {
	cfg := &s.cfg
	ts := s.nextMs
	e := &s.ev
	s.imp.Next(e)
	id := impressionID(s.idKey, uint64(s.drawn))
	s.drawn++
	t := Truth{ImpressionID: id, UserID: e.UserID, ItemID: e.ItemID, Time: ts, Logged: true,
		TrueCTR: e.TrueCTR, TrueCVR: e.TrueCVR}
	s.sum.Impressions++
	s.sum.LastTime = ts
	if s.r.Float64() < cfg.Unlogged {
		t.Logged = false
	} else {
		s.sum.Logged++
		s.push(TopicImpressions, ts, e.UserID, appendImpression(nil, id, ts, e))
	}
	if e.Click == 1 {
		s.sum.Clicks++
		clickAt := ts + scaledMs(clickDelay(s.r), cfg.TimeScale)
		logged := clickAt
		if s.r.Float64() < cfg.EarlyClicks {
			logged = ts - int64(s.r.Float64()*float64(s.margin))
			t.EarlyClick = true
			s.sum.EarlyClicks++
		}
		t.Click, t.ClickTime = true, logged
		s.push(TopicClicks, logged, e.UserID, appendAction(nil, id, logged, e.UserID))
		if !t.Logged {
			s.sum.OrphanClicks++
		}
		if e.Conversion == 1 {
			s.sum.Conversions++
			convAt := clickAt + scaledMs(conversionDelay(s.r), cfg.TimeScale)
			t.Conversion, t.ConversionTime = true, convAt
			s.push(TopicConversions, convAt, e.UserID, appendAction(nil, id, convAt, e.UserID))
			if !t.Logged {
				s.sum.OrphanConversions++
			}
		}
	}
	s.truth = append(s.truth, t)
	s.acc += s.r.ExpFloat64() / cfg.Rate
	s.nextMs = s.startMs + int64(s.acc*1000)
}

// push queues an event and, with probability Duplicates, its retry.
func (s *Streams) push(topic StreamTopic, ts, user int64, value []byte) {
	key := strconv.AppendInt(nil, user, 10)
	s.seq++
	heap.Push(&s.q, queued{ev: StreamEvent{Topic: topic, Time: ts, Key: key, Value: value}, seq: s.seq})
	if s.r.Float64() < s.cfg.Duplicates {
		s.sum.Duplicates[topic]++
		retry := scaledMs(s.r.Float64()*MaxRetryDelay.Seconds(), s.cfg.TimeScale)
		s.seq++
		heap.Push(&s.q, queued{ev: StreamEvent{Topic: topic, Time: ts + retry, Key: key, Value: value, Duplicate: true}, seq: s.seq})
	}
}

// clickDelay draws a click delay in seconds (before TimeScale).
func clickDelay(r *rand.Rand) float64 {
	return truncLogNormal(r, math.Log(ClickDelayMedian.Seconds()), ClickDelaySigma, MaxClickDelay.Seconds())
}

// conversionDelay draws a conversion delay in seconds (before TimeScale).
func conversionDelay(r *rand.Rand) float64 {
	mu := math.Log(ConversionDelayMean.Seconds()) - ConversionDelaySigma*ConversionDelaySigma/2
	return truncLogNormal(r, mu, ConversionDelaySigma, MaxConversionDelay.Seconds())
}

// truncLogNormal draws exp(N(mu, sigma²)) conditioned on being <= max.
func truncLogNormal(r *rand.Rand, mu, sigma, max float64) float64 {
	for {
		if x := math.Exp(mu + sigma*r.NormFloat64()); x <= max {
			return x
		}
	}
}

// scaledMs converts seconds times scale to whole milliseconds.
func scaledMs(sec, scale float64) int64 { return int64(math.Round(sec * scale * 1000)) }

// impressionID is a 16-hex-digit id, distinct for distinct n (mix64 is a
// bijection).
func impressionID(key, n uint64) string {
	var b [16]byte
	const hexd = "0123456789abcdef"
	v := mix64(n + key)
	for i := 15; i >= 0; i-- {
		b[i] = hexd[v&15]
		v >>= 4
	}
	return string(b[:])
}

// mix64 is the splitmix64 finalizer, a bijection on uint64.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// appendImpression appends the impression message: its id, event time and
// the features the ranker scored (the columns of Event without labels and
// true probabilities).
func appendImpression(b []byte, id string, ts int64, e *Event) []byte {
	b = append(b, `{"impression_id":`...)
	b = jsontext.AppendString(b, id)
	b = append(b, `,"ts_ms":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"user_id":`...)
	b = strconv.AppendInt(b, e.UserID, 10)
	b = append(b, `,"item_id":`...)
	b = strconv.AppendInt(b, e.ItemID, 10)
	b = append(b, `,"category":`...)
	b = jsontext.AppendString(b, e.Category)
	b = append(b, `,"brand":`...)
	b = jsontext.AppendString(b, e.Brand)
	b = append(b, `,"device":`...)
	b = jsontext.AppendString(b, e.Device)
	b = append(b, `,"hour":`...)
	b = strconv.AppendInt(b, int64(e.Hour), 10)
	b = append(b, `,"position":`...)
	b = strconv.AppendInt(b, int64(e.Position), 10)
	b = append(b, `,"price":`...)
	b = jsontext.AppendFloat(b, e.Price, 64)
	b = append(b, `,"age":`...)
	if e.Age == nil {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendInt(b, int64(*e.Age), 10)
	}
	b = append(b, `,"user_tags":[`...)
	for i, t := range e.UserTags {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsontext.AppendString(b, t)
	}
	b = append(b, `],"user_activity":`...)
	b = jsontext.AppendFloat(b, e.UserActivity, 64)
	b = append(b, `,"item_popularity":`...)
	b = jsontext.AppendFloat(b, e.ItemPopularity, 64)
	return append(b, '}')
}

// appendAction appends a click or conversion message.
func appendAction(b []byte, id string, ts, user int64) []byte {
	b = append(b, `{"impression_id":`...)
	b = jsontext.AppendString(b, id)
	b = append(b, `,"ts_ms":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"user_id":`...)
	b = strconv.AppendInt(b, user, 10)
	return append(b, '}')
}

type queued struct {
	ev  StreamEvent
	seq uint64
}

// eventQueue is a min-heap of events by (Time, seq).
type eventQueue []queued

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].ev.Time != q[j].ev.Time {
		return q[i].ev.Time < q[j].ev.Time
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(queued)) }
func (q *eventQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	old[len(old)-1] = queued{}
	*q = old[:len(old)-1]
	return x
}

// StreamFiles are the files WriteStreams writes into its directory: one
// JSON message per line, in log order, per topic, and the truth.
var StreamFiles = [...]string{"impressions.jsonl", "clicks.jsonl", "conversions.jsonl", "truth.jsonl"}

// WriteStreams writes the three streams of cfg, one message per line in log
// order, to cfg.Dir/impressions.jsonl, clicks.jsonl and conversions.jsonl,
// the truth (one Truth per impression, in impression order) to
// truth.jsonl, and the spec of the streams (SpecYAML and StreamsJoinYAML)
// to spec.yaml.
func WriteStreams(ctx context.Context, cfg StreamsConfig) (sum *StreamsSummary, err error) {
	if cfg.Dir == "" {
		return nil, errors.New("gen: StreamsConfig.Dir is empty")
	}
	s, err := NewStreams(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("gen: %w", err)
	}
	var files [4]*os.File
	var bufs [4]*bufio.Writer
	var paths []string
	defer func() {
		for i, f := range files {
			if f == nil {
				continue
			}
			if ferr := bufs[i].Flush(); err == nil && ferr != nil {
				err = fmt.Errorf("gen: %s: %w", f.Name(), ferr)
			}
			if cerr := f.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("gen: %s: %w", f.Name(), cerr)
			}
		}
	}()
	for i, name := range StreamFiles {
		p := filepath.Join(cfg.Dir, name)
		if files[i], err = os.Create(p); err != nil {
			return nil, fmt.Errorf("gen: %w", err)
		}
		bufs[i] = bufio.NewWriterSize(files[i], 1<<16)
		paths = append(paths, p)
	}
	var truth []Truth
	writeTruth := func() error {
		truth = s.DrainTruth(truth[:0])
		for i := range truth {
			b, err := json.Marshal(&truth[i])
			if err != nil {
				return err
			}
			bufs[3].Write(b)
			if err := bufs[3].WriteByte('\n'); err != nil {
				return fmt.Errorf("gen: %s: %w", paths[3], err)
			}
		}
		return nil
	}
	for n := 0; ; n++ {
		ev, ok := s.Next()
		if !ok {
			break
		}
		bufs[ev.Topic].Write(ev.Value)
		if err := bufs[ev.Topic].WriteByte('\n'); err != nil {
			return nil, fmt.Errorf("gen: %s: %w", paths[ev.Topic], err)
		}
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if err := writeTruth(); err != nil {
				return nil, err
			}
		}
	}
	if err := writeTruth(); err != nil {
		return nil, err
	}
	out := s.Summary()
	out.Files = paths
	out.Spec = filepath.Join(cfg.Dir, "spec.yaml")
	spec := SpecYAML(s.cfg.Users, s.cfg.Items) + StreamsJoinYAML(s.cfg.TimeScale)
	if err := os.WriteFile(out.Spec, []byte(spec), 0o644); err != nil {
		return nil, fmt.Errorf("gen: %w", err)
	}
	return &out, nil
}

// StreamsJoinYAML returns the join: section of a spec (ingest/join's
// Config) for streams drawn with the given time scale: windows that hold
// every generated delay (MaxClickDelay and MaxConversionDelay, scaled and
// rounded up to the second), so the joined labels equal the truth, and
// the clicks trained at once with fake-negative weighting.
func StreamsJoinYAML(timeScale float64) string {
	if timeScale <= 0 {
		timeScale = 1
	}
	win := func(d time.Duration) time.Duration {
		return time.Duration(math.Ceil(d.Seconds()*timeScale)) * time.Second
	}
	return fmt.Sprintf(`# The three streams of "onestone gen --streams" (time scale %g): windows
# that hold every generated delay, so the joined labels are the truth.
join:
  click_window: %v
  conversion_window: %v
  emit: click
  correction: fnw
`, timeScale, win(MaxClickDelay), win(MaxConversionDelay))
}
