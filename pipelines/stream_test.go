package pipelines

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/internal/kafkatest"
	"github.com/onestone/onestone/serving"
)

// streamBrokers returns the brokers to test against (ONESTONE_KAFKA_BROKERS,
// else a fresh embedded broker of the given partitions closed at the end of
// the test) and a topic unique to the test.
func streamBrokers(t testing.TB, partitions int) (brokers []string, topic string) {
	t.Helper()
	return kafkatest.Cluster(t, "onestone-stream", partitions, func(topic string) []string {
		b, err := ingest.StartBroker(context.Background(), ingest.BrokerConfig{Partitions: partitions, Topics: []string{topic}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b.Addrs()
	})
}

// streamData generates data with the small test model and fits its
// statistics; it returns the data directory and the spec path.
func streamData(t testing.TB, rows int64) (dir, spec string) {
	t.Helper()
	dir, spec = genData(t, rows, "")
	if _, err := LoadSetup(spec, fitForTraining(context.Background(), []string{filepath.Join(dir, "train-*.parquet")}, nil, false, nil)); err != nil {
		t.Fatal(err)
	}
	return dir, spec
}

// produceFile replays Parquet files into topic (keyed by user id) and
// returns the event count.
func produceFile(t testing.TB, brokers []string, topic string, paths []string, rate float64, limit int64) int64 {
	t.Helper()
	n, err := produceFiles(context.Background(), brokers, topic, paths, rate, limit)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func produceFiles(ctx context.Context, brokers []string, topic string, paths []string, rate float64, limit int64) (int64, error) {
	src, err := ingest.NewParquetSource(ctx, ingest.ParquetConfig{Paths: paths, BatchSize: 2048})
	if err != nil {
		return 0, err
	}
	defer src.Close()
	return ingest.Produce(ctx, ingest.ProduceConfig{Brokers: brokers, Topic: topic, Rate: rate, Limit: limit}, src)
}

func quietStreamLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// syncBuffer is a goroutine-safe strings.Builder for progress output.
type syncBuffer struct {
	mu sync.Mutex
	sb strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.String()
}

func sumOffsets(o map[int]int64) int64 {
	var n int64
	for _, v := range o {
		n += v
	}
	return n
}

// committedOffsets reads the group's committed offsets.
func committedOffsets(t testing.TB, brokers []string, topic, group string, partitions int) map[int]int64 {
	t.Helper()
	ps := make([]int, partitions)
	for i := range ps {
		ps[i] = i
	}
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: tr}
	resp, err := c.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			t.Fatalf("offset fetch partition %d: %v", p.Partition, p.Error)
		}
		if p.CommittedOffset >= 0 {
			out[p.Partition] = p.CommittedOffset
		}
	}
	return out
}

// streamLog is an observer that keeps a stream's published bundles and
// commits, and cancels the stream once stop, asked after each commit with
// the newest published bundle, says so. It also notes the time of the
// stream's latest sign of progress (start, micro-batch, checkpoint,
// publish, commit), which runStream watches.
type streamLog struct {
	pubs     []Published
	commits  []Commit
	stop     func(Published) bool
	cancel   func()
	progress atomic.Int64 // unix nanoseconds of the latest sign of progress
}

func (l *streamLog) moved() { l.progress.Store(time.Now().UnixNano()) }

func (l *streamLog) ObserveStart(Start) error           { l.moved(); return nil }
func (l *streamLog) ObserveBatch(TrainedBatch) error    { l.moved(); return nil }
func (l *streamLog) ObserveCheckpoint(Checkpoint) error { l.moved(); return nil }
func (l *streamLog) ObservePublish(p Published) error {
	l.moved()
	l.pubs = append(l.pubs, p)
	return nil
}

func (l *streamLog) ObserveCommit(c Commit) error {
	l.moved()
	l.commits = append(l.commits, c)
	if len(l.pubs) > 0 && l.stop(l.pubs[len(l.pubs)-1]) {
		l.cancel()
	}
	return nil
}

