package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest/join"
	"github.com/onestone/onestone/pipelines"
)

func init() {
	register(command{
		name:    "stream",
		summary: "train continuously on JSON events from Kafka, publishing bundles",
		usage: `onestone stream --brokers HOST:PORT|embedded --topic events --group trainer --model DIR|URL --spec spec.yaml [flags]
onestone stream --brokers HOST:PORT|embedded --topics impressions,clicks,conversions --group trainer --model DIR|URL --spec spec.yaml [flags]

Trains continuously on the topic's JSON events: each micro-batch is scored
before it is trained on (the progressive AUC), checkpoints are published as
bundles under --model and then the consumed offsets are committed.

With --topics it reads three topics instead, impressions, clicks and
conversions, and joins them by event time with the windows and the
delayed-feedback correction of the spec's join: section (docs/streaming.md;
--click-window, --conversion-window, --emit and --correction override it).
The join state is part of each checkpoint, and such a stream must be its
group's only member: a second one is refused.

--model may be an object store prefix (s3://BUCKET/PREFIX?endpoint=...,
gs://BUCKET/PREFIX, azblob://CONTAINER/PREFIX): bundles
are published there and the checkpoints go to the local --checkpoints DIR.
A publish the store fails is retried at the next checkpoint, with the
offsets left uncommitted meanwhile.`,
		flags: streamFlags,
	})
}

