package pipelines

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/ingest/join"
)

// JoinStateFile is the join state in a three-topic stream's checkpoint
// (join.Join.WriteTo: the pending impressions, clicks and conversions, the
// remembered ids, the counters and the offsets of the three topics).
const JoinStateFile = "join.bin"

// streamSource is what the stream loop reads: a single pre-joined topic
// (*ingest.KafkaSource) or three topics joined (*joinSource).
type streamSource interface {
	Next(ctx context.Context) (arrow.RecordBatch, error)
	Position() ingest.Position
	BatchStart() ingest.Position
	Commit(ctx context.Context, pos ingest.Position) error
	Stats() ingest.KafkaStats
	Close() error
}

// joinTopicName is the Position.Topic of a three-topic stream: the topics
// joined by "+", so a checkpoint of one set of topics is not resumed on
// another.
func joinTopicName(topics [3]string) string { return strings.Join(topics[:], "+") }

// joinSource reads the impression, click and conversion topics as one
// group member, joins them (ingest/join) and returns the joined examples as
// record batches of the spec's schema, as a KafkaSource returns events.
//
// Its position is the join's: Commit commits the offsets of the three
// topics as they were when the join state was last written into a
// checkpoint (state), whatever the position passed, so the offsets
// committed are always those of a durable state.
type joinSource struct {
	cfg    StreamConfig
	topics [3]string
	msgs   *ingest.KafkaMessages
	j      *join.Join
	dec    *features.JSONDecoder
	check  *features.Checker // the training Transformer's
	dl     ingest.DeadLetterSink
	m      *joinMetrics
	vals   [][]byte // the examples decoded into dec, by row
	bad    []bool

	raw   []ingest.Message
	jm    []join.Message
	out   join.Output
	pos   ingest.Position // after the last batch returned
	start ingest.Position // before it
	saved map[string]map[int]int64
	// restored is the checkpoint the state was restored from ("" for
	// none).
	restored string

	decodeDead map[string]int64
}

func newJoinSource(cfg StreamConfig, s *Setup, dl ingest.DeadLetterSink, m *joinMetrics) (*joinSource, error) {
	jc := *cfg.Join
	jc.Topics = cfg.JoinTopics
	jc.Allocator = cfg.Allocator
	j, err := join.New(jc)
	if err != nil {
		return nil, err
	}
	dec, err := features.NewJSONDecoder(s.Spec.Schema(true), features.JSONConfig{Allocator: cfg.Allocator, MaxEventBytes: cfg.MaxEventBytes})
	if err != nil {
		j.Close()
		return nil, err
	}
	js := &joinSource{cfg: cfg, topics: cfg.JoinTopics, j: j, dec: dec, check: s.Transformer.Checker(), dl: dl, m: m, decodeDead: map[string]int64{}}
	js.pos = js.position()
	js.start = js.pos
	js.saved = js.offsets()
	return js, nil
}

// restore reads the join state of the checkpoint in dir.
func (js *joinSource) restore(dir string) error {
	f, err := bundle.ReadCheckpointFile(dir, JoinStateFile)
	if err != nil {
		return fmt.Errorf("pipelines: stream: join state of %s: %w", dir, err)
	}
	defer f.Close()
	if _, err := js.j.ReadFrom(f); err != nil {
		return fmt.Errorf("pipelines: stream: join state of %s: %w", dir, err)
	}
	js.pos = js.position()
	js.start = js.pos
	js.saved = js.offsets()
	js.restored = dir
	return nil
}

