package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/onestone/onestone/ingest"
)

func init() {
	register(command{
		name:    "broker",
		summary: "run an embedded Kafka-protocol broker until interrupted",
		usage:   "onestone broker [--addr HOST:PORT] [--topics events] [flags]",
		flags:   brokerFlags,
	})
}

func brokerFlags(fs *flag.FlagSet) runFunc {
	addr := fs.String("addr", "127.0.0.1:9092", "host:port to listen on (the host is advertised to clients)")
	parts := fs.Int("partitions", 4, "partitions per topic")
	topics := fs.String("topics", "events", "comma-separated topics to create at start (others are created on first use)")
	dataDir := fs.String("data", "", "directory keeping the log across restarts (default: memory only)")
	return func(ctx context.Context, stdout, stderr io.Writer, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected arguments %q", args)
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
		fmt.Fprintf(stderr, "onestone broker: listening on %s, topics %v with %d partitions\n", strings.Join(b.Addrs(), ","), ts, *parts)
		<-ctx.Done()
		fmt.Fprintln(stderr, "onestone broker: stopping")
		return b.Close()
	}
}

// embedded is the --brokers value of stream and produce that starts a
// broker in the process.
const embedded = "embedded"

// brokerAddrs turns a --brokers value into addresses: the comma-separated
// list given, or, for "embedded", those of a broker started in this
// process with topic created; stop stops that broker.
func brokerAddrs(ctx context.Context, brokers, topic string) (addrs []string, stop func(), err error) {
	if brokers != embedded {
		return strings.Split(brokers, ","), func() {}, nil
	}
	b, err := ingest.StartBroker(ctx, ingest.BrokerConfig{Topics: []string{topic}})
	if err != nil {
		return nil, nil, err
	}
	return b.Addrs(), func() { b.Close() }, nil
}
