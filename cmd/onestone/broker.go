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
	topics := []string{"events"}
	listVar(fs, &topics, "topics", "`topics` to create at start (others are created on first use)")
	dataDir := fs.String("data", "", "directory keeping the log across restarts (default: memory only)")
	return func(ctx context.Context, stdout, stderr io.Writer, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected arguments %q", args)
		}
		b, err := ingest.StartBroker(ctx, ingest.BrokerConfig{Addr: *addr, Partitions: *parts, Topics: topics, DataDir: *dataDir})
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "onestone broker: listening on %s, topics %v with %d partitions\n", strings.Join(b.Addrs(), ","), topics, *parts)
		<-ctx.Done()
		fmt.Fprintln(stderr, "onestone broker: stopping")
		return b.Close()
	}
}

// embedded is the --brokers value of stream and produce that starts a
// broker in the process.
const embedded = "embedded"

// brokersVar defines the --brokers flag of stream and produce.
func brokersVar(fs *flag.FlagSet, dst *[]string, usage string) {
	*dst = []string{embedded}
	listVar(fs, dst, "brokers", "Kafka `host:port` addresses, or '"+embedded+"' to start a broker in this process"+usage)
}

// brokerAddrs turns a --brokers value into addresses: the list given, or,
// for "embedded", those of a broker started in this process with the
// topics created; stop stops that broker.
func brokerAddrs(ctx context.Context, brokers []string, topics ...string) (addrs []string, stop func(), err error) {
	if !isEmbedded(brokers) {
		return brokers, func() {}, nil
	}
	b, err := ingest.StartBroker(ctx, ingest.BrokerConfig{Topics: topics})
	if err != nil {
		return nil, nil, err
	}
	return b.Addrs(), func() { b.Close() }, nil
}

func isEmbedded(brokers []string) bool { return len(brokers) == 1 && brokers[0] == embedded }
