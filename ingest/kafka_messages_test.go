package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

// TestKafkaMessagesExclusive: an Exclusive source refuses to share its
// group. Of two that start at once, at most one reads; one alone reads, a
// second is refused at its start, and the first goes on reading after a
// restart of its own instance.
func TestKafkaMessagesExclusive(t *testing.T) {
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
	defer w.Close()
	write := func(from, n int) {
		t.Helper()
		var msgs []kafka.Message
		for i := from; i < from+n; i++ {
			msgs = append(msgs, kafka.Message{Topic: []string{"ta", "tb"}[i%2], Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprint(i))})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	write(0, 20)
	if _, err := NewKafkaMessages(ctx, KafkaMessagesConfig{Brokers: b.Addrs(), Topics: []string{"ta"}, GroupID: "g", Exclusive: true}); err == nil {
		t.Error("Exclusive without an InstanceID was accepted")
	}
	cfg := func(id string) KafkaMessagesConfig {
		return KafkaMessagesConfig{Brokers: b.Addrs(), Topics: []string{"ta", "tb"}, GroupID: "g", BatchWait: 50 * time.Millisecond,
			SessionTimeout: 6 * time.Second, InstanceID: id, Logger: quietLogger(), Exclusive: true}
	}
	// next reads until err or n messages; first is when the first came.
	var firstMu sync.Mutex
	firstOf := map[*KafkaMessages]time.Time{}
	next := func(s *KafkaMessages, n int) (map[string]bool, error) {
		got := map[string]bool{}
		var buf []Message
		for len(got) < n {
			c, cancel := context.WithTimeout(ctx, 20*time.Second)
			var err error
			buf, err = s.Next(c, buf[:0])
			cancel()
			if err != nil {
				return got, err
			}
			if len(buf) > 0 && len(got) == 0 {
				firstMu.Lock()
				firstOf[s] = time.Now()
				firstMu.Unlock()
			}
			for _, m := range buf {
				got[string(m.Value)] = true
			}
		}
		return got, nil
	}

	// Two that start at once: neither reads beside the other. Each is
	// refused at its start (the other had joined), or once it has joined
	// (both joined before either looked: both fail), or it was alone and
	// reads everything while the other is refused.
	type result struct {
		got        int
		err        error
		from, till time.Time // from its first message to its last
	}
	res := make(chan result, 2)
	for _, id := range []string{"one", "two"} {
		go func() {
			s, err := NewKafkaMessages(ctx, cfg(id))
			if err != nil {
				res <- result{err: err}
				return
			}
			got, err := next(s, 20)
			till := time.Now()
			s.Close() // leaves the group before the next part
			firstMu.Lock()
			from := firstOf[s]
			firstMu.Unlock()
			res <- result{len(got), err, from, till}
		}()
	}
	r1, r2 := <-res, <-res
	for _, r := range []result{r1, r2} {
		if r.err != nil && (!errors.Is(r.err, ErrGroupShared) || r.got > 0) {
			t.Errorf("read %d, then %v", r.got, r.err)
		}
		if r.err == nil && r.got != 20 {
			t.Errorf("read %d of 20", r.got)
		}
	}
	// Both may read everything one after the other (on a loaded host the
	// first can be done and gone before the second starts), never at once.
	if r1.err == nil && r2.err == nil && r1.from.Before(r2.till) && r2.from.Before(r1.till) {
		t.Error("two members read at once")
	}
	t.Logf("started at once: %+v, %+v", r1, r2)

	// One alone reads all; a second is refused at its start.
	s1, err := NewKafkaMessages(ctx, cfg("one"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := next(s1, 20); err != nil || len(got) != 20 {
		t.Fatalf("alone: read %d of 20: %v", len(got), err)
	}
	if _, err := NewKafkaMessages(ctx, cfg("two")); !errors.Is(err, ErrGroupShared) {
		t.Errorf("a second member was not refused: %v", err)
	}
	s1.Close()
	// The same instance again (its earlier member gone or removed).
	s1, err = NewKafkaMessages(ctx, cfg("one"))
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	write(20, 10)
	if got, err := next(s1, 30); err != nil || len(got) != 30 {
		t.Errorf("restarted: read %d of 30: %v", len(got), err)
	}
	if st := s1.Stats(); st.OtherMembers != 0 {
		t.Errorf("stats %+v", st)
	}
}
