package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/pipelines"
)

func init() {
	register(command{
		name:    "stream",
		summary: "train continuously on JSON events from Kafka, publishing bundles",
		run:     runStream,
	})
}

func runStream(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("stream", flag.ContinueOnError)
	brokers := fs.String("brokers", "embedded", "comma-separated host:port list, or 'embedded' to start a broker in this process")
	topic := fs.String("topic", "events", "topic of JSON events")
	group := fs.String("group", "trainer", "consumer group")
	model := fs.String("model", "", "bundle root to publish to; checkpoints go to MODEL/checkpoints and a restart resumes from them (required)")
	spec := fs.String("spec", "", "feature spec with model: and train: sections, fitted with 'onestone fit' (required)")
	initFrom := fs.String("init-from", "", "warm-start a new stream from this batch-trained bundle (ignored when MODEL has checkpoints)")
	every := fs.Duration("checkpoint-every", pipelines.DefaultCheckpointEvery, "longest time between checkpoints (each is published and then committed)")
	events := fs.Int64("checkpoint-events", pipelines.DefaultCheckpointEvents, "checkpoint after this many trained events")
	maxBatch := fs.Int("max-batch", 4096, "most events per micro-batch")
	wait := fs.Duration("batch-wait", 500*time.Millisecond, "how long a micro-batch waits to fill")
	dlq := fs.String("dead-letters", "", "where malformed events go: file:PATH or topic:NAME (default: logged)")
	window := fs.Int("window", pipelines.DefaultStreamWindow, "events in the progressive (test-then-train) evaluation window")
	keep := fs.Int("keep", pipelines.DefaultKeepBundles, "published bundles to keep")
	session := fs.Duration("session-timeout", 0, "consumer group session timeout (default 30s; the broker's minimum is usually 6s)")
	every2 := fs.Duration("progress-every", 2*time.Second, "period of the status lines")
	trace := fs.String("trace", "", "") // hidden: append trained offset ranges (kill test)
	verbose := fs.Bool("v", false, "log Kafka client events")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: onestone stream --brokers HOST:PORT|embedded --topic events --group trainer --model DIR --spec spec.yaml [flags]")
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name == "trace" {
				return
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "0s" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(fs.Output(), "  -%-18s %s%s\n", f.Name, f.Usage, def)
		})
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *model == "" || *spec == "" {
		return errors.New("--model and --spec are required")
	}
	addrs := strings.Split(*brokers, ",")
	if *brokers == "embedded" {
		b, err := ingest.StartBroker(ctx, ingest.BrokerConfig{Topics: []string{*topic}})
		if err != nil {
			return err
		}
		defer b.Close()
		addrs = b.Addrs()
		fmt.Fprintf(os.Stderr, "onestone stream: embedded broker on %s (produce to it with --brokers %s)\n", addrs[0], addrs[0])
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	var progress io.Writer = os.Stderr
	return pipelines.StreamTrain(ctx, pipelines.StreamConfig{
		Brokers: addrs, Topic: *topic, GroupID: *group, SpecPath: *spec, Model: *model, InitFrom: *initFrom,
		CheckpointEvery: *every, CheckpointEvents: *events, MaxBatch: *maxBatch, BatchWait: *wait,
		DeadLetters: *dlq, Window: *window, KeepBundles: *keep, SessionTimeout: *session,
		Progress: progress, ProgressEvery: *every2, Trace: *trace, Logger: logger,
	})
}
