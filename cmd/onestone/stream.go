package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/pipelines"
)

func init() {
	register(command{
		name:    "stream",
		summary: "train continuously on JSON events from Kafka, publishing bundles",
		usage: `onestone stream --brokers HOST:PORT|embedded --topic events --group trainer --model DIR --spec spec.yaml [flags]

Trains continuously on the topic's JSON events: each micro-batch is scored
before it is trained on (the progressive AUC), checkpoints are published as
bundles under --model and then the consumed offsets are committed.`,
		flags: streamFlags,
	})
}

func streamFlags(fs *flag.FlagSet) runFunc {
	var brokers []string
	brokersVar(fs, &brokers, "")
	topic := fs.String("topic", "events", "topic of JSON events")
	group := fs.String("group", "trainer", "consumer group")
	instance := fs.String("instance-id", "", "this stream's name in the group across restarts, one per stream process (default: kept in MODEL/instance-id)")
	model := fs.String("model", "", "bundle root to publish to; checkpoints go to MODEL/checkpoints and a restart resumes from them (required)")
	spec := fs.String("spec", "", "feature spec with model: and train: sections, fitted with 'onestone fit' (required)")
	initFrom := fs.String("init-from", "", "warm-start a new stream from this batch-trained bundle (ignored when MODEL has checkpoints)")
	every := fs.Duration("checkpoint-every", pipelines.DefaultCheckpointEvery, "longest time between checkpoints (each is published and then committed)")
	events := fs.Int64("checkpoint-events", pipelines.DefaultCheckpointEvents, "checkpoint after this many trained events")
	maxBatch := fs.Int("max-batch", 4096, "most events per micro-batch")
	wait := fs.Duration("batch-wait", 500*time.Millisecond, "how long a micro-batch waits to fill")
	dlq := fs.String("dead-letters", "", "where malformed events go: file:PATH or topic:NAME (default: logged)")
	maxEvent := fs.Int("max-event-bytes", features.DefaultMaxEventBytes, "events longer than this go to the dead letters (reason oversize)")
	window := fs.Int("window", pipelines.DefaultStreamWindow, "events in the progressive (test-then-train) evaluation window")
	keep := fs.Int("keep", pipelines.DefaultKeepBundles, "published bundles to keep")
	session := fs.Duration("session-timeout", 0, "consumer group session timeout (default 30s; the broker's minimum is usually 6s)")
	every2 := fs.Duration("progress-every", 2*time.Second, "period of the status lines")
	journal := fs.String("journal", "", "append a JSON line per trained micro-batch, checkpoint, published bundle and offset commit to this file")
	verbose := fs.Bool("v", false, "log Kafka client events")
	return func(ctx context.Context, stdout, stderr io.Writer, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected arguments %q", args)
		}
		if *model == "" || *spec == "" {
			return usagef("--model and --spec are required")
		}
		addrs, stop, err := brokerAddrs(ctx, brokers, *topic)
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
		cfg := pipelines.StreamConfig{
			Brokers: addrs, Topic: *topic, GroupID: *group, InstanceID: *instance, SpecPath: *spec, Model: *model, InitFrom: *initFrom,
			CheckpointEvery: *every, CheckpointEvents: *events, MaxBatch: *maxBatch, BatchWait: *wait,
			DeadLetters: *dlq, MaxEventBytes: *maxEvent, Window: *window, KeepBundles: *keep, SessionTimeout: *session,
			Progress: stderr, ProgressEvery: *every2, Logger: logger,
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