func streamFlags(fs *flag.FlagSet) runFunc {
	var brokers []string
	brokersVar(fs, &brokers, "")
	topic := fs.String("topic", "events", "topic of JSON events")
	group := fs.String("group", "trainer", "consumer group")
	instance := fs.String("instance-id", "", "this stream's name in the group across restarts, one per stream process (default: kept in MODEL/instance-id)")
	model := fs.String("model", "", "bundle root or object store URL to publish to; checkpoints go to MODEL/checkpoints (or --checkpoints) and a restart resumes from them (required)")
	checkpoints := fs.String("checkpoints", "", "local `dir` of the checkpoints (default MODEL/checkpoints; required when --model is a URL)")
	publishTimeout := fs.Duration("publish-timeout", pipelines.DefaultPublishTimeout, "longest publish to an object store")
	spec := fs.String("spec", "", "feature spec with model: and train: sections, fitted with 'onestone fit' (required)")
	initFrom := fs.String("init-from", "", "warm-start a new stream from this batch-trained bundle (ignored when MODEL has checkpoints)")
	every := fs.Duration("checkpoint-every", pipelines.DefaultCheckpointEvery, "longest time between checkpoints (each is published and then committed)")
	events := fs.Int64("checkpoint-events", pipelines.DefaultCheckpointEvents, "checkpoint after this many trained events")
	maxBatch := fs.Int("max-batch", 4096, "most events per micro-batch")
	wait := fs.Duration("batch-wait", 500*time.Millisecond, "how long a micro-batch waits to fill")
	dlq := fs.String("dead-letters", "", "where malformed events go: file:PATH or topic:NAME (default: logged)")
	maxEvent := fs.Int("max-event-bytes", features.DefaultMaxEventBytes, "events longer than this go to the dead letters (reason oversize)")
	window := fs.Int("window", pipelines.DefaultStreamWindow, "events in the progressive (test-then-train) evaluation window")
	keep := fs.Int("keep", pipelines.DefaultKeepBundles, "published bundles to keep (and the delta chains they need)")
	snapEvery := fs.Duration("snapshot-every", pipelines.DefaultSnapshotEvery, "how often a full bundle is published; the publishes between are deltas of the version before (negative: every publish is full)")
	deltaComp := fs.String("delta-compression", "none", "how delta files are stored: none, or zstd (byte-shuffled and compressed, about 17% smaller on the std model; servers must be of a build that reads them)")
	session := fs.Duration("session-timeout", 0, "consumer group session timeout (default 30s; the broker's minimum is usually 6s)")
	every2 := fs.Duration("progress-every", 2*time.Second, "period of the status lines")
	journal := fs.String("journal", "", "append a JSON line per trained micro-batch, checkpoint, published bundle and offset commit to this file")
	verbose := fs.Bool("v", false, "log Kafka client events")
	var topics []string
	listVar(fs, &topics, "topics", "the impression, click and conversion `topics` to join (instead of --topic)")
	clickW := fs.String("click-window", "", "with --topics: the click window, e.g. 30m (default: the spec's join: section, else 30m)")
	convW := fs.String("conversion-window", "", "with --topics: the conversion window, e.g. 7d (default: the spec's, else 7d)")
	emit := fs.String("emit", "", "with --topics: click (train a click at once, re-send its conversion) or label (wait for the final label) (default: the spec's, else click)")
	correction := fs.String("correction", "", "with --topics: the delayed-feedback correction, none or fnw (default: the spec's, else none)")
	metrics := fs.String("metrics", "", "serve Prometheus metrics on this `address` at /metrics (e.g. 127.0.0.1:9100)")
	return func(ctx context.Context, stdout, stderr io.Writer, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected arguments %q", args)
		}
		if *model == "" || *spec == "" {
			return usagef("--model and --spec are required")
		}
		var jc *join.Config
		created := []string{*topic}
		if len(topics) > 0 {
			if len(topics) != 3 {
				return usagef("--topics wants 3 topics (impressions, clicks, conversions), got %q", topics)
			}
			var err error
			if jc, err = joinConfig(*spec, *clickW, *convW, *emit, *correction); err != nil {
				return err
			}
			created = topics
		} else if *clickW != "" || *convW != "" || *emit != "" || *correction != "" {
			return usagef("--click-window, --conversion-window, --emit and --correction need --topics")
		}
		addrs, stop, err := brokerAddrs(ctx, brokers, created...)
		if err != nil {
			return err
		}
		defer stop()
		if isEmbedded(brokers) {
			fmt.Fprintf(stderr, "onestone stream: embedded broker on %s (produce to it with --brokers %s)\n", addrs[0], addrs[0])
		}
		level := slog.LevelWarn
		if *verbose {
			level = slog.LevelDebug
		}
		logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
		codec := *deltaComp
		switch codec {
		case "none":
			codec = bundle.CodecNone
		case bundle.CodecZstd:
		default:
			return usagef("--delta-compression %q: want none or zstd", *deltaComp)
		}
		cfg := pipelines.StreamConfig{
			DeltaCodec: codec,
			Brokers:    addrs, Topic: *topic, GroupID: *group, InstanceID: *instance, SpecPath: *spec, Model: *model, InitFrom: *initFrom,
			Checkpoints: *checkpoints, PublishTimeout: *publishTimeout,
			CheckpointEvery: *every, SnapshotEvery: *snapEvery, CheckpointEvents: *events, MaxBatch: *maxBatch, BatchWait: *wait,
			DeadLetters: *dlq, MaxEventBytes: *maxEvent, Window: *window, KeepBundles: *keep, SessionTimeout: *session,
			Progress: stderr, ProgressEvery: *every2, Logger: logger, MetricsAddr: *metrics,
		}
		if jc != nil {
			cfg.Join, cfg.JoinTopics = jc, [3]string{topics[0], topics[1], topics[2]}
		}
		if *journal != "" {
			j, err := pipelines.OpenJournal(*journal)
			if err != nil {
				return err
			}
			defer j.Close()
			cfg.Observers = append(cfg.Observers, j)
		}
		return pipelines.StreamTrain(ctx, cfg)
	}
}

// joinConfig is the spec's join: section (the defaults without one) with
// the flags given over it.
func joinConfig(specPath, clickW, convW, emit, correction string) (*join.Config, error) {
	text, err := os.ReadFile(specPath)
	if err != nil {
		return nil, err
	}
	c, _, err := join.ParseSpecSection(text)
	if err != nil {
		return nil, err
	}
	for _, d := range []struct {
		flag, v string
		dst     *time.Duration
	}{{"--click-window", clickW, &c.ClickWindow}, {"--conversion-window", convW, &c.ConversionWindow}} {
		if d.v == "" {
			continue
		}
		if *d.dst, err = join.ParseDuration(d.v); err != nil {
			return nil, usagef("%s %q: %v", d.flag, d.v, err)
		}
	}
	if emit != "" {
		c.Emit = emit
	}
	if correction != "" {
		c.Correction = correction
	}
	if err := c.Validate(); err != nil {
		return nil, usagef("%v", err)
	}
	c = c.WithDefaults()
	return &c, nil
}
