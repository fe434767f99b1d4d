package ingest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// TestKafkaMessagesTopicsAndCommit: one member reads two topics; after a
// commit of one topic's offsets, a new member of the group reads only the
// other's messages again.
func TestKafkaMessagesTopicsAndCommit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := StartBroker(ctx, BrokerConfig{Partitions: 2, Topics: []string{"ta", "tb"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(b.Addrs()...), Transport: tr, Balancer: &kafka.Murmur2Balancer{}, BatchTimeout: time.Millisecond}
	var msgs []kafka.Message
	for _, tp := range []string{"ta", "tb"} {
		for i := range 10 {
			msgs = append(msgs, kafka.Message{Topic: tp, Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("%s-%d", tp, i))})
		}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, err := NewKafkaMessages(ctx, KafkaMessagesConfig{Brokers: b.Addrs(), Topics: []string{"ta", "ta"}, GroupID: "g"}); err == nil {
		t.Error("a repeated topic was accepted")
	}
	cfg := KafkaMessagesConfig{Brokers: b.Addrs(), Topics: []string{"ta", "tb"}, GroupID: "g", BatchWait: 50 * time.Millisecond,
		SessionTimeout: 6 * time.Second, InstanceID: "km", Logger: quietLogger()}
	read := func(s *KafkaMessages, n int) map[string][]Message {
		t.Helper()
		got := map[string][]Message{}
		var buf []Message
		for k := 0; k < n; {
			var err error
			if buf, err = s.Next(ctx, buf[:0]); err != nil {
				t.Fatal(err)
			}
			for _, m := range buf {
				got[m.Topic] = append(got[m.Topic], m)
				if string(m.Value[:2]) != m.Topic {
					t.Errorf("message %s in topic %s", m.Value, m.Topic)
				}
			}
			k += len(buf)
		}
		return got
	}
	s, err := NewKafkaMessages(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := s.Partitions(ctx)
	if err != nil || len(parts["ta"]) != 2 || len(parts["tb"]) != 2 {
		t.Errorf("partitions %v, %v", parts, err)
	}
	got := read(s, 20)
	if len(got["ta"]) != 10 || len(got["tb"]) != 10 {
		t.Fatalf("read %d of ta, %d of tb", len(got["ta"]), len(got["tb"]))
	}
	next := map[int]int64{}
	for _, m := range got["ta"] {
		next[m.Partition] = max(next[m.Partition], m.Offset+1)
	}
	if err := s.Commit(ctx, map[string]map[int]int64{"ta": next}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s2, err := NewKafkaMessages(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	again := read(s2, 10)
	if len(again["ta"]) != 0 || len(again["tb"]) != 10 {
		t.Errorf("after the commit of ta: read %d of ta, %d of tb again", len(again["ta"]), len(again["tb"]))
	}
	if st := s2.Stats(); st.Messages != 10 {
		t.Errorf("stats %+v", st)
	}
}
