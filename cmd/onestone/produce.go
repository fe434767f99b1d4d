package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/onestone/onestone/ingest"
)

func init() {
	register(command{
		name:    "produce",
		summary: "replay Parquet events into a Kafka topic as JSON",
		run:     runProduce,
	})
}

func runProduce(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("produce", flag.ContinueOnError)
	brokers := fs.String("brokers", "embedded", "comma-separated host:port list, or 'embedded' to start a broker in this process (it stops when produce ends)")
	topic := fs.String("topic", "events", "topic to write")
	data := fs.String("data", "", "Parquet file or glob, e.g. 'data/train-*.parquet' (required)")
	rate := fs.Float64("rate", 0, "events per second (0 = as fast as possible)")
	limit := fs.Int64("limit", 0, "stop after this many events (0 = all)")
	key := fs.String("key", "user_id", "column whose text is the message key ('-' for none)")
	comp := fs.String("compression", "none", "none, gzip, snappy, lz4 or zstd")
	batch := fs.Int("batch", 1000, "messages per produce request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *data == "" {
		return errors.New("--data is required")
	}
	addrs := strings.Split(*brokers, ",")
	if *brokers == "embedded" {
		b, err := ingest.StartBroker(ctx, ingest.BrokerConfig{Topics: []string{*topic}})
		if err != nil {
			return err
		}
		defer b.Close()
		addrs = b.Addrs()
		fmt.Fprintf(os.Stderr, "onestone produce: embedded broker on %s\n", addrs[0])
	}
	src, err := ingest.NewParquetSource(ctx, ingest.ParquetConfig{Paths: []string{*data}, BatchSize: 8192})
	if err != nil {
		return err
	}
	defer src.Close()
	start := time.Now()
	n, err := ingest.Produce(ctx, ingest.ProduceConfig{
		Brokers: addrs, Topic: *topic, KeyColumn: *key, Rate: *rate,
		Compression: *comp, BatchSize: *batch, Limit: *limit,
	}, src)
	el := time.Since(start)
	fmt.Fprintf(os.Stderr, "onestone produce: %d events to %s in %v (%.0f msgs/s)\n", n, *topic, el.Round(time.Millisecond), float64(n)/el.Seconds())
	return err
}
