package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/segmentio/kafka-go"

	"github.com/onestone/onestone/features"
)

// deadMember joins group as a consumer of topic with the given client id,
// takes all of topic's partitions and then never heartbeats: what a
// SIGKILLed consumer leaves behind until its session (30 s here) times
// out. It returns the member id.
func deadMember(t *testing.T, ctx context.Context, brokers []string, group, topic, clientID string, partitions int) string {
	t.Helper()
	tr := &kafka.Transport{ClientID: clientID}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: tr}
	req := &kafka.JoinGroupRequest{
		GroupID: group, SessionTimeout: 30 * time.Second, RebalanceTimeout: 30 * time.Second, ProtocolType: "consumer",
		Protocols: []kafka.GroupProtocol{{Name: "range", Metadata: kafka.GroupProtocolSubscription{Topics: []string{topic}}}},
	}
	jr, err := c.JoinGroup(ctx, req)
	if err == nil && errors.Is(jr.Error, kafka.MemberIDRequired) {
		req.MemberID = jr.MemberID
		jr, err = c.JoinGroup(ctx, req)
	}
	if err == nil {
		err = jr.Error
	}
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	ps := make([]int, partitions)
	for i := range ps {
		ps[i] = i
	}
	sr, err := c.SyncGroup(ctx, &kafka.SyncGroupRequest{
		GroupID: group, GenerationID: jr.GenerationID, MemberID: jr.MemberID, ProtocolType: "consumer", ProtocolName: jr.ProtocolName,
		Assignments: []kafka.SyncGroupRequestAssignment{{MemberID: jr.MemberID, Assignment: kafka.GroupProtocolAssignment{AssignedPartitions: map[string][]int{topic: ps}}}},
	})
	if err == nil {
		err = sr.Error
	}
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return jr.MemberID
}

