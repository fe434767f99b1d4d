package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/onestone/onestone/ingest"
)

func init() {
	register(command{
		name:    "produce",
		summary: "replay Parquet events into a Kafka topic as JSON",
		usage:   "onestone produce --brokers HOST:PORT|embedded --topic events --data FILE_OR_GLOB [flags]",
		flags:   produceFlags,
	})
}

func produceFlags(fs *flag.FlagSet) runFunc {
	var brokers, data []string
	brokersVar(fs, &brokers, " (it stops when produce ends)")
	topic := fs.String("topic", "events", "topic to write")
	listVar(fs, &data, "data", "Parquet `files` or globs, e.g. 'data/train-*.parquet' (required)")
	rate := fs.Float64("rate", 0, "events per second (0 = as fast as possible)")
	limit := fs.Int64("limit", 0, "stop after this many events (0 = all)")
	key := fs.String("key", "user_id", "column whose text is the message key ('-' for none)")
	comp := fs.String("compression", "none", "none, gzip, snappy, lz4 or zstd")
	batch := fs.Int("batch", 1000, "messages per produce request")
	return func(ctx context.Context, stdout, stderr io.Writer, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected arguments %q", args)
		}
		if len(data) == 0 {
			return usagef("--data is required")
		}
		addrs, stop, err := brokerAddrs(ctx, brokers, *topic)
		if err != nil {
			return err
		}
		defer stop()
		if isEmbedded(brokers) {
			fmt.Fprintf(stderr, "onestone produce: embedded broker on %s\n", addrs[0])
		}
		src, err := ingest.NewParquetSource(ctx, ingest.ParquetConfig{Paths: data, BatchSize: 8192})
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
		fmt.Fprintf(stderr, "onestone produce: %d events to %s in %v (%.0f msgs/s)\n", n, *topic, el.Round(time.Millisecond), float64(n)/el.Seconds())
		return err
	}
}