// open joins the group, as its only member: the join state of a partition
// cannot move to another member with the partition (docs/streaming.md,
// "One member per joined stream"), so a second member is refused
// (ingest.ErrGroupShared), and so is a checkpoint whose state the group has
// moved past.
func (js *joinSource) open(ctx context.Context) error {
	if js.restored != "" {
		if err := js.checkCommitted(ctx); err != nil {
			return err
		}
	}
	var err error
	js.msgs, err = ingest.NewKafkaMessages(ctx, ingest.KafkaMessagesConfig{
		Brokers: js.cfg.Brokers, Topics: js.topics[:], GroupID: js.cfg.GroupID, InstanceID: js.cfg.InstanceID,
		BatchSize: js.cfg.MaxBatch, BatchWait: js.cfg.BatchWait, MaxMessageBytes: js.cfg.MaxEventBytes,
		SessionTimeout: js.cfg.SessionTimeout, Logger: js.cfg.Logger, Exclusive: true,
	})
	if err != nil {
		return fmt.Errorf("pipelines: stream: a stream of three topics must be its group's only member: %w", err)
	}
	// Every partition of the three topics holds its topic's watermark
	// until it delivers or turns idle: a partition fetched later must not
	// find its events behind a watermark the others moved. (While a
	// refused member holds some of them, they are quiet here: shorter
	// than IdleTimeout.)
	parts, err := js.msgs.Partitions(ctx)
	if err != nil {
		js.cfg.Logger.Warn("pipelines: stream: the topics' partitions are unknown; each counts once it delivers", "err", err)
		return nil
	}
	for t, name := range js.topics {
		if err := js.j.Assign(join.Topic(t), parts[name]); err != nil {
			return err
		}
	}
	return nil
}

// checkCommitted fails when the group's committed offset of a partition is
// past the restored state's: another stream consumed and committed it
// since this checkpoint was written (a second member, or another model
// root on the same group), so the state misses what it consumed (its
// pending impressions would close as negatives whose clicks went
// elsewhere). The group lagging the state is normal: a crash between a
// checkpoint and its commit.
func (js *joinSource) checkCommitted(ctx context.Context) error {
	for t, name := range js.topics {
		ls, err := ingest.GroupLag(ctx, js.cfg.Brokers, js.cfg.GroupID, name)
		if err != nil {
			js.cfg.Logger.Warn("pipelines: stream: the group's committed offsets are unknown; the checkpoint's state is taken as current", "err", err)
			return nil
		}
		offs := js.j.Offsets(join.Topic(t))
		for _, l := range ls {
			if l.Committed > offs[l.Partition] {
				return fmt.Errorf("pipelines: stream: group %s committed %s partition %d up to offset %d, past the join state of checkpoint %s (%d): "+
					"another stream consumed these topics in this group since; resume from a model root in step with the group, or start this one on a new group: %w",
					js.cfg.GroupID, name, l.Partition, l.Committed, js.restored, offs[l.Partition], ingest.ErrGroupShared)
			}
		}
	}
	return nil
}

// state is the checkpoint file of the join state; writing it records the
// offsets Commit commits.
func (js *joinSource) state() bundle.File {
	offs := js.offsets()
	return bundle.File{Name: JoinStateFile, Write: func(w io.Writer) error {
		if _, err := js.j.WriteTo(w); err != nil {
			return err
		}
		js.saved = offs
		return nil
	}}
}

// Unsaved reports whether the join consumed messages since its state was
// last written into a checkpoint: messages that emitted no example (a
// click waiting for its conversion window, a dead letter) still move the
// offsets a checkpoint commits.
func (js *joinSource) Unsaved() bool {
	for t, name := range js.topics {
		if !maps.Equal(js.j.Offsets(join.Topic(t)), js.saved[name]) {
			return true
		}
	}
	return false
}

func (js *joinSource) offsets() map[string]map[int]int64 {
	o := map[string]map[int]int64{}
	for t, name := range js.topics {
		o[name] = js.j.Offsets(join.Topic(t))
	}
	return o
}

// position is the join's Position: the joined topic name, the
// impressions' offsets, and the three topics' offsets by name (those the
// join state holds).
func (js *joinSource) position() ingest.Position {
	return ingest.Position{Topic: joinTopicName(js.topics), Offsets: js.j.Offsets(join.Impressions), Topics: js.offsets()}
}

// idleTick is how often a quiet stream advances the join's processing time,
// so partitions turn idle and windows close without new messages.
const idleTick = time.Second

