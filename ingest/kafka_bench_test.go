package ingest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

const benchEvents = 100_000

// BenchmarkProduce100k replays 100k events (5 columns, ~110 bytes of JSON
// each) into the broker with Produce.
func BenchmarkProduce100k(b *testing.B) {
	brokers, topic := testBrokers(b)
	src := makeEvents(memory.DefaultAllocator, 0, benchEvents)
	defer src.Close()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		src.i = 0
		n, err := Produce(ctx, ProduceConfig{Brokers: brokers, Topic: fmt.Sprintf("%s-%d", topic, i), BatchSize: 4096}, src)
		if err != nil || n != benchEvents {
			b.Fatalf("Produce: %d, %v", n, err)
		}
	}
	b.ReportMetric(float64(benchEvents*b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkConsume100k reads 100k events through a KafkaSource in a new
// consumer group each iteration: fetch, JSON decode, Arrow records.
func BenchmarkConsume100k(b *testing.B) {
	brokers, topic := testBrokers(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	src := makeEvents(memory.DefaultAllocator, 0, benchEvents)
	if _, err := Produce(ctx, ProduceConfig{Brokers: brokers, Topic: topic, BatchSize: 4096}, src); err != nil {
		b.Fatal(err)
	}
	src.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, err := NewKafkaSource(ctx, KafkaConfig{
			Brokers: brokers, Topic: topic, GroupID: fmt.Sprintf("bench-%d", i), Schema: eventsSchema(),
			BatchWait: 50 * time.Millisecond, Logger: quietLogger(),
		})
		if err != nil {
			b.Fatal(err)
		}
		for got := 0; got < benchEvents; {
			rec, err := s.Next(ctx)
			if err != nil {
				b.Fatal(err)
			}
			got += int(rec.NumRows())
			rec.Release()
		}
		s.Close()
	}
	b.ReportMetric(float64(benchEvents*b.N)/b.Elapsed().Seconds(), "events/s")
}
