package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/ingest/join"
	"github.com/onestone/onestone/internal/gen"
)

// TestStreamJoinThreeTopics: a stream of the three generated topics trains
// on the joined examples, stops and resumes from its checkpoint (join state
// included), and every example it emitted over both runs agrees with the
// generator's truth, once; the final bundle counts them all.
func TestStreamJoinThreeTopics(t *testing.T) {
	w := newJoinWorld(t, 6000, 7)
	ctx, spec, topics, b, sum, inputs, truth := context.Background(), w.spec, w.topics, w.b, w.sum, w.inputs, w.truth
	const scale = joinScale
	// The first half of the messages now, the rest after run 1.
	half := (sum.Logged + sum.Clicks + sum.Conversions) / 2
	if _, err := ingest.Replay(ctx, ingest.ReplayConfig{Brokers: b.Addrs(), Inputs: inputs, Limit: half}); err != nil {
		t.Fatal(err)
	}
	jc, _, err := join.ParseSpecSection([]byte(gen.StreamsJoinYAML(scale)))
	if err != nil {
		t.Fatal(err)
	}
	// The default IdleTimeout (1m): a partition that the reader fetches
	// late on a loaded machine must not turn idle and find its events
	// behind the watermark the others moved.
	// The streams span 12 s of event time: a lateness of 5 s would keep
	// half of them pending at the end.
	jc.Lateness = 100 * time.Millisecond
	type key struct {
		id   uint64
		kind join.Kind
	}
	seen := map[key]int{}
	var emitted int64
	tap := func(exs []join.Example) {
		for _, ex := range exs {
			seen[key{ex.ID, ex.Kind}]++
			emitted++
			tr, ok := truth[ex.ID]
			switch {
			case !ok || !tr.Logged:
				t.Errorf("example of an impression the generator did not log: %+v", ex)
			case ex.Kind == join.Negative && tr.Click, ex.Kind == join.Click && !tr.Click, ex.Kind == join.Conversion && !tr.Conversion:
				t.Errorf("%s example of impression %s, truth %+v", ex.Kind, tr.ImpressionID, tr)
			}
		}
	}
	model := filepath.Join(t.TempDir(), "models")
	var progress, journal syncBuffer
	cfg := StreamConfig{
		Brokers: b.Addrs(), GroupID: "g", SpecPath: spec, Model: model, Join: &jc, JoinTopics: topics,
		CheckpointEvery: 300 * time.Millisecond, BatchWait: 50 * time.Millisecond, MaxBatch: 1000,
		Logger: quietStreamLogger(), MetricsAddr: freeAddr(t), joinTap: tap, Progress: &progress,
		Observers: []Observer{NewJournal(&journal)},
	}
	defer func() {
		if t.Failed() {
			t.Logf("progress:\n%s", progress.String())
		}
	}()
	// Run 1: stop after the first published bundle with examples.
	l1, err := runStream(t, cfg, func(p Published) bool { return p.Examples > 0 })
	if err != nil {
		t.Fatal(err)
	}
	first := l1.pubs[len(l1.pubs)-1].Examples
	if first <= 0 || first >= sum.Logged/2 {
		t.Fatalf("run 1 stopped at %d examples", first)
	}
	if _, err := ingest.Replay(ctx, ingest.ReplayConfig{Brokers: b.Addrs(), Inputs: inputs, Skip: half}); err != nil {
		t.Fatal(err)
	}
	// Run 2 resumes and goes on until the join emitted most impressions
	// (the last 1.3 s of event time stay pending: no later events move the
	// watermarks past their windows).
	var scraped string
	l2, err := runStream(t, cfg, func(p Published) bool {
		if p.Examples < int64(float64(sum.Logged)*0.8) {
			return false
		}
		if scraped == "" {
			scraped = scrape(t, cfg.MetricsAddr)
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	last := l2.pubs[len(l2.pubs)-1]
	if last.Examples != emitted {
		t.Errorf("the final bundle counts %d examples, the join emitted %d over both runs", last.Examples, emitted)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("impression %x emitted %d times as %s", k.id, n, k.kind)
		}
	}
	// The journal's positions hold the three topics' offsets: its last
	// commit's are the group's committed offsets of each topic.
	var lastCommit *ingest.Position
	for _, line := range strings.Split(strings.TrimSpace(journal.String()), "\n") {
		var l JournalLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("journal line %q: %v", line, err)
		}
		if l.Event == JournalCommit && l.Error == "" {
			lastCommit = l.Position
		}
	}
	if lastCommit == nil || len(lastCommit.Topics) != 3 {
		t.Fatalf("the journal's last commit has no offsets of the three topics: %+v", lastCommit)
	}
	for _, tp := range topics {
		ls, err := ingest.GroupLag(ctx, b.Addrs(), "g", tp)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			if want := lastCommit.Topics[tp][l.Partition]; l.Committed != want || l.Topic != tp {
				t.Errorf("topic %s partition %d: the group committed %d, the journal's last commit says %d", l.Topic, l.Partition, l.Committed, want)
			}
		}
	}
	m, err := bundle.ReadManifest(last.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fmt.Sprint(m.Tasks), "fnw") {
		t.Errorf("the bundle's tasks do not carry the join's correction: %v", m.Tasks)
	}
	for _, w := range []string{`onestone_join_examples_total{kind="click"}`, `onestone_join_pending{state="pending"}`, `onestone_join_watermark_seconds{topic="clk"}`, "onestone_join_state_bytes", `onestone_join_label_delay_seconds_bucket{label="click"`} {
		if !strings.Contains(scraped, w) {
			t.Errorf("metrics lack %s", w)
		}
	}
}