// TestKafkaInstanceRemovesItsDeadMember leaves a dead member with the
// client id of instance "trainer-a" in the group, holding every partition.
// A source with that InstanceID removes it when it starts and reads events
// at once; without the removal it would wait for the dead member's 30 s
// session to time out.
func TestKafkaInstanceRemovesItsDeadMember(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokers, topic := testBrokers(t)
	group := "g-" + topic
	dead := deadMember(t, ctx, brokers, group, topic, ClientID("trainer-a"), 4)
	src := makeEvents(memory.NewGoAllocator(), 0, 400)
	if _, err := Produce(ctx, ProduceConfig{Brokers: brokers, Topic: topic}, src); err != nil {
		t.Fatal(err)
	}
	src.Close()

	t0 := time.Now()
	s, err := NewKafkaSource(ctx, KafkaConfig{
		Brokers: brokers, Topic: topic, GroupID: group, InstanceID: "trainer-a", Schema: eventsSchema(),
		BatchWait: 50 * time.Millisecond, Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := s.Stats().StaleMembers; n != 1 {
		t.Fatalf("removed %d stale members, want 1 (%s)", n, dead)
	}
	rec, err := s.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec.Release()
	// Well under the dead member's 30 s session.
	if d := time.Since(t0); d > 15*time.Second {
		t.Errorf("first batch %v after the start", d)
	}
	t.Logf("first batch %v after the start", time.Since(t0).Round(time.Millisecond))
	// The group now holds this source only, under the instance's client id.
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: tr}
	resp, err := c.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range resp.Groups {
		if len(g.Members) != 1 || g.Members[0].MemberID == dead || g.Members[0].ClientID != "onestone-trainer-a" {
			t.Errorf("group members %+v, want the new source alone", g.Members)
		}
	}
}

// TestKafkaCommitBringsTheGroupUpToStart resumes a source from Start
// offsets ahead of the group's committed ones (a crash came between a
// checkpoint and its commit): committing the Start position moves the
// group up to it on every partition, quiet ones included, with no event
// read; a partition where the group is ahead of Start is not moved back.
func TestKafkaCommitBringsTheGroupUpToStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokers, topic := testBrokers(t)
	group := "g-" + topic
	src := makeEvents(memory.NewGoAllocator(), 0, 400)
	if _, err := Produce(ctx, ProduceConfig{Brokers: brokers, Topic: topic, KeyColumn: "-"}, src); err != nil {
		t.Fatal(err)
	}
	src.Close()
	cfg := KafkaConfig{Brokers: brokers, Topic: topic, GroupID: group, Schema: eventsSchema(), BatchWait: 50 * time.Millisecond, Logger: quietLogger()}
	// The group's offsets: 10 on partitions 0 to 2, 60 on partition 3.
	first, err := NewKafkaSource(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Commit(ctx, Position{Topic: topic, Offsets: map[int]int64{0: 10, 1: 10, 2: 10, 3: 60}}); err != nil {
		t.Fatal(err)
	}
	first.Close()
	start := map[int]int64{0: 50, 1: 40, 2: 10, 3: 30}
	cfg.Start = start
	s, err := NewKafkaSource(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Commit(ctx, s.Position()); err != nil {
		t.Fatal(err)
	}
	got := groupCommitted(t, ctx, brokers, group, topic)
	want := map[int]int64{0: 50, 1: 40, 2: 10, 3: 60}
	if !maps.Equal(got, want) {
		t.Errorf("group offsets %v after committing Start %v, want %v", got, start, want)
	}
}

func groupCommitted(t *testing.T, ctx context.Context, brokers []string, group, topic string) map[int]int64 {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: tr}
	got, err := groupOffsets(ctx, c, group, topic, map[int]int64{0: 0, 1: 0, 2: 0, 3: 0})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestValidInstanceID(t *testing.T) {
	for id, ok := range map[string]bool{
		"": true, "trainer-a": true, "host_1.eu-2f0c": true,
		"a b": false, "ü": false, "a/b": false, fmt.Sprintf("%0201d", 0): false,
	} {
		if err := ValidInstanceID(id); (err == nil) != ok {
			t.Errorf("ValidInstanceID(%q) = %v", id, err)
		}
	}
}

// TestRangeBalancerOrdersMembersAndPartitions checks the assignor on
// partitions listed out of order: the members in id order take
// consecutive runs of partitions in partition order, per topic.
func TestRangeBalancerOrdersMembersAndPartitions(t *testing.T) {
	var ps []kafka.Partition
	for _, id := range []int{3, 0, 4, 2, 1} {
		ps = append(ps, kafka.Partition{Topic: "a", ID: id})
	}
	ps = append(ps, kafka.Partition{Topic: "b", ID: 1}, kafka.Partition{Topic: "b", ID: 0})
	got := rangeBalancer{}.AssignGroups([]kafka.GroupMember{
		{ID: "onestone-y-1", Topics: []string{"a", "b"}},
		{ID: "onestone-x-2", Topics: []string{"a", "b"}},
		{ID: "other-3", Topics: []string{"b"}},
	}, ps)
	want := kafka.GroupMemberAssignments{
		"onestone-x-2": {"a": {0, 1}},
		"onestone-y-1": {"a": {2, 3, 4}, "b": {0}},
		"other-3":      {"b": {1}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("assignment %v, want %v", got, want)
	}
}

// TestKafkaCheckSendsRowFaultsToTheDeadLetters writes events that decode
// but that training cannot use (a label of 2, a price of 1e300, both, a
// negative weight, a weight beyond float32)
// among good ones, with a batch of only such events first. With the
// training Transformer's Checker, those events go to the dead letters with
// their fault as reason, partition and offset; every good event arrives,
// and the position moves past the dead letters.
func TestKafkaCheckSendsRowFaultsToTheDeadLetters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	brokers, topic := testBrokers(t)
	spec, err := features.ParseSpec(strings.NewReader(`fields:
  - {name: user_id, kind: categorical, buckets: 100}
  - {name: tags, kind: multi_categorical, buckets: 10}
  - {name: price, kind: numeric}
tasks: [{name: ctr, kind: binary, label: click}]
sample_weight: w
`))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := features.NewTransformer(spec, nil, features.TransformerConfig{Labels: true})
	if err != nil {
		t.Fatal(err)
	}
	schema := arrow.NewSchema(append(eventsSchema().Fields(), arrow.Field{Name: "w", Type: arrow.PrimitiveTypes.Float64, Nullable: true}), nil)
	event := func(id int, price string, click int, w string) string {
		return fmt.Sprintf(`{"event_id":%d,"user_id":"u%d","price":%s,"tags":["t%d"],"click":%d,"w":%s}`, id, id%97, price, id%5, click, w)
	}
	// Partition 1: a batch of faults alone, then good events with faults
	// among them.
	writeRaw(t, ctx, brokers, topic, 1, event(0, "1e300", 0, "1"), event(1, "2", 2, "1"))
	dlqPath := filepath.Join(t.TempDir(), "dead.jsonl")
	dlq, err := NewFileDeadLetters(dlqPath)
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()
	s, err := NewKafkaSource(ctx, KafkaConfig{
		Brokers: brokers, Topic: topic, GroupID: "g-" + topic, Schema: schema, Check: tr.Checker(),
		BatchSize: 50, BatchWait: 50 * time.Millisecond, DeadLetters: dlq, Allocator: mem, Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	short, c := context.WithTimeout(ctx, 3*time.Second)
	rec, err := s.Next(short)
	c()
	if err == nil {
		rec.Release()
		t.Fatalf("a batch of %d rows out of events that are all faults", rec.NumRows())
	}
	if dlq.Count() != 2 {
		t.Fatalf("%d dead letters after the batch of faults, want 2", dlq.Count())
	}
	var vals []string
	bad := map[int]string{}
	for i := 2; i < 120; i++ {
		switch {
		case i%40 == 5:
			vals = append(vals, event(i, "1", 1, "-0.5"))
			bad[i] = ReasonBadWeight
		case i%40 == 10:
			vals = append(vals, event(i, "1", 3, "1"))
			bad[i] = ReasonBadLabel
		case i%40 == 20:
			vals = append(vals, event(i, "-3.5e300", 1, "1"))
			bad[i] = ReasonOutOfRange
		case i%40 == 25:
			vals = append(vals, event(i, "1", 0, "1e39"))
			bad[i] = ReasonBadWeight
		case i%40 == 30:
			vals = append(vals, event(i, "1e39", 7, "1")) // both: the label is reported
			bad[i] = ReasonBadLabel
		default:
			vals = append(vals, event(i, strconv.Itoa(i), i%2, strconv.FormatFloat(float64(i%3)/2, 'g', -1, 64)))
		}
	}
	writeRaw(t, ctx, brokers, topic, 1, vals...)
	seen := map[int64]bool{}
	for len(seen) < 118-len(bad) {
		rec, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("after %d good events: %v", len(seen), err)
		}
		for r := 0; r < int(rec.NumRows()); r++ {
			id := rec.Column(0).(*array.Int64).Value(r)
			if _, isBad := bad[int(id)]; isBad || seen[id] {
				t.Errorf("event %d in a batch (bad %v, seen before %v)", id, isBad, seen[id])
			}
			seen[id] = true
		}
		rec.Release()
	}
	if pos := s.Position(); pos.Offsets[1] != 120 {
		t.Errorf("position %v, want partition 1 at 120 (past every dead letter)", pos.Offsets)
	}
	st := s.Stats()
	if st.DeadLetters[ReasonBadLabel] != 1+6 || st.DeadLetters[ReasonOutOfRange] != 1+3 || st.DeadLetters[ReasonBadWeight] != 6 || st.Events != int64(len(seen)) {
		t.Errorf("stats %+v, want 7 %s, 4 %s, 6 %s and %d events", st, ReasonBadLabel, ReasonOutOfRange, ReasonBadWeight, len(seen))
	}
	if err := dlq.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(dlqPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	want := []string{ReasonOutOfRange, ReasonBadLabel}
	for i := 2; i < 120; i++ {
		if r, ok := bad[i]; ok {
			want = append(want, r)
		}
	}
	if len(lines) != len(want) {
		t.Fatalf("%d dead letters, want %d:\n%s", len(lines), len(want), data)
	}
	for i, l := range lines {
		var d deadLetterLine
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatal(err)
		}
		if d.Reason != want[i] || d.Partition != 1 || d.Topic != topic || !strings.Contains(d.Detail, "row") {
			t.Errorf("dead letter %d: %s, want reason %s", i, l, want[i])
		}
	}
}