// onPublish and onCommit adapt functions to observers.
type (
	onPublish func(Published)
	onCommit  func(Commit)
)

func (f onPublish) ObservePublish(p Published) error { f(p); return nil }
func (f onCommit) ObserveCommit(c Commit) error      { f(c); return nil }

// streamStall is how long runStream lets a stream go without a sign of
// progress before it gives up on it. There is no budget for the whole
// run: a loaded machine under the race detector trains a few hundred
// events a second, and a run only fails when it stops moving.
const streamStall = 60 * time.Second

// runStream runs StreamTrain until stop says so (see streamLog), then
// cancels it and returns what it published and committed, and its error.
// It fails the test when the stream shows no progress for streamStall.
func runStream(t *testing.T, cfg StreamConfig, stop func(Published) bool) (*streamLog, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := &streamLog{stop: stop, cancel: cancel}
	l.moved()
	cfg.Observers = append(slices.Clip(cfg.Observers), l)
	var stalled atomic.Bool
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if time.Since(time.Unix(0, l.progress.Load())) > streamStall {
					stalled.Store(true)
					cancel()
					return
				}
			}
		}
	}()
	t0 := time.Now()
	err := StreamTrain(ctx, cfg)
	cancel()
	<-watched
	t.Logf("StreamTrain ran %v", time.Since(t0).Round(time.Millisecond))
	if stalled.Load() {
		t.Fatalf("the stream made no progress for %v before reaching its goal", streamStall)
	}
	return l, err
}

