package ingest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/onestone/onestone/internal/kafkatest"
	"github.com/onestone/onestone/internal/s3test"
)

func TestMain(m *testing.M) {
	// s3test.Main starts the S3 test server for the tests that use it.
	// The AWS SDK's HTTP client keeps idle connections to it and offers
	// no way to close them: their goroutines are not leaks.
	goleak.VerifyTestMain(withS3{m},
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"))
}

type withS3 struct{ m *testing.M }

func (w withS3) Run() int { return s3test.Main(w.m) }

// testBrokers returns the brokers to test against (ONESTONE_KAFKA_BROKERS,
// else a fresh embedded broker of 4 partitions closed at the end of the
// test) and a topic unique to the test.
func testBrokers(t testing.TB) (brokers []string, topic string) {
	t.Helper()
	return kafkatest.Cluster(t, "onestone-test", 4, func(topic string) []string {
		b, err := StartBroker(context.Background(), BrokerConfig{Partitions: 4, Topics: []string{topic}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b.Addrs()
	})
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// memSource serves records from memory, then io.EOF.
type memSource struct {
	recs []arrow.RecordBatch
	i    int
}

func (m *memSource) Next(context.Context) (arrow.RecordBatch, error) {
	if m.i >= len(m.recs) {
		return nil, io.EOF
	}
	r := m.recs[m.i]
	m.i++
	r.Retain()
	return r, nil
}
func (m *memSource) Position() Position { return Position{Row: int64(m.i)} }
func (m *memSource) Close() error {
	for _, r := range m.recs {
		r.Release()
	}
	return nil
}

func eventsSchema() *arrow.Schema {
	return arrow.NewSchema([]arrow.Field{
		{Name: "event_id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "user_id", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "price", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "tags", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
		{Name: "click", Type: arrow.PrimitiveTypes.Int64},
	}, nil)
}

// makeEvents builds n events with ids from first, in records of 1000 rows.
func makeEvents(mem memory.Allocator, first, n int) *memSource {
	s := &memSource{}
	b := array.NewRecordBuilder(mem, eventsSchema())
	defer b.Release()
	for i := first; i < first+n; i++ {
		b.Field(0).(*array.Int64Builder).Append(int64(i))
		if i%7 == 0 {
			b.Field(1).AppendNull()
		} else {
			b.Field(1).(*array.StringBuilder).Append(fmt.Sprintf("u%d", i%97))
		}
		b.Field(2).(*array.Float64Builder).Append(float64(i) / 3)
		lb := b.Field(3).(*array.ListBuilder)
		lb.Append(true)
		lb.ValueBuilder().(*array.StringBuilder).Append(fmt.Sprintf("t%d", i%5))
		b.Field(4).(*array.Int64Builder).Append(int64(i % 2))
		if (i-first+1)%1000 == 0 || i == first+n-1 {
			s.recs = append(s.recs, b.NewRecordBatch())
		}
	}
	return s
}

// checkRow verifies that row r of rec is event id and returns id.
func checkRow(t *testing.T, rec arrow.RecordBatch, r int) int64 {
	t.Helper()
	id := rec.Column(0).(*array.Int64).Value(r)
	i := int(id)
	u := rec.Column(1).(*array.String)
	if i%7 == 0 {
		if u.IsValid(r) {
			t.Fatalf("event %d: user_id %q, want null", id, u.Value(r))
		}
	} else if u.Value(r) != fmt.Sprintf("u%d", i%97) {
		t.Fatalf("event %d: user_id %q", id, u.Value(r))
	}
	if p := rec.Column(2).(*array.Float64).Value(r); p != float64(i)/3 {
		t.Fatalf("event %d: price %v, want %v", id, p, float64(i)/3)
	}
	l := rec.Column(3).(*array.List)
	lo, hi := l.ValueOffsets(r)
	if hi-lo != 1 || l.ListValues().(*array.String).Value(int(lo)) != fmt.Sprintf("t%d", i%5) {
		t.Fatalf("event %d: tags wrong", id)
	}
	if c := rec.Column(4).(*array.Int64).Value(r); c != int64(i%2) {
		t.Fatalf("event %d: click %d", id, c)
	}
	return id
}

// consumeIDs reads from s until want events arrived (or the deadline) and
// returns how often each id was seen.
func consumeIDs(t *testing.T, ctx context.Context, s *KafkaSource, want int, seen map[int64]int) {
	t.Helper()
	got := 0
	for got < want {
		rec, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %d of %d events: %v", got, want, err)
		}
		for r := 0; r < int(rec.NumRows()); r++ {
			seen[checkRow(t, rec, r)]++
		}
		got += int(rec.NumRows())
		rec.Release()
	}
}

func writeRaw(t *testing.T, ctx context.Context, brokers []string, topic string, partition int, values ...string) {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, BatchTimeout: time.Millisecond, Transport: tr,
		Balancer: kafka.BalancerFunc(func(kafka.Message, ...int) int { return partition })}
	defer w.Close()
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		msgs[i] = kafka.Message{Key: []byte("bad"), Value: []byte(v)}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

func TestKafkaRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	brokers, topic := testBrokers(t)

	const n = 3000
	src := makeEvents(mem, 0, n)
	sent, err := Produce(ctx, ProduceConfig{Brokers: brokers, Topic: topic, Compression: "snappy", BatchSize: 500}, src)
	src.Close()
	if err != nil || sent != n {
		t.Fatalf("Produce: %d, %v", sent, err)
	}
	bad := []string{
		`{"event_id":1,"click":`,                   // bad_json
		`not json at all`,                          // bad_json
		`{"event_id":2,"price":"cheap","click":1}`, // wrong_type
		`{"event_id":3,"user_id":"u"}`,             // missing_field
		`{"event_id":4,"click":1,"pad":"` + strings.Repeat("x", 3000) + `"}`, // oversize
	}
	writeRaw(t, ctx, brokers, topic, 2, bad...)

	dlqPath := filepath.Join(t.TempDir(), "dead.jsonl")
	dlq, err := NewFileDeadLetters(dlqPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := KafkaConfig{
		Brokers: brokers, Topic: topic, GroupID: "g-" + topic, Schema: eventsSchema(),
		BatchSize: 700, BatchWait: 100 * time.Millisecond, MaxEventBytes: 2048,
		DeadLetters: dlq, Allocator: mem, HeartbeatInterval: 500 * time.Millisecond,
		SessionTimeout: 6 * time.Second, Logger: quietLogger(),
	}
	s, err := NewKafkaSource(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]int{}
	consumeIDs(t, ctx, s, n, seen)
	// The dead letters are at the end of partition 2; wait for them.
	for dlq.Count() < int64(len(bad)) {
		short, c := context.WithTimeout(ctx, 2*time.Second)
		rec, err := s.Next(short)
		c()
		if err == nil {
			t.Fatalf("unexpected batch of %d rows", rec.NumRows())
		}
		if ctx.Err() != nil {
			t.Fatalf("dead letters: %d of %d", dlq.Count(), len(bad))
		}
	}
	for id := int64(0); id < n; id++ {
		if seen[id] != 1 {
			t.Fatalf("event %d seen %d times", id, seen[id])
		}
	}
	st := s.Stats()
	wantDL := map[string]int64{ReasonBadJSON: 2, ReasonWrongType: 1, ReasonMissingField: 1, ReasonOversize: 1}
	for r, k := range wantDL {
		if st.DeadLetters[r] != k {
			t.Errorf("dead letters %s = %d, want %d (%v)", r, st.DeadLetters[r], k, st.DeadLetters)
		}
	}
	if st.Events != n {
		t.Errorf("Stats.Events = %d", st.Events)
	}
	// Dead letters are consumed too: the position includes them only after
	// a batch is returned, so produce one more event to move past them.
	more := makeEvents(mem, n, 1)
	if _, err := Produce(ctx, ProduceConfig{Brokers: brokers, Topic: topic, KeyColumn: "-"}, more); err != nil {
		t.Fatal(err)
	}
	more.Close()
	consumeIDs(t, ctx, s, 1, seen)
	pos := s.Position()
	total := int64(0)
	for _, off := range pos.Offsets {
		total += off
	}
	if pos.Topic != topic || total != n+1+int64(len(bad)) {
		t.Fatalf("position %+v sums to %d, want %d", pos, total, n+1+len(bad))
	}
	if err := s.Commit(ctx, pos); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := dlq.Close(); err != nil {
		t.Fatal(err)
	}
	checkDeadLetterFile(t, dlqPath, bad)

	// Restart in the same group: resumes after the committed offsets.
	more = makeEvents(mem, n+1, 50)
	if _, err := Produce(ctx, ProduceConfig{Brokers: brokers, Topic: topic}, more); err != nil {
		t.Fatal(err)
	}
	more.Close()
	cfg.DeadLetters = nil
	s2, err := NewKafkaSource(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	seen2 := map[int64]int{}
	consumeIDs(t, ctx, s2, 50, seen2)
	s2.Close()
	for id, k := range seen2 {
		if id < n+1 || k != 1 {
			t.Fatalf("after restart: event %d seen %d times", id, k)
		}
	}

	// A new group with Start offsets from the checkpoint skips what the
	// checkpoint holds.
	cfg.GroupID = "other-" + topic
	cfg.Start = pos.Offsets
	s3, err := NewKafkaSource(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	seen3 := map[int64]int{}
	consumeIDs(t, ctx, s3, 50, seen3)
	if st := s3.Stats(); st.Skipped != n+1+int64(len(bad)) || len(seen3) != 50 {
		t.Errorf("Start offsets: skipped %d, got %d events", st.Skipped, len(seen3))
	}
	s3.Close()
}

func checkDeadLetterFile(t *testing.T, path string, bad []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var lines []deadLetterLine
	for sc.Scan() {
		var l deadLetterLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("dead letter line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) != len(bad) {
		t.Fatalf("%d dead letter lines, want %d", len(lines), len(bad))
	}
	for i, l := range lines {
		if l.Partition != 2 || l.Value == nil || *l.Value != bad[i] || l.Offset != lines[0].Offset+int64(i) || l.Key == nil || *l.Key != "bad" {
			t.Errorf("dead letter %d: %+v", i, l)
		}
	}
	if !strings.Contains(lines[2].Detail, `field "price": want number, found string`) {
		t.Errorf("detail %q", lines[2].Detail)
	}
}

// TestKafkaRebalance runs two sources in one group; the second joins after
// the first has started. Every event arrives at least once; since each
// batch is committed before the next is read, an event is read twice only
// when a partition moves between a read and its commit, at most one batch
// per partition.
func TestKafkaRebalance(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	brokers, topic := testBrokers(t)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	const n = 4000
	cfg := KafkaConfig{
		Brokers: brokers, Topic: topic, GroupID: "g-" + topic, Schema: eventsSchema(),
		BatchSize: 100, BatchWait: 50 * time.Millisecond, Allocator: mem,
		HeartbeatInterval: 300 * time.Millisecond, SessionTimeout: 6 * time.Second, Logger: quietLogger(),
	}
	var mu sync.Mutex
	seen := map[int64]int{}
	total := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
	var perMember [2]atomic.Int64
	run := func(name string, member int, started chan<- struct{}) error {
		s, err := NewKafkaSource(ctx, cfg)
		if err != nil {
			return err
		}
		defer s.Close()
		for total() < n {
			short, c := context.WithTimeout(ctx, 500*time.Millisecond)
			rec, err := s.Next(short)
			c()
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				continue
			}
			mu.Lock()
			for r := 0; r < int(rec.NumRows()); r++ {
				seen[checkRow(t, rec, r)]++
			}
			mu.Unlock()
			perMember[member].Add(rec.NumRows())
			rec.Release()
			if started != nil {
				close(started)
				started = nil
			}
			if err := s.Commit(ctx, s.Position()); err != nil {
				t.Logf("%s: commit: %v (retried with the next batch)", name, err)
			}
			time.Sleep(60 * time.Millisecond) // slow consumer: work is left when the second member joins
		}
		return nil
	}
	src := makeEvents(mem, 0, n)
	if _, err := Produce(ctx, ProduceConfig{Brokers: brokers, Topic: topic, Compression: "lz4"}, src); err != nil {
		t.Fatal(err)
	}
	src.Close()
	errs := make(chan error, 2)
	started := make(chan struct{})
	go func() { errs <- run("first", 0, started) }()
	<-started
	go func() { errs <- run("second", 1, nil) }()
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	dups := 0
	for id := int64(0); id < n; id++ {
		if seen[id] == 0 {
			t.Fatalf("event %d lost", id)
		}
		dups += seen[id] - 1
	}
	t.Logf("%d events: first member %d, second %d, %d read twice (commit raced a rebalance)", n, perMember[0].Load(), perMember[1].Load(), dups)
	if dups > 4*cfg.BatchSize {
		t.Errorf("%d duplicates, more than one batch per partition", dups)
	}
	if perMember[1].Load() == 0 {
		t.Error("the second member got no partition: no rebalance happened")
	}
}

// TestKafkaBrokerRestart stops the embedded broker under a running source
// and restarts it on the same address and data directory: the source
// reconnects and every event arrives.
func TestKafkaBrokerRestart(t *testing.T) {
	if os.Getenv("ONESTONE_KAFKA_BROKERS") != "" {
		t.Skip("restarts the embedded broker")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	dir := t.TempDir()
	topic := "restart"
	b, err := StartBroker(ctx, BrokerConfig{Topics: []string{topic}, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Addrs()[0]
	produce := func(first, n int) {
		src := makeEvents(mem, first, n)
		defer src.Close()
		if _, err := Produce(ctx, ProduceConfig{Brokers: []string{addr}, Topic: topic, Compression: "zstd"}, src); err != nil {
			t.Fatal(err)
		}
	}
	produce(0, 1000)
	s, err := NewKafkaSource(ctx, KafkaConfig{
		Brokers: []string{addr}, Topic: topic, GroupID: "g", Schema: eventsSchema(),
		BatchSize: 1000, BatchWait: 50 * time.Millisecond, Allocator: mem,
		HeartbeatInterval: 300 * time.Millisecond, SessionTimeout: 6 * time.Second, Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	seen := map[int64]int{}
	consumeIDs(t, ctx, s, 1000, seen)
	if err := s.Commit(ctx, s.Position()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	b.Close()
	b, err = StartBroker(ctx, BrokerConfig{Addr: addr, Topics: []string{topic}, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	produce(1000, 1000)
	consumeIDs(t, ctx, s, 1000, seen)
	t.Logf("all events %v after the restart; fetch errors retried: %d", time.Since(start).Round(time.Millisecond), s.Stats().FetchErrors)
	for id := int64(0); id < 2000; id++ {
		if seen[id] != 1 {
			t.Fatalf("event %d seen %d times", id, seen[id])
		}
	}
}

// TestKcatInterop reads events another client produced; scripts/kcat-interop.sh
// runs it after producing with kcat (librdkafka) in each compression codec.
// Event i of each topic is {"event_id":i,"user_id":"u<i%97>","price":i/4,
// "tags":["t<i%5>"],"click":i%2}, keyed by user_id.
func TestKcatInterop(t *testing.T) {
	brokers, topics := os.Getenv("ONESTONE_KCAT_BROKERS"), os.Getenv("ONESTONE_KCAT_TOPICS")
	if brokers == "" || topics == "" {
		t.Skip("run by scripts/kcat-interop.sh")
	}
	var n int
	if _, err := fmt.Sscan(os.Getenv("ONESTONE_KCAT_EVENTS"), &n); err != nil {
		t.Fatalf("ONESTONE_KCAT_EVENTS: %v", err)
	}
	for _, topic := range strings.Split(topics, ",") {
		t.Run(topic, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			s, err := NewKafkaSource(ctx, KafkaConfig{
				Brokers: strings.Split(brokers, ","), Topic: topic, GroupID: "interop-" + topic,
				Schema: eventsSchema(), BatchWait: 100 * time.Millisecond, Allocator: mem, Logger: quietLogger(),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			seen := map[int64]int{}
			for got := 0; got < n; {
				rec, err := s.Next(ctx)
				if err != nil {
					t.Fatalf("after %d of %d events: %v", got, n, err)
				}
				for r := 0; r < int(rec.NumRows()); r++ {
					id := rec.Column(0).(*array.Int64).Value(r)
					i := int(id)
					if u := rec.Column(1).(*array.String).Value(r); u != fmt.Sprintf("u%d", i%97) {
						t.Fatalf("event %d: user_id %q", id, u)
					}
					if p := rec.Column(2).(*array.Float64).Value(r); p != float64(i)/4 {
						t.Fatalf("event %d: price %v", id, p)
					}
					l := rec.Column(3).(*array.List)
					lo, hi := l.ValueOffsets(r)
					if hi-lo != 1 || l.ListValues().(*array.String).Value(int(lo)) != fmt.Sprintf("t%d", i%5) {
						t.Fatalf("event %d: tags", id)
					}
					if c := rec.Column(4).(*array.Int64).Value(r); c != int64(i%2) {
						t.Fatalf("event %d: click %d", id, c)
					}
					seen[id]++
				}
				got += int(rec.NumRows())
				rec.Release()
			}
			for id := int64(0); id < int64(n); id++ {
				if seen[id] != 1 {
					t.Fatalf("event %d seen %d times", id, seen[id])
				}
			}
			if st := s.Stats(); len(st.DeadLetters) != 0 {
				t.Fatalf("dead letters: %v", st.DeadLetters)
			}
			t.Logf("%s: %d events, values checked", topic, n)
		})
	}
}

// TestKafkaDeadLetters sends malformed events to a dead-letter topic and
// reads them back with their headers.
func TestKafkaDeadLetters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	brokers, topic := testBrokers(t)
	dlq, err := NewKafkaDeadLetters(KafkaDeadLettersConfig{Brokers: brokers, Topic: topic + ".dlq"})
	if err != nil {
		t.Fatal(err)
	}
	writeRaw(t, ctx, brokers, topic, 1, `{"click":true}`, `{"event_id":5,"click":1}`)
	s, err := NewKafkaSource(ctx, KafkaConfig{
		Brokers: brokers, Topic: topic, GroupID: "g-" + topic, Schema: eventsSchema(),
		BatchWait: 10 * time.Millisecond, DeadLetters: dlq, Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := s.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rec.NumRows() != 1 || rec.Column(0).(*array.Int64).Value(0) != 5 {
		t.Fatalf("got %d rows", rec.NumRows())
	}
	rec.Release()
	// The batch spans the dead letter and the event on partition 1.
	if from, to := s.BatchStart(), s.Position(); from.Offsets[1] != 0 || to.Offsets[1] != 2 || len(to.Offsets) != 1 {
		t.Fatalf("batch spans %v to %v, want partition 1 from 0 to 2", from.Offsets, to.Offsets)
	}
	if err := s.Commit(ctx, s.Position()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := dlq.Close(); err != nil {
		t.Fatal(err)
	}
	if dlq.Count() != 1 {
		t.Fatalf("Count = %d", dlq.Count())
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic + ".dlq", GroupID: "check-" + topic,
		StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	m, err := r.ReadMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	if string(m.Value) != `{"click":true}` || string(m.Key) != "bad" || h["reason"] != ReasonWrongType ||
		h["partition"] != "1" || h["offset"] != "0" || h["topic"] != topic ||
		!strings.Contains(h["detail"], `field "click": want integer, found bool`) {
		t.Fatalf("dead letter %q key %q headers %v", m.Value, m.Key, h)
	}
}