// Next returns the next joined examples: it consumes messages (and, when
// none come for idleTick, advances the processing time) until the join
// emits at least one example that decodes.
func (js *joinSource) Next(ctx context.Context) (arrow.RecordBatch, error) {
	first := true
	for {
		tctx, cancel := context.WithTimeout(ctx, idleTick)
		var err error
		js.raw, err = js.msgs.Next(tctx, js.raw[:0])
		cancel()
		// The messages Next returns with a deadline or a stop are past
		// the reader: the join takes them before this returns, or a later
		// message of their partition would commit over them.
		if err != nil && (len(js.raw) == 0 || !(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled))) &&
			!(errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) {
			return nil, err
		}
		now := time.Now()
		js.out.Reset()
		if len(js.raw) == 0 {
			js.j.Advance(&js.out, now)
		} else {
			js.jm = js.jm[:0]
			for i := range js.raw {
				r := &js.raw[i]
				t := join.Topic(0)
				for k, name := range js.topics {
					if name == r.Topic {
						t = join.Topic(k)
					}
				}
				js.jm = append(js.jm, join.Message{Topic: t, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value})
			}
			if err := js.j.Add(&js.out, js.jm, now); err != nil {
				return nil, fmt.Errorf("pipelines: stream: join: %w", err)
			}
		}
		if first {
			js.start = js.pos
			first = false
		}
		js.pos = js.position()
		for _, d := range js.out.DeadLetters {
			if err := js.dl.Put(ctx, d); err != nil {
				return nil, fmt.Errorf("pipelines: stream: dead letter (%s): %w", d.Reason, err)
			}
		}
		if js.cfg.joinTap != nil {
			js.cfg.joinTap(js.out.Examples)
		}
		js.vals = js.vals[:0]
		for i := range js.out.Examples {
			ex := &js.out.Examples[i]
			js.m.observe(ex)
			if err := js.dec.Append(ex.Value); err != nil {
				if err := js.deadExample(ctx, ex.Value, decodeReason(err), err.Error(), now); err != nil {
					return nil, err
				}
				continue
			}
			js.vals = append(js.vals, ex.Value)
		}
		if js.dec.Len() > 0 {
			rec, err := js.checked(ctx, now)
			if err != nil || rec != nil {
				return rec, err
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if dl, ok := ctx.Deadline(); ok && time.Now().After(dl) {
			return nil, context.DeadlineExceeded
		}
	}
}

// deadExample sends a joined example the stream cannot train on to the
// dead letters, under the impressions topic (partition and offset unknown:
// -1).
func (js *joinSource) deadExample(ctx context.Context, v []byte, reason, detail string, now time.Time) error {
	js.decodeDead[reason]++
	d := ingest.DeadLetter{Topic: js.topics[join.Impressions], Partition: -1, Offset: -1, Value: v, Reason: reason, Detail: detail, Time: now}
	if err := js.dl.Put(ctx, d); err != nil {
		return fmt.Errorf("pipelines: stream: dead letter (%s): %w", d.Reason, err)
	}
	return nil
}

// checked returns the decoded examples without those the training
// Transformer's Checker refuses (dead letters, as the single topic's
// source does), or nil when none is left.
func (js *joinSource) checked(ctx context.Context, now time.Time) (arrow.RecordBatch, error) {
	rec := js.dec.NewRecordBatch()
	if js.check == nil {
		return rec, nil
	}
	n := int(rec.NumRows())
	js.bad = append(js.bad[:0], make([]bool, n)...)
	var faults []*features.RowError
	if _, err := js.check.CheckRows(rec, func(e *features.RowError) {
		if !js.bad[e.Row] {
			js.bad[e.Row] = true
			faults = append(faults, e)
		}
	}); err != nil {
		rec.Release()
		return nil, fmt.Errorf("pipelines: stream: join: %w", err)
	}
	if len(faults) == 0 {
		return rec, nil
	}
	rec.Release()
	for _, e := range faults {
		if err := js.deadExample(ctx, js.vals[e.Row], e.Fault, e.Error(), now); err != nil {
			return nil, err
		}
	}
	// Decode the good ones again (they decoded before).
	for i, v := range js.vals {
		if !js.bad[i] {
			if err := js.dec.Append(v); err != nil {
				return nil, fmt.Errorf("pipelines: stream: join: example %d decoded once and not twice: %w", i, err)
			}
		}
	}
	if js.dec.Len() == 0 {
		return nil, nil
	}
	return js.dec.NewRecordBatch(), nil
}

// decodeReason names a joined example's decoding failure as ingest does.
func decodeReason(err error) string {
	switch {
	case errors.Is(err, features.ErrEventTooLarge):
		return ingest.ReasonOversize
	case errors.Is(err, features.ErrEventMissingField):
		return ingest.ReasonMissingField
	case errors.Is(err, features.ErrEventType):
		return ingest.ReasonWrongType
	}
	return ingest.ReasonBadJSON
}

func (js *joinSource) Position() ingest.Position   { return clonePosition(js.pos) }
func (js *joinSource) BatchStart() ingest.Position { return clonePosition(js.start) }

// Commit commits the three topics' offsets of the join state last written
// (pos is not used: the stream's position is the impressions' alone).
func (js *joinSource) Commit(ctx context.Context, _ ingest.Position) error {
	if sy, ok := js.dl.(interface{ Sync(context.Context) error }); ok {
		if err := sy.Sync(ctx); err != nil {
			return fmt.Errorf("pipelines: stream: commit: %w", err)
		}
	}
	return js.msgs.Commit(ctx, js.saved)
}

// Stats sums the three topics' lags per partition number and counts the
// join's dead letters with the examples that did not decode.
func (js *joinSource) Stats() ingest.KafkaStats {
	st := ingest.KafkaStats{Lag: map[int]int64{}, DeadLetters: map[string]int64{}}
	if js.msgs != nil {
		ms := js.msgs.Stats()
		st.FetchErrors, st.StaleMembers = ms.FetchErrors, js.msgs.StaleMembers()
		for _, ps := range ms.Lag {
			for p, l := range ps {
				st.Lag[p] += l
			}
		}
	}
	jst := js.j.Stats()
	maps.Copy(st.DeadLetters, jst.DeadLetters)
	for r, n := range js.decodeDead {
		st.DeadLetters[r] += n
	}
	for _, n := range jst.Messages {
		st.Events += n
	}
	return st
}

// Close leaves the group and releases the join and the decoder.
func (js *joinSource) Close() error {
	var err error
	if js.msgs != nil {
		err = js.msgs.Close()
	}
	js.j.Close()
	js.dec.Release()
	return err
}

// joinStatus renders the join's part of the status line.
func joinStatus(st join.Stats) string {
	wm := func(t int) string {
		if st.Watermarks[t] == math.MinInt64 {
			return "-"
		}
		return time.UnixMilli(st.Watermarks[t]).UTC().Format("15:04:05")
	}
	return fmt.Sprintf("  join: examples neg=%d click=%d conv=%d final=%d  pending imp=%d clicked=%d waiting=%d  state %.1f MiB  watermarks %s/%s/%s",
		st.Examples[join.Negative], st.Examples[join.Click], st.Examples[join.Conversion], st.Examples[join.Final],
		st.Pending, st.Clicked, st.Waiting, float64(st.StateBytes)/(1<<20), wm(0), wm(1), wm(2))
}

// joinMetrics are the Prometheus metrics of a three-topic stream: the
// join's counters and state, read at each scrape (join.Stats is safe for
// concurrent use), and the label delays of the examples it emitted.
type joinMetrics struct {
	j      func() *join.Join
	topics [3]string
	delay  *prometheus.HistogramVec

	examples, pending, dead, evicted, watermark, state, messages *prometheus.Desc
}

func newJoinMetrics(topics [3]string, j func() *join.Join) *joinMetrics {
	return &joinMetrics{
		j: j, topics: topics,
		delay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "onestone_join_label_delay_seconds",
			Help:    "Event-time delay of the labels the join emitted: click (click - impression), conversion (conversion - click), and emit (when the example was emitted - the event that decided it, by kind).",
			Buckets: []float64{.1, .5, 1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 86400, 7 * 86400},
		}, []string{"label"}),
		examples:  prometheus.NewDesc("onestone_join_examples_total", "Examples the join emitted, by kind (negative, click, conversion, final).", []string{"kind"}, nil),
		pending:   prometheus.NewDesc("onestone_join_pending", "Entries of the join state: pending (impressions waiting for a click), clicked (waiting for a conversion), waiting (clicks or conversions waiting for their impression), tombstones (closed ids remembered).", []string{"state"}, nil),
		dead:      prometheus.NewDesc("onestone_join_dead_letters_total", "Messages the join did not use, by reason (late_click, late_conversion, orphan_click, duplicate_click, conversion_without_click, ...: docs/streaming.md).", []string{"reason"}, nil),
		evicted:   prometheus.NewDesc("onestone_join_evicted_total", "What the state cap did: pending impressions emitted early as negatives, clicked ones that stopped waiting, waiting events and tombstones forgotten.", []string{"what"}, nil),
		watermark: prometheus.NewDesc("onestone_join_watermark_seconds", "Event-time watermark per topic (Unix time).", []string{"topic"}, nil),
		state:     prometheus.NewDesc("onestone_join_state_bytes", "Accounted memory of the join state (the quantity max_state_bytes caps).", nil, nil),
		messages:  prometheus.NewDesc("onestone_join_messages_total", "Messages consumed, per topic.", []string{"topic"}, nil),
	}
}

