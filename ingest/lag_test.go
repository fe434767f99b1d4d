package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// TestGroupLag reads a group's committed offsets beside the partitions'
// end offsets: a partition without a commit has committed -1 and lags by
// its whole length, and a group that never committed lags everywhere.
func TestGroupLag(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokers, topic := testBrokers(t)
	group := "g-" + topic
	const n = 400
	src := makeEvents(memory.NewGoAllocator(), 0, n)
	if _, err := Produce(ctx, ProduceConfig{Brokers: brokers, Topic: topic, KeyColumn: "-"}, src); err != nil {
		t.Fatal(err)
	}
	src.Close()
	s, err := NewKafkaSource(ctx, KafkaConfig{Brokers: brokers, Topic: topic, GroupID: group, Schema: eventsSchema(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, Position{Topic: topic, Offsets: map[int]int64{0: 10, 2: 3}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	check := func(group string, want map[int]int64) {
		t.Helper()
		ls, err := GroupLag(ctx, brokers, group, topic)
		if err != nil {
			t.Fatal(err)
		}
		if len(ls) != 4 {
			t.Fatalf("%d partitions, want 4: %+v", len(ls), ls)
		}
		var end int64
		for i, l := range ls {
			end += l.End
			c, ok := want[i]
			if !ok {
				c = -1
			}
			lag := l.End - max(c, 0)
			if l.Topic != topic || l.Partition != i || l.Committed != c || l.Lag != lag {
				t.Errorf("group %s: %+v, want partition %d committed %d lag %d", group, l, i, c, lag)
			}
		}
		if end != n {
			t.Errorf("group %s: end offsets sum to %d, want the %d events produced", group, end, n)
		}
	}
	check(group, map[int]int64{0: 10, 2: 3})
	check("never-committed", nil)
	if _, err := GroupLag(ctx, brokers, "", topic); err == nil {
		t.Error("no group: no error")
	}
}