// readTruth reads gen's truth.jsonl.
func readTruth(path string) ([]gen.Truth, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []gen.Truth
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var x gen.Truth
		if err := json.Unmarshal([]byte(line), &x); err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, nil
}

// joinWorld is the setting of a three-topic join test: the generated spec,
// an in-process broker with the three topics (2 partitions each, closed
// with the test), and the generated streams with their truth.
type joinWorld struct {
	spec   string
	topics [3]string
	b      *ingest.Broker
	dir    string
	sum    *gen.StreamsSummary
	inputs []ingest.ReplayInput // the three files, each to its topic
	truth  map[uint64]gen.Truth // by hashed impression id
	total  int64                // messages in the three files
}

// joinScale compresses the generated clock of the join tests.
const joinScale = 0.001

func newJoinWorld(t *testing.T, impressions int64, seed uint64) *joinWorld {
	t.Helper()
	w := &joinWorld{topics: [3]string{"imp", "clk", "conv"}, dir: t.TempDir()}
	_, w.spec = streamData(t, 20000)
	ctx := context.Background()
	var err error
	if w.b, err = ingest.StartBroker(ctx, ingest.BrokerConfig{Partitions: 2, Topics: w.topics[:]}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.b.Close() })
	w.sum, err = gen.WriteStreams(ctx, gen.StreamsConfig{Dir: w.dir, Impressions: impressions, Users: 2000, Items: 2000, Seed: seed, TaskCorr: 0.5, TimeScale: joinScale, Rate: 500})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := readTruth(w.sum.Files[3])
	if err != nil {
		t.Fatal(err)
	}
	w.truth = map[uint64]gen.Truth{}
	for _, x := range tr {
		w.truth[join.HashID(x.ImpressionID)] = x
	}
	for i, tp := range w.topics {
		w.inputs = append(w.inputs, ingest.ReplayInput{Path: w.sum.Files[i], Topic: tp})
	}
	w.total = w.sum.Logged + w.sum.Clicks + w.sum.Conversions
	for _, n := range w.sum.Duplicates {
		w.total += n
	}
	return w
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func scrape(t *testing.T, addr string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Error(err)
		return "-"
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// memSink keeps dead letters.
type memSink struct{ got []ingest.DeadLetter }

func (m *memSink) Put(_ context.Context, d ingest.DeadLetter) error {
	m.got = append(m.got, d)
	return nil
}
func (m *memSink) Count() int64 { return int64(len(m.got)) }

// TestJoinSourceChecksExamples: a joined example the training
// Transformer's Checker refuses is a dead letter, the others are trained.
func TestJoinSourceChecksExamples(t *testing.T) {
	_, spec := streamData(t, 20000)
	s, err := LoadSetup(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	jc := join.Config{}
	sink := &memSink{}
	cfg := StreamConfig{Join: &jc, JoinTopics: [3]string{"i", "c", "v"}}.withDefaults()
	js, err := newJoinSource(cfg, s, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer js.Close()
	good := `{"impression_id":"a","ts_ms":1704067200000,"user_id":1,"item_id":2,"category":"cat_01","brand":"brand_0001","device":"ios","hour":3,"position":1,"price":12.5,"age":30,"user_tags":["tag_01"],"user_activity":1.5,"item_popularity":0.2,"click":1,"conversion":0}`
	bad := strings.Replace(good, `"price":12.5`, `"price":1e300`, 1)
	for _, v := range []string{good, bad, good} {
		if err := js.dec.Append([]byte(v)); err != nil {
			t.Fatal(err)
		}
		js.vals = append(js.vals, []byte(v))
	}
	rec, err := js.checked(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	if rec.NumRows() != 2 || len(sink.got) != 1 || sink.got[0].Reason == "" || !strings.Contains(string(sink.got[0].Value), "1e300") {
		t.Fatalf("%d rows, dead letters %+v", rec.NumRows(), sink.got)
	}
	if js.Stats().DeadLetters[sink.got[0].Reason] != 1 {
		t.Errorf("stats %v", js.Stats().DeadLetters)
	}
}

// TestStreamJoinCommitsWithoutExamples: messages the join consumes without
// emitting an example (clicks waiting for their impressions) are still
// checkpointed and committed, and the next run resumes with them in its
// state: their impressions, sent only then, join them, each click once.
func TestStreamJoinCommitsWithoutExamples(t *testing.T) {
	w := newJoinWorld(t, 3000, 7)
	ctx, spec, topics, b, sum, dir := context.Background(), w.spec, w.topics, w.b, w.sum, w.dir
	const scale = joinScale
	// The first clicks, and the impressions they click.
	const n = 40
	clicks, ids := firstLines(t, sum.Files[1], n, nil)
	imps, _ := firstLines(t, sum.Files[0], -1, ids)
	if len(clicks) != n || len(imps) != n {
		t.Fatalf("%d clicks, %d of their impressions", len(clicks), len(imps))
	}
	write := func(name string, lines []string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	jc, _, err := join.ParseSpecSection([]byte(gen.StreamsJoinYAML(scale)))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	emitted := map[uint64]int{}
	tap := func(exs []join.Example) {
		mu.Lock()
		defer mu.Unlock()
		for _, ex := range exs {
			if ex.Kind == join.Click {
				emitted[ex.ID]++
			}
		}
	}
	pubs := 0
	cfg := StreamConfig{
		Brokers: b.Addrs(), GroupID: "g", SpecPath: spec, Model: filepath.Join(t.TempDir(), "models"), Join: &jc, JoinTopics: topics,
		CheckpointEvery: 300 * time.Millisecond, BatchWait: 50 * time.Millisecond, MaxBatch: 1000,
		Logger: quietStreamLogger(), MetricsAddr: freeAddr(t), joinTap: tap,
		Observers: []Observer{onPublish(func(Published) { pubs++ })},
	}
	// run starts a stream, waits until done says so, and stops it.
	run := func(what string, done func() bool) {
		t.Helper()
		rctx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() { errc <- StreamTrain(rctx, cfg) }()
		deadline := time.Now().Add(90 * time.Second)
		for !done() {
			if time.Now().After(deadline) {
				cancel()
				<-errc
				t.Fatalf("%s: not within 90s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
		cancel()
		if err := <-errc; err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	if _, err := ingest.Replay(ctx, ingest.ReplayConfig{Brokers: b.Addrs(), Inputs: []ingest.ReplayInput{{Path: write("clicks.jsonl", clicks), Topic: "clk"}}}); err != nil {
		t.Fatal(err)
	}
	run("the clicks committed", func() bool { return sumOffsets(committedOffsets(t, b.Addrs(), "clk", "g", 2)) == n })
	if pubs != 0 {
		t.Errorf("%d bundles published with nothing trained", pubs)
	}
	if _, err := ingest.Replay(ctx, ingest.ReplayConfig{Brokers: b.Addrs(), Inputs: []ingest.ReplayInput{{Path: write("imps.jsonl", imps), Topic: "imp"}}}); err != nil {
		t.Fatal(err)
	}
	run("the clicks joined", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(emitted) == n
	})
	for id, k := range emitted {
		if k != 1 {
			t.Errorf("impression %x emitted %d click examples", id, k)
		}
	}
}

// firstLines returns the first n lines of a JSON-lines stream file (all
// when n < 0) whose impression id is in keep (any when keep is nil), and
// the set of their impression ids.
func firstLines(t *testing.T, path string, n int, keep map[string]bool) ([]string, map[string]bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	ids := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if n >= 0 && len(out) == n {
			break
		}
		var m struct {
			ID string `json:"impression_id"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if keep != nil && !keep[m.ID] || ids[m.ID] {
			continue
		}
		ids[m.ID] = true
		out = append(out, line)
	}
	return out, ids
}

// TestJoinSourceKeepsMessagesAtDeadlines: the join source is read with
// short deadlines, as the stream does when a checkpoint falls due, and
// every message its reader fetched reaches the join: the messages it
// consumed equal the offsets it moved over, with none skipped.
func TestJoinSourceKeepsMessagesAtDeadlines(t *testing.T) {
	_, spec := streamData(t, 20000)
	ctx := context.Background()
	topics := [3]string{"imp", "clk", "conv"}
	b, err := ingest.StartBroker(ctx, ingest.BrokerConfig{Partitions: 2, Topics: topics[:]})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	dir := t.TempDir()
	sum, err := gen.WriteStreams(ctx, gen.StreamsConfig{Dir: dir, Impressions: 6000, Users: 2000, Items: 2000, Seed: 7, TaskCorr: 0.5, TimeScale: 0.001, Rate: 500})
	if err != nil {
		t.Fatal(err)
	}
	var inputs []ingest.ReplayInput
	for i, tp := range topics {
		inputs = append(inputs, ingest.ReplayInput{Path: sum.Files[i], Topic: tp})
	}
	got, err := ingest.Replay(ctx, ingest.ReplayConfig{Brokers: b.Addrs(), Inputs: inputs})
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, n := range got {
		total += n
	}
	s, err := LoadSetup(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	jc := join.Config{}
	cfg := StreamConfig{Brokers: b.Addrs(), GroupID: "g", InstanceID: "deadlines", Join: &jc, JoinTopics: topics,
		MaxBatch: 1000, BatchWait: 50 * time.Millisecond, Logger: quietStreamLogger()}.withDefaults()
	js, err := newJoinSource(cfg, s, &memSink{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer js.Close()
	if err := js.open(ctx); err != nil {
		t.Fatal(err)
	}
	consumed := func() (offsets, messages, skipped int64) {
		st := js.j.Stats()
		for tp := range topics {
			offsets += sumOffsets(js.j.Offsets(join.Topic(tp)))
			messages += st.Messages[tp]
			skipped += st.Skipped[tp]
		}
		return
	}
	rng := rand.New(rand.NewPCG(3, 3))
	deadline := time.Now().Add(time.Minute)
	for {
		if off, _, _ := consumed(); off == total {
			break
		}
		if time.Now().After(deadline) {
			off, n, sk := consumed()
			t.Fatalf("after a minute the join stands at %d of %d offsets (%d messages, %d skipped)", off, total, n, sk)
		}
		c, cancel := context.WithTimeout(ctx, time.Duration(rng.IntN(60))*time.Millisecond)
		rec, err := js.Next(c)
		cancel()
		if rec != nil {
			rec.Release()
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
	}
	if off, n, sk := consumed(); n != off {
		t.Errorf("the join moved over %d offsets and consumed %d messages (%d skipped): %d fetched messages never reached it", off, n, sk, off-n)
	}
}
