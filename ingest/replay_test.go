package ingest

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onestone/onestone/internal/gen"
	"github.com/onestone/onestone/internal/kafkatest"
)

func TestReplayConfigValidate(t *testing.T) {
	ok := ReplayConfig{Brokers: []string{"x"}, Inputs: []ReplayInput{{Path: "a", Topic: "t"}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []ReplayConfig{
		{Inputs: ok.Inputs},
		{Brokers: ok.Brokers},
		{Brokers: ok.Brokers, Inputs: []ReplayInput{{Path: "a"}}},
		{Brokers: ok.Brokers, Inputs: ok.Inputs, Speedup: -1},
		{Brokers: ok.Brokers, Inputs: ok.Inputs, Limit: -1},
		{Brokers: ok.Brokers, Inputs: ok.Inputs, Compression: "brotli"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestTopField(t *testing.T) {
	b := []byte(` {"a":[1,{"user_id":7}],"s":"x\"y","user_id":"u-1","ts_ms":1704067200123,"f":1.5}`)
	for _, c := range []struct {
		name, want string
		ok         bool
	}{
		{"user_id", "u-1", true}, // the top-level member, not the nested one
		{"ts_ms", "1704067200123", true},
		{"f", "", false}, // not an integer
		{"s", "", false}, // escaped: no alias of the input
		{"a", "", false},
		{"missing", "", false},
	} {
		got, ok := topField(b, c.name)
		if ok != c.ok || string(got) != c.want {
			t.Errorf("%s: %q %v, want %q %v", c.name, got, ok, c.want, c.ok)
		}
	}
	if _, ok := topField([]byte(`[1]`), "a"); ok {
		t.Error("an array has no members")
	}
}

func writeLines(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// readTopic reads every partition of topic to its end, in each
// partition's order, and checks that they hold n messages.
func readTopic(ctx context.Context, t *testing.T, brokers []string, topic string, parts, n int) [][]kafka.Message {
	t.Helper()
	out := make([][]kafka.Message, parts)
	got := 0
	for p := range parts {
		conn, err := kafka.DialLeader(ctx, "tcp", brokers[0], topic, p)
		if err != nil {
			t.Fatal(err)
		}
		end, err := conn.ReadLastOffset()
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		if end == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxWait: 50 * time.Millisecond})
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			out[p] = append(out[p], m)
			got++
			if m.Offset == end-1 {
				break
			}
		}
		r.Close()
	}
	if got != n {
		t.Fatalf("%s: read %d messages, want %d", topic, got, n)
	}
	return out
}

// TestReplayMergesByEventTime replays three files into one single-partition
// topic and checks the merge order, the keys, the pacing and the counts.
func TestReplayMergesByEventTime(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	brokers, topic := kafkatest.Cluster(t, "onestone-test", 1, func(topic string) []string {
		b, err := StartBroker(ctx, BrokerConfig{Partitions: 1, Topics: []string{topic}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b.Addrs()
	})
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
	writeLines(t, a, `{"ts_ms":100,"user_id":1,"n":"a1"}`, `{"ts_ms":400,"user_id":2,"n":"a4"}`, `{"ts_ms":700,"user_id":"u3","n":"a7"}`)
	// b is out of order: 300 after 900 keeps its place in b.
	writeLines(t, b, `{"ts_ms":200,"user_id":4,"n":"b2"}`, `{"ts_ms":900,"n":"b9"}`, `{"ts_ms":300,"user_id":5,"n":"b3"}`)
	// c holds a line without a time (it follows its predecessor) and a
	// blank line (skipped).
	writeLines(t, c, `{"ts_ms":0,"user_id":6,"n":"c0"}`, `{"ts_ms":500,"user_id":7,"n":"c5"}`, ``, `{"user_id":8,"n":"cx"}`, `not json`)
	start := time.Now()
	sent, err := Replay(ctx, ReplayConfig{
		Brokers: brokers, Speedup: 2,
		Inputs: []ReplayInput{{a, topic}, {b, topic}, {c, topic}},
	})
	el := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sent, []int64{3, 3, 4}) {
		t.Errorf("sent %v, want [3 3 4]", sent)
	}
	// 900 ms of event time at speed-up 2: the last message is due at
	// 450 ms.
	if el < 400*time.Millisecond || el > 15*time.Second {
		t.Errorf("900 ms of events at speed-up 2 took %v", el)
	}
	msgs := readTopic(ctx, t, brokers, topic, 1, 10)[0]
	var order, keys []string
	for _, m := range msgs {
		v := string(m.Value)
		if n, ok := topField(m.Value, "n"); ok {
			v = string(n)
		}
		order = append(order, v)
		keys = append(keys, string(m.Key))
	}
	wantOrder := []string{"c0", "a1", "b2", "a4", "c5", "cx", "not json", "a7", "b9", "b3"}
	if !slices.Equal(order, wantOrder) {
		t.Errorf("order %v\nwant %v", order, wantOrder)
	}
	wantKeys := []string{"6", "1", "4", "2", "7", "8", "", "u3", "", "5"}
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("keys %q\nwant %q", keys, wantKeys)
	}

	sent, err = Replay(ctx, ReplayConfig{Brokers: brokers, Limit: 4, Inputs: []ReplayInput{{a, topic}, {b, topic}, {c, topic}}})
	if err != nil || !slices.Equal(sent, []int64{2, 1, 1}) { // c0 a1 b2 a4
		t.Errorf("Limit 4: sent %v, %v; want [2 1 1]", sent, err)
	}
	sent, err = Replay(ctx, ReplayConfig{Brokers: brokers, Skip: 4, Limit: 3, Inputs: []ReplayInput{{a, topic}, {b, topic}, {c, topic}}})
	if err != nil || !slices.Equal(sent, []int64{0, 0, 3}) { // c5 cx "not json"
		t.Errorf("Skip 4, Limit 3: sent %v, %v; want [0 0 3]", sent, err)
	}
}

// TestReplayGeneratedStreams replays gen's three streams into three topics
// and checks that every message arrives once, keyed by its user id, and that
// the topics are co-partitioned: a click is in the partition number of its
// impression.
func TestReplayGeneratedStreams(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Three topics of 4 partitions: on one embedded broker (the later two
	// created on first use, with its default of 4 partitions) or on the
	// cluster of ONESTONE_KAFKA_BROKERS.
	var topics [3]string
	var brokers []string
	var b *Broker
	for i := range topics {
		brokers, topics[i] = kafkatest.Cluster(t, "onestone-test", 4, func(topic string) []string {
			if b == nil {
				var err error
				if b, err = StartBroker(ctx, BrokerConfig{Partitions: 4, Topics: []string{topic}}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { b.Close() })
			}
			return b.Addrs()
		})
	}
	dir := t.TempDir()
	sum, err := gen.WriteStreams(ctx, gen.StreamsConfig{Dir: dir, Impressions: 3000, Users: 200, Items: 200, Seed: 3, TimeScale: 0.001})
	if err != nil {
		t.Fatal(err)
	}
	var inputs []ReplayInput
	var lines [3][]string
	for i := range 3 {
		p := filepath.Join(dir, gen.StreamFiles[i])
		inputs = append(inputs, ReplayInput{Path: p, Topic: topics[i]})
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			lines[i] = append(lines[i], sc.Text())
		}
		f.Close()
	}
	sent, err := Replay(ctx, ReplayConfig{Brokers: brokers, Inputs: inputs, BatchSize: 500})
	if err != nil {
		t.Fatal(err)
	}
	impPart := map[string]int{}
	for i := range 3 {
		if sent[i] != int64(len(lines[i])) {
			t.Fatalf("%s: sent %d of %d lines", topics[i], sent[i], len(lines[i]))
		}
		parts := readTopic(ctx, t, brokers, topics[i], 4, len(lines[i]))
		var got []string
		for p, ms := range parts {
			for _, m := range ms {
				got = append(got, string(m.Value))
				uid, _ := topField(m.Value, "user_id")
				if string(m.Key) != string(uid) || len(uid) == 0 {
					t.Fatalf("%s: key %q, user_id %q", topics[i], m.Key, uid)
				}
				id, _ := topField(m.Value, "impression_id")
				if i == 0 {
					impPart[string(id)] = p
				} else if ip, ok := impPart[string(id)]; ok && ip != p {
					t.Fatalf("%s: impression %s in partition %d, its event in %d", topics[i], id, ip, p)
				}
			}
		}
		slices.Sort(got)
		want := slices.Clone(lines[i])
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: the messages differ from the file's lines", topics[i])
		}
	}
	if sum.Clicks == 0 || sum.Conversions == 0 {
		t.Fatalf("degenerate streams: %+v", sum)
	}
	t.Logf("replayed %v messages", sent)
}