func TestStreamTrainLearnsPublishesCommitsAndResumes(t *testing.T) {
	const parts = 3
	dir, spec := streamData(t, 100000)
	brokers, topic := streamBrokers(t, parts)
	n := produceFile(t, brokers, topic, []string{filepath.Join(dir, "train-00000.parquet")}, 0, 0)
	root := filepath.Join(t.TempDir(), "live")
	var prog syncBuffer
	var journal bytes.Buffer
	rep, err := NewReport(ReportConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := StreamConfig{
		Brokers: brokers, Topic: topic, GroupID: "g1", SpecPath: spec, Model: root,
		CheckpointEvents: 10000, CheckpointEvery: time.Second, MaxBatch: 1000, BatchWait: 50 * time.Millisecond,
		Window: 10000, Progress: &prog, ProgressEvery: 200 * time.Millisecond,
		Logger: quietStreamLogger(), Observers: []Observer{rep, NewJournal(&journal)},
	}
	l, err := runStream(t, cfg, func(p Published) bool { return sumOffsets(p.Position.Offsets) >= n })
	if err != nil {
		t.Fatalf("StreamTrain: %v\n%s", err, prog.String())
	}
	pubs := l.pubs
	if len(pubs) < 3 {
		t.Fatalf("%d bundles published for %d events at one per 10000: want several", len(pubs), n)
	}
	last := pubs[len(pubs)-1]
	if last.Examples != n {
		t.Errorf("trained on %d examples, produced %d: every event exactly once on a run without failures", last.Examples, n)
	}
	for i, p := range pubs {
		if i > 0 && p.Examples <= pubs[i-1].Examples {
			t.Errorf("publish %d: examples %d did not grow from %d", i, p.Examples, pubs[i-1].Examples)
		}
	}
	for i, c := range l.commits {
		if c.Err != nil {
			t.Errorf("commit %d (%s): %v", i, c.Version, c.Err)
		}
	}
	// The journal's micro-batches follow each other on every partition
	// and add up to the events; the report saw the steps, and the
	// progressive metrics at each checkpoint.
	ends := map[int]int64{}
	var rows int64
	sc := bufio.NewScanner(&journal)
	for sc.Scan() {
		var jl JournalLine
		if err := json.Unmarshal(sc.Bytes(), &jl); err != nil {
			t.Fatal(err)
		}
		if jl.Event != JournalBatch {
			continue
		}
		rows += int64(jl.Rows)
		for p, to := range jl.To.Offsets {
			if from := jl.From.Offsets[p]; from != ends[p] {
				t.Errorf("partition %d: a micro-batch starts at %d, the one before ended at %d", p, from, ends[p])
			}
			ends[p] = to
		}
	}
	if rows != n || sumOffsets(ends) != n {
		t.Errorf("the journal's micro-batches hold %d rows ending at offsets %v, want %d", rows, ends, n)
	}
	if len(rep.steps) == 0 || len(rep.evals) != len(pubs) {
		t.Errorf("the report saw %d steps and %d evaluations for %d checkpoints", len(rep.steps), len(rep.evals), len(pubs))
	}
	// The group's offsets are the last published position.
	got := committedOffsets(t, brokers, topic, "g1", parts)
	if sumOffsets(got) != n {
		t.Errorf("committed offsets %v sum to %d, want %d", got, sumOffsets(got), n)
	}
	// The progressive evaluation shows learning (0.5 is chance).
	for _, m := range last.Metrics {
		if m.Objective == "ctr" && !(m.AUC > 0.6) {
			t.Errorf("windowed ctr AUC %.4f: the stream did not learn\n%s", m.AUC, prog.String())
		}
	}
	// The latest bundle is the last published, serving loads it, and its
	// manifest records the position.
	dirLatest, err := bundle.Resolve(filepath.Join(root, bundle.LatestLink))
	if err != nil || filepath.Base(dirLatest) != last.Version {
		t.Fatalf("latest resolves to %s (%v), want %s", dirLatest, err, last.Version)
	}
	b, err := serving.LoadBundle(dirLatest)
	if err != nil {
		t.Fatalf("serving refuses the published bundle: %v", err)
	}
	if len(b.Manifest.Sample) == 0 {
		t.Error("the published bundle carries no sample events")
	}
	// Pruning keeps DefaultKeepBundles and the delta chain of the newest
	// (all of them here: one snapshot, then deltas).
	if vs, _ := bundle.NewDir(root).Versions(context.Background()); len(vs) > DefaultKeepBundles && (vs[0] != pubs[0].Version || pubs[1].Parent == "") {
		t.Errorf("%d bundles kept, want at most %d besides the newest's chain", len(vs), DefaultKeepBundles)
	}
	for _, want := range []string{"ev/s", "lag p", "loss ctr=", "window ctr auc=", "dead letters 0", "published v"} {
		if !strings.Contains(prog.String(), want) {
			t.Errorf("progress output lacks %q:\n%s", want, prog.String())
		}
	}

	// A restart resumes from the checkpoint: more events are trained on
	// exactly once, on top of the earlier ones.
	m := produceFile(t, brokers, topic, []string{filepath.Join(dir, "train-00001.parquet")}, 0, 3000)
	prog = syncBuffer{}
	cfg.Observers = nil
	l, err = runStream(t, cfg, func(p Published) bool { return sumOffsets(p.Position.Offsets) >= n+m })
	if err != nil {
		t.Fatalf("restart: %v\n%s", err, prog.String())
	}
	pubs = l.pubs
	if !strings.Contains(prog.String(), "resumed from") {
		t.Errorf("the restart did not resume:\n%s", prog.String())
	}
	if got := pubs[len(pubs)-1].Examples; got != n+m {
		t.Errorf("after the restart: %d examples, want %d + %d", got, n, m)
	}
	if pubs[len(pubs)-1].Steps <= last.Steps {
		t.Errorf("steps %d after the restart, not beyond %d", pubs[len(pubs)-1].Steps, last.Steps)
	}
}

func TestStreamConfigValidate(t *testing.T) {
	ok := StreamConfig{Brokers: []string{"127.0.0.1:9092"}, Topic: "events", GroupID: "g", SpecPath: "spec.yaml", Model: "m"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*StreamConfig)
		want string
	}{
		{"no brokers", func(c *StreamConfig) { c.Brokers = nil }, "no brokers"},
		{"no topic", func(c *StreamConfig) { c.Topic = "" }, "no topic"},
		{"no group", func(c *StreamConfig) { c.GroupID = "" }, "no consumer group"},
		{"no spec", func(c *StreamConfig) { c.SpecPath = "" }, "no spec"},
		{"no model", func(c *StreamConfig) { c.Model = "" }, "no model root"},
		{"negative interval", func(c *StreamConfig) { c.CheckpointEvery = -time.Second }, "negative"},
		{"negative events", func(c *StreamConfig) { c.CheckpointEvents = -1 }, "negative"},
		{"negative window", func(c *StreamConfig) { c.Window = -1 }, "window -1"},
		{"empty dead-letter topic", func(c *StreamConfig) { c.DeadLetters = "topic:" }, `dead letters "topic:"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "pipelines: ") {
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
			// StreamTrain refuses it before touching anything.
			if err := StreamTrain(context.Background(), c); err == nil {
				t.Error("StreamTrain accepted the bad config")
			}
		})
	}
	// A model root that cannot be created is refused before connecting.
	file := filepath.Join(t.TempDir(), "a-file")
	os.WriteFile(file, nil, 0o644)
	c := ok
	c.Model = filepath.Join(file, "m")
	if err := StreamTrain(context.Background(), c); err == nil || !strings.Contains(err.Error(), "a-file") {
		t.Errorf("model root under a file: %v, want an error naming it", err)
	}
}

func TestStreamRefusesBatchCheckpointAndMissingStats(t *testing.T) {
	dir, spec := streamData(t, 12000)
	brokers, topic := streamBrokers(t, 1)
	// A batch-training checkpoint under the root: the stream must not
	// resume from a Parquet position.
	root := filepath.Join(t.TempDir(), "models")
	if _, err := TrainBatch(context.Background(), TrainBatchConfig{SpecPath: spec, Data: []string{filepath.Join(dir, "train-00000.parquet")}, Out: root, MaxSteps: 3}); err != nil {
		t.Fatal(err)
	}
	err := StreamTrain(context.Background(), StreamConfig{Brokers: brokers, Topic: topic, GroupID: "g", SpecPath: spec, Model: root, Logger: quietStreamLogger()})
	if !errors.Is(err, ErrPositionMismatch) || !strings.Contains(err.Error(), "Parquet file") {
		t.Errorf("resuming a batch checkpoint: %v, want ErrPositionMismatch naming the file", err)
	}
	// No statistics, no checkpoint, no --init-from: a clear error.
	other := filepath.Join(t.TempDir(), "spec.yaml")
	text, _ := os.ReadFile(spec)
	if err := os.WriteFile(other, text, 0o644); err != nil {
		t.Fatal(err)
	}
	err = StreamTrain(context.Background(), StreamConfig{Brokers: brokers, Topic: topic, GroupID: "g", SpecPath: other, Model: filepath.Join(t.TempDir(), "m"), Logger: quietStreamLogger()})
	if err == nil || !strings.Contains(err.Error(), "onestone fit") {
		t.Errorf("missing statistics: %v, want an error pointing at 'onestone fit'", err)
	}
	// With --init-from, the bundle's statistics are used (and saved beside
	// the spec) and the stream warm-starts from the batch-trained bundle.
	produceFile(t, brokers, topic, []string{filepath.Join(dir, "train-00001.parquet")}, 0, 2000)
	var prog syncBuffer
	_, err = runStream(t, StreamConfig{
		Brokers: brokers, Topic: topic, GroupID: "g2", SpecPath: other, Model: filepath.Join(t.TempDir(), "live"),
		InitFrom: root, CheckpointEvents: 1000, BatchWait: 50 * time.Millisecond, Progress: &prog, Logger: quietStreamLogger(),
	}, func(p Published) bool { return p.Examples >= 2000 })
	if err != nil {
		t.Fatalf("warm start: %v\n%s", err, prog.String())
	}
	if !strings.Contains(prog.String(), "warm-started") {
		t.Errorf("no warm start:\n%s", prog.String())
	}
	if _, err := os.Stat(features.StatsPath(other)); err != nil {
		t.Errorf("the bundle's statistics were not saved beside the spec: %v", err)
	}
}

// TestStreamJSONBatchesMatchParquet checks the whole Kafka path against the
// Parquet path: the same rows, produced as JSON (ids as numbers) and decoded
// with the spec's canonical schema (ids as text), transform to the same
// feature ids, dense values, labels and groups as when read from Parquet
// (ids as int64), since the Transformer hashes integers by their decimal
// text.
func TestStreamJSONBatchesMatchParquet(t *testing.T) {
	dir, spec := streamData(t, 12000)
	s, err := LoadSetup(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	brokers, topic := streamBrokers(t, 1) // one partition keeps the order
	file := filepath.Join(dir, "train-00000.parquet")
	const rows = 3000
	produceFile(t, brokers, topic, []string{file}, 0, rows)

	ctx := context.Background()
	psrc, err := ingest.NewParquetSource(ctx, ingest.ParquetConfig{Paths: []string{file}, Columns: s.Spec.Columns(true), BatchSize: rows})
	if err != nil {
		t.Fatal(err)
	}
	defer psrc.Close()
	prec, err := psrc.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer prec.Release()
	var want features.Batch
	if err := s.Transformer.TransformTo(&want, prec); err != nil {
		t.Fatal(err)
	}

	ksrc, err := ingest.NewKafkaSource(ctx, ingest.KafkaConfig{
		Brokers: brokers, Topic: topic, GroupID: "ids", Schema: s.Spec.Schema(true),
		BatchSize: rows, BatchWait: 5 * time.Second, Logger: quietStreamLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ksrc.Close()
	var gotRows int
	var parts []features.Batch
	for gotRows < rows {
		rec, err := ksrc.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var b features.Batch
		err = s.Transformer.TransformTo(&b, rec)
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
		gotRows += b.Rows
		parts = append(parts, b)
	}
	if gotRows != rows || want.Rows != rows {
		t.Fatalf("rows: kafka %d, parquet %d, want %d", gotRows, want.Rows, rows)
	}
	lay := s.Transformer.Layout()
	r0 := 0
	for _, b := range parts {
		for i := range b.Rows {
			r := r0 + i
			for f, sf := range lay.Sparse {
				g, w := rowIDs(b.Sparse[f], i), rowIDs(want.Sparse[f], r)
				if fmt.Sprint(g) != fmt.Sprint(w) {
					t.Fatalf("row %d field %s: kafka ids %v, parquet ids %v", r, sf.Name, g, w)
				}
			}
			for d := range b.DenseWidth {
				g, w := b.Dense[i*b.DenseWidth+d], want.Dense[r*want.DenseWidth+d]
				if math.Abs(float64(g-w)) > 1e-6*math.Max(1, math.Abs(float64(w))) {
					t.Fatalf("row %d dense %s: kafka %v, parquet %v", r, lay.Dense[d].Name, g, w)
				}
			}
			for l := range b.Labels {
				if b.Labels[l][i] != want.Labels[l][r] {
					t.Fatalf("row %d label %s: kafka %v, parquet %v", r, lay.Labels[l], b.Labels[l][i], want.Labels[l][r])
				}
			}
			if (b.Groups == nil) != (want.Groups == nil) || b.Groups != nil && b.Groups[i] != want.Groups[r] {
				t.Fatalf("row %d: group keys differ", r)
			}
		}
		r0 += b.Rows
	}
}

// rowIDs returns the ids of row i of a sparse column.
func rowIDs(c features.SparseColumn, i int) []int32 {
	if c.Offsets == nil {
		return c.IDs[i : i+1]
	}
	return c.IDs[c.Offsets[i]:c.Offsets[i+1]]
}

// TestStreamDeadLettersGoToTheFileAndTheStreamGoesOn sends malformed events
// among good ones: those that do not decode, and those that decode but
// that training cannot use (the poison events of issue 12: a label of 2, a
// price of 1e300, a standardized value beyond float32), and one longer than
// the size limit. They land in the dead-letter file with their reason,
// topic, partition and offset, the good ones are trained
// on, the status line counts them by reason, and the committed offsets
// move past them.
func TestStreamDeadLettersGoToTheFileAndTheStreamGoesOn(t *testing.T) {
	dir, spec := streamData(t, 12000)
	brokers, topic := streamBrokers(t, 1)
	good := produceFile(t, brokers, topic, []string{filepath.Join(dir, "train-00000.parquet")}, 0, 500)
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Transport: &kafka.Transport{}}
	bad := []struct {
		value, reason string
	}{
		{`{"click": 1, "conversion"`, ingest.ReasonBadJSON},
		{`{"click": "yes", "conversion": 0}`, ingest.ReasonWrongType},
		{`{"user_id": 7}`, ingest.ReasonMissingField},
		{`{"user_id": 5, "item_id": 7, "click": 2, "conversion": 0}`, ingest.ReasonBadLabel},
		{`{"user_id": 5, "item_id": 7, "price": 1e300, "click": 1, "conversion": 0}`, ingest.ReasonOutOfRange},
		{`{"user_id": 5, "item_id": 7, "item_popularity": -1e39, "click": 0, "conversion": 0}`, ingest.ReasonOutOfRange},
		{`{"user_id": 5, "item_id": 7, "click": 1, "conversion": 0, "pad": "` + strings.Repeat("x", 5000) + `"}`, ingest.ReasonOversize},
	}
	for _, b := range bad {
		if err := w.WriteMessages(context.Background(), kafka.Message{Value: []byte(b.value)}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	w.Transport.(*kafka.Transport).CloseIdleConnections()
	more := produceFile(t, brokers, topic, []string{filepath.Join(dir, "train-00001.parquet")}, 0, 500)
	total := good + more + int64(len(bad))
	dlq := filepath.Join(t.TempDir(), "dlq.jsonl")
	var prog syncBuffer
	l, err := runStream(t, StreamConfig{
		Brokers: brokers, Topic: topic, GroupID: "dl", SpecPath: spec, Model: filepath.Join(t.TempDir(), "live"),
		DeadLetters: "file:" + dlq, MaxEventBytes: 4096, CheckpointEvents: 100, BatchWait: 50 * time.Millisecond,
		Progress: &prog, ProgressEvery: time.Nanosecond, Logger: quietStreamLogger(),
	}, func(p Published) bool { return p.Position.Offsets[0] >= total })
	if err != nil {
		t.Fatalf("%v\n%s", err, prog.String())
	}
	data, err := os.ReadFile(dlq)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != len(bad) {
		t.Fatalf("%d dead letters, want %d:\n%s", len(lines), len(bad), data)
	}
	// Events that do not decode go to the dead letters as they are read,
	// those the Checker refuses once their batch is decoded: match them by
	// offset.
	type letter struct {
		Topic     string `json:"topic"`
		Partition int    `json:"partition"`
		Offset    int64  `json:"offset"`
		Reason    string `json:"reason"`
		Detail    string `json:"detail"`
	}
	byOffset := map[int64]letter{}
	for _, line := range lines {
		var d letter
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("dead letter %.300s: %v", line, err)
		}
		byOffset[d.Offset] = d
	}
	for i, b := range bad {
		off := good + int64(i)
		d, ok := byOffset[off]
		if !ok || d.Reason != b.reason || d.Topic != topic || d.Partition != 0 || d.Detail == "" {
			t.Errorf("dead letter of offset %d: %+v (found %v), want reason %s, topic %s, partition 0 and a detail", off, d, ok, b.reason, topic)
		}
	}
	if want := "dead letters 7 (bad_json=1 bad_label=1 missing_field=1 out_of_range=2 oversize=1 wrong_type=1)"; !strings.Contains(prog.String(), want) {
		t.Errorf("the status line does not count the dead letters by reason (%q):\n%s", want, prog.String())
	}
	if last := l.pubs[len(l.pubs)-1]; last.Examples != good+more {
		t.Errorf("%d examples trained, want the %d good events", last.Examples, good+more)
	}
	if got := committedOffsets(t, brokers, topic, "dl", 1); got[0] != total {
		t.Errorf("committed offset %d, want %d (past the dead letters)", got[0], total)
	}
}
