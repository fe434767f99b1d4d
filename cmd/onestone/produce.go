package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/internal/gen"
)

func init() {
	register(command{
		name:    "produce",
		summary: "replay Parquet events, or the three generated streams, into Kafka topics as JSON",
		usage: `onestone produce --brokers HOST:PORT|embedded --topic events --data FILE_OR_GLOB [flags]
onestone produce --brokers HOST:PORT|embedded --streams DIR [--topics I,C,V] [--speedup F] [flags]

With --data, the rows of Parquet files go to --topic as JSON events, at
--rate events per second.

With --streams, the impressions.jsonl, clicks.jsonl and conversions.jsonl
of DIR (onestone gen --streams) go to the three --topics, merged in
event-time order (ts_ms), each message keyed by its user_id, so the three
topics are co-partitioned when they have the same partition count.
--speedup paces them by event time: 60 replays a minute of event time per
second; 0 is as fast as possible.`,
		flags: produceFlags,
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
	streams := fs.String("streams", "", "`dir`ectory of onestone gen --streams to replay instead of --data")
	topics := []string{"impressions", "clicks", "conversions"}
	listVar(fs, &topics, "topics", "with --streams: the impression, click and conversion `topics`")
	speedup := fs.Float64("speedup", 0, "with --streams: event time replayed per second of wall time (0 = as fast as possible)")
	return func(ctx context.Context, stdout, stderr io.Writer, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected arguments %q", args)
		}
		if *streams != "" {
			if len(data) > 0 || *rate != 0 {
				return usagef("--streams replaces --data and paces by --speedup, not --rate")
			}
			if len(topics) != 3 {
				return usagef("--topics wants 3 topics (impressions, clicks, conversions), got %q", topics)
			}
			if *speedup < 0 {
				return usagef("--speedup %v is negative", *speedup)
			}
			return produceStreams(ctx, stderr, brokers, ingest.ReplayConfig{
				Inputs: []ingest.ReplayInput{
					{Path: filepath.Join(*streams, gen.StreamFiles[0]), Topic: topics[0]},
					{Path: filepath.Join(*streams, gen.StreamFiles[1]), Topic: topics[1]},
					{Path: filepath.Join(*streams, gen.StreamFiles[2]), Topic: topics[2]},
				},
				KeyField: *key, Speedup: *speedup, Compression: *comp, BatchSize: *batch, Limit: *limit,
			})
		}
		if len(data) == 0 {
			return usagef("--data or --streams is required")
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

// produceStreams replays three generated streams into their topics.
func produceStreams(ctx context.Context, stderr io.Writer, brokers []string, cfg ingest.ReplayConfig) error {
	var topics []string
	for _, in := range cfg.Inputs {
		topics = append(topics, in.Topic)
	}
	addrs, stop, err := brokerAddrs(ctx, brokers, topics...)
	if err != nil {
		return err
	}
	defer stop()
	if isEmbedded(brokers) {
		fmt.Fprintf(stderr, "onestone produce: embedded broker on %s\n", addrs[0])
	}
	cfg.Brokers = addrs
	start := time.Now()
	sent, err := ingest.Replay(ctx, cfg)
	el := time.Since(start)
	var n int64
	for i, in := range cfg.Inputs {
		if i < len(sent) {
			fmt.Fprintf(stderr, "onestone produce: %d events to %s\n", sent[i], in.Topic)
			n += sent[i]
		}
	}
	fmt.Fprintf(stderr, "onestone produce: %d events in %v (%.0f msgs/s)\n", n, el.Round(time.Millisecond), float64(n)/el.Seconds())
	return err
}