func (m *joinMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.examples, m.pending, m.dead, m.evicted, m.watermark, m.state, m.messages} {
		ch <- d
	}
	m.delay.Describe(ch)
}

func (m *joinMetrics) Collect(ch chan<- prometheus.Metric) {
	m.delay.Collect(ch)
	j := m.j()
	if j == nil {
		return
	}
	st := j.Stats()
	for k := join.Negative; k <= join.Final; k++ {
		ch <- prometheus.MustNewConstMetric(m.examples, prometheus.CounterValue, float64(st.Examples[k]), k.String())
	}
	for _, p := range []struct {
		name string
		n    int64
	}{{"pending", st.Pending}, {"clicked", st.Clicked}, {"waiting", st.Waiting}, {"tombstones", st.Tombstones}} {
		ch <- prometheus.MustNewConstMetric(m.pending, prometheus.GaugeValue, float64(p.n), p.name)
	}
	for r, n := range st.DeadLetters {
		ch <- prometheus.MustNewConstMetric(m.dead, prometheus.CounterValue, float64(n), r)
	}
	for _, e := range []struct {
		name string
		n    int64
	}{{"pending", st.EvictedPending}, {"clicked", st.EvictedClicked}, {"waiting", st.EvictedWaiting}, {"tombstones", st.EvictedTombstones}} {
		ch <- prometheus.MustNewConstMetric(m.evicted, prometheus.CounterValue, float64(e.n), e.name)
	}
	for t, name := range m.topics {
		if st.Watermarks[t] != math.MinInt64 {
			ch <- prometheus.MustNewConstMetric(m.watermark, prometheus.GaugeValue, float64(st.Watermarks[t])/1000, name)
		}
		ch <- prometheus.MustNewConstMetric(m.messages, prometheus.CounterValue, float64(st.Messages[t]), name)
	}
	ch <- prometheus.MustNewConstMetric(m.state, prometheus.GaugeValue, float64(st.StateBytes))
}

