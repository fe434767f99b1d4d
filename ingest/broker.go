package ingest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"
)

// BrokerConfig configures an embedded Kafka-protocol broker.
type BrokerConfig struct {
	// Addr is the host:port to listen on; port 0 picks a free port.
	// The host is also the address advertised to clients, so it must be one
	// they can reach (not 0.0.0.0). Default: "127.0.0.1:0" (loopback only).
	Addr string
	// Partitions is the partition count of the seeded topics and of topics
	// created automatically on first use. Default: 4.
	Partitions int
	// Topics are created at start. Others are created on first use.
	Topics []string
	// DataDir, when set, keeps the log on disk there and reloads it on
	// start, so a restarted broker still holds its topics, messages and
	// committed group offsets. Default: "" (in memory only).
	DataDir string
}

// Validate reports whether the configuration is usable.
func (c BrokerConfig) Validate() error {
	if c.Partitions < 0 {
		return fmt.Errorf("ingest: BrokerConfig.Partitions %d is negative", c.Partitions)
	}
	if c.Addr != "" {
		host, port, err := net.SplitHostPort(c.Addr)
		if err != nil {
			return fmt.Errorf("ingest: BrokerConfig.Addr %q: %w", c.Addr, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			return fmt.Errorf("ingest: BrokerConfig.Addr %q: bad port", c.Addr)
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			return fmt.Errorf("ingest: BrokerConfig.Addr %q: the host is advertised to clients, give a reachable address, not %s", c.Addr, host)
		}
	}
	for _, t := range c.Topics {
		if t == "" {
			return errors.New("ingest: BrokerConfig.Topics holds an empty topic name")
		}
	}
	return nil
}

func (c BrokerConfig) withDefaults() BrokerConfig {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.Partitions == 0 {
		c.Partitions = 4
	}
	return c
}

// Broker is an in-process, single-node Kafka-protocol broker
// (github.com/twmb/franz-go/pkg/kfake) for demos and tests: produce, fetch,
// consumer groups and offset commits work as against a real cluster;
// replication and durability across machines do not exist. Topics are
// created automatically on first use.
//
// Methods of Broker are safe for concurrent use.
type Broker struct {
	c     *kfake.Cluster
	addrs []string
	once  sync.Once
}

// StartBroker starts a broker listening on cfg.Addr. It returns once the
// broker accepts connections. ctx bounds only the start.
func StartBroker(ctx context.Context, cfg BrokerConfig) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	host, portStr, _ := net.SplitHostPort(cfg.Addr)
	port, _ := strconv.Atoi(portStr)
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		// kfake listens on 127.0.0.1; bind the configured host instead.
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			_, p, err := net.SplitHostPort(address)
			if err != nil {
				return nil, err
			}
			return net.Listen(network, net.JoinHostPort(host, p))
		}),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(cfg.Partitions),
	}
	if len(cfg.Topics) > 0 {
		opts = append(opts, kfake.SeedTopics(int32(cfg.Partitions), cfg.Topics...))
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("ingest: start broker on %s: %w", cfg.Addr, err)
	}
	return &Broker{c: c, addrs: c.ListenAddrs()}, nil
}

// Addrs returns the host:port addresses clients connect to.
func (b *Broker) Addrs() []string { return append([]string(nil), b.addrs...) }

// Close stops the broker and closes its connections. It is idempotent.
func (b *Broker) Close() error {
	b.once.Do(b.c.Close)
	return nil
}
