package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/onestone/onestone/ingest"
)

func init() {
	register(command{
		name:    "broker",
		summary: "run an embedded Kafka-protocol broker until interrupted",
		run:     runBroker,
	})
}

func runBroker(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:9092", "host:port to listen on (the host is advertised to clients)")
	parts := fs.Int("partitions", 4, "partitions per topic")
	topics := fs.String("topics", "events", "comma-separated topics to create at start (others are created on first use)")
	dataDir := fs.String("data", "", "directory keeping the log across restarts (default: memory only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var ts []string
	for _, t := range strings.Split(*topics, ",") {
		if t = strings.TrimSpace(t); t != "" {
			ts = append(ts, t)
		}
	}
	b, err := ingest.StartBroker(ctx, ingest.BrokerConfig{Addr: *addr, Partitions: *parts, Topics: ts, DataDir: *dataDir})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "onestone broker: listening on %s, topics %v with %d partitions\n", strings.Join(b.Addrs(), ","), ts, *parts)
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "onestone broker: stopping")
	return b.Close()
}