// observe records an emitted example's label delays.
func (m *joinMetrics) observe(ex *join.Example) {
	if m == nil {
		return
	}
	switch ex.Kind {
	case join.Click:
		m.delay.WithLabelValues("click").Observe(float64(ex.ClickTime-ex.ImpressionTime) / 1000)
	case join.Conversion:
		m.delay.WithLabelValues("conversion").Observe(float64(ex.ConversionTime-ex.ClickTime) / 1000)
	case join.Final:
		if ex.ConversionTime > 0 {
			m.delay.WithLabelValues("conversion").Observe(float64(ex.ConversionTime-ex.ClickTime) / 1000)
		}
	}
	decided := ex.ImpressionTime
	switch {
	case ex.ConversionTime > 0:
		decided = ex.ConversionTime
	case ex.ClickTime > 0:
		decided = ex.ClickTime
	}
	m.delay.WithLabelValues("emit_" + ex.Kind.String()).Observe(float64(ex.EmitTime-decided) / 1000)
}

// serveMetrics serves the stream's metrics (and the join's, jm, when set)
// on cfg.MetricsAddr; stop shuts the server down.
func (st *streamRun) serveMetrics(jm *joinMetrics) (stop func(), err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "onestone_stream_examples_total", Help: "Examples trained on (the model's lineage: restored from the checkpoint after a restart).",
	}, func() float64 { return float64(st.trained.Load()) }))
	if jm != nil {
		reg.MustRegister(jm)
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", st.cfg.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("pipelines: stream: metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	st.printf("stream: metrics on http://%s/metrics\n", ln.Addr())
	st.metricsAddr = ln.Addr().String()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}
