package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// Message is one raw Kafka message of a KafkaMessages source.
type Message struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	// HighWaterMark is the partition's high watermark when the message
	// was fetched (0 when unknown).
	HighWaterMark int64
}

// KafkaMessagesConfig configures a KafkaMessages source.
type KafkaMessagesConfig struct {
	// Brokers are the bootstrap addresses. Required.
	Brokers []string
	// Topics are consumed together, as one group subscription. Required.
	Topics []string
	// GroupID is the consumer group. Required.
	GroupID string
	// InstanceID names the member across restarts (KafkaConfig.InstanceID).
	InstanceID string
	// BatchSize is the most messages Next returns. Default: 4096.
	BatchSize int
	// BatchWait is how long Next waits to fill a batch once it holds one
	// message. Default: 500ms.
	BatchWait time.Duration
	// MaxMessageBytes bounds a fetch's messages. Default: 1 MiB.
	MaxMessageBytes int
	// SessionTimeout, RetryTimeout, HeartbeatInterval: as KafkaConfig's.
	SessionTimeout, RetryTimeout, HeartbeatInterval time.Duration
	// Logger receives Kafka client events. Default: slog.Default().
	Logger *slog.Logger
	// Exclusive makes the source its group's only member, for a consumer
	// whose state cannot move between members with the partitions (a
	// join's). NewKafkaMessages fails with ErrGroupShared when the group
	// has a member of another client id (the members earlier runs of
	// InstanceID left are removed first; InstanceID is required), and Next
	// fails with it, before it returns a message, when the source has
	// joined the group and found another member there before it found
	// itself alone (two sources that start at once both fail). A source
	// that was its group's only member after joining keeps going when
	// another comes (that one fails, and the partitions come back when it
	// leaves) and counts the other members it sees in
	// MessagesStats.OtherMembers.
	Exclusive bool
}

// ErrGroupShared is the error of an Exclusive KafkaMessages whose group has
// another member.
var ErrGroupShared = errors.New("the consumer group has another member")

// Validate reports whether the configuration is usable.
func (c KafkaMessagesConfig) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("ingest: KafkaMessagesConfig.Brokers is empty")
	case len(c.Topics) == 0:
		return errors.New("ingest: KafkaMessagesConfig.Topics is empty")
	case c.GroupID == "":
		return errors.New("ingest: KafkaMessagesConfig.GroupID is empty")
	case c.BatchSize < 0 || c.MaxMessageBytes < 0:
		return fmt.Errorf("ingest: KafkaMessagesConfig: negative BatchSize %d or MaxMessageBytes %d", c.BatchSize, c.MaxMessageBytes)
	case c.BatchWait < 0 || c.SessionTimeout < 0 || c.RetryTimeout < 0 || c.HeartbeatInterval < 0:
		return errors.New("ingest: KafkaMessagesConfig: negative duration")
	case c.Exclusive && c.InstanceID == "":
		return errors.New("ingest: KafkaMessagesConfig: Exclusive needs an InstanceID, to tell this source's members from others")
	}
	seen := map[string]bool{}
	for _, t := range c.Topics {
		if t == "" || seen[t] {
			return fmt.Errorf("ingest: KafkaMessagesConfig.Topics %q: empty or repeated topic", c.Topics)
		}
		seen[t] = true
	}
	return ValidInstanceID(c.InstanceID)
}

func (c KafkaMessagesConfig) withDefaults() KafkaMessagesConfig {
	k := KafkaConfig{BatchSize: c.BatchSize, BatchWait: c.BatchWait, MaxEventBytes: c.MaxMessageBytes,
		SessionTimeout: c.SessionTimeout, RetryTimeout: c.RetryTimeout, HeartbeatInterval: c.HeartbeatInterval, Logger: c.Logger}.withDefaults()
	c.BatchSize, c.BatchWait, c.MaxMessageBytes = k.BatchSize, k.BatchWait, k.MaxEventBytes
	c.SessionTimeout, c.RetryTimeout, c.HeartbeatInterval, c.Logger = k.SessionTimeout, k.RetryTimeout, k.HeartbeatInterval, k.Logger
	return c
}

// KafkaMessages reads the raw messages of several topics as one member of a
// consumer group (segmentio/kafka-go), for a consumer that keeps its own
// offsets (ingest/join's state does). Offsets are never committed
// automatically: Commit commits what the caller says once what it built
// from the messages is durable. After a restart or a rebalance the group
// resumes from its committed offsets, so messages come at least once; the
// caller skips those it has already consumed. The same partition numbers of
// co-partitioned topics go to the same member (the "range" assignor, per
// topic, over the same members).
//
// A KafkaMessages is not safe for concurrent use, except Stats.
type KafkaMessages struct {
	cfg     KafkaMessagesConfig
	r       *kafka.Reader
	client  *kafka.Client  // for the Exclusive checks
	alone   bool           // Exclusive: seen as the only member after joining
	checked time.Time      // Exclusive: the last check of the members
	held    *kafka.Message // fetched, not yet returned (a check failed)
	// checkFailing: the last look at the members failed (logged once).
	checkFailing bool
	committed    map[string]map[int]int64
	errSince     time.Time
	stale        int

	mu     sync.Mutex
	lag    map[string]map[int]int64
	n      int64
	fe     int64
	others int

	closeOnce sync.Once
	closeErr  error
}

// NewKafkaMessages joins the group (removing the members an earlier run of
// the same InstanceID left, as NewKafkaSource does); ctx bounds the set-up.
func NewKafkaMessages(ctx context.Context, cfg KafkaMessagesConfig) (*KafkaMessages, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	lg := cfg.Logger
	dialer := &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true}
	s := &KafkaMessages{cfg: cfg, committed: map[string]map[int]int64{}, lag: map[string]map[int]int64{}}
	if cfg.InstanceID != "" {
		tr := &kafka.Transport{ClientID: ClientID(cfg.InstanceID)}
		c := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 10 * time.Second, Transport: tr}
		dialer.ClientID = ClientID(cfg.InstanceID)
		var err error
		if s.stale, err = removeStaleMembers(ctx, c, cfg.GroupID, dialer.ClientID); err != nil {
			lg.Warn("ingest: could not remove the group members earlier runs of this instance left", "group", cfg.GroupID, "err", err)
		}
		tr.CloseIdleConnections()
	}
	if cfg.Exclusive {
		s.client = &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 10 * time.Second, Transport: &kafka.Transport{ClientID: ClientID(cfg.InstanceID)}}
		_, others, err := s.members(ctx)
		if err == nil && len(others) > 0 {
			err = s.sharedError(others)
		}
		if err != nil {
			s.client.Transport.(*kafka.Transport).CloseIdleConnections()
			return nil, err
		}
	}
	s.r = kafka.NewReader(kafka.ReaderConfig{
		Brokers:           cfg.Brokers,
		Dialer:            dialer,
		GroupID:           cfg.GroupID,
		GroupTopics:       cfg.Topics,
		MinBytes:          1,
		MaxBytes:          max(16<<20, 2*cfg.MaxMessageBytes),
		MaxWait:           2 * time.Second, // see NewKafkaSource
		QueueCapacity:     1024,
		CommitInterval:    0,
		StartOffset:       kafka.FirstOffset,
		HeartbeatInterval: cfg.HeartbeatInterval,
		SessionTimeout:    cfg.SessionTimeout,
		RebalanceTimeout:  cfg.SessionTimeout,
		JoinGroupBackoff:  time.Second,
		GroupBalancers:    []kafka.GroupBalancer{rangeBalancer{}, kafka.RoundRobinGroupBalancer{}},
		MaxAttempts:       5,
		Logger: kafka.LoggerFunc(func(f string, a ...any) {
			lg.Debug(fmt.Sprintf(f, a...), "component", "kafka-go")
		}),
		ErrorLogger: kafka.LoggerFunc(func(f string, a ...any) {
			lg.Warn(fmt.Sprintf(f, a...), "component", "kafka-go")
		}),
	})
	return s, nil
}

// Partitions returns the partition numbers of each topic, from the
// cluster's metadata.
func (s *KafkaMessages) Partitions(ctx context.Context) (map[string][]int, error) {
	tr := &kafka.Transport{ClientID: ClientID(s.cfg.InstanceID)}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(s.cfg.Brokers...), Timeout: 10 * time.Second, Transport: tr}
	resp, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: s.cfg.Topics})
	if err != nil {
		return nil, fmt.Errorf("ingest: metadata of topics %q: %w", s.cfg.Topics, err)
	}
	out := map[string][]int{}
	for _, t := range resp.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("ingest: metadata of topic %s: %w", t.Name, t.Error)
		}
		for _, p := range t.Partitions {
			out[t.Name] = append(out[t.Name], p.ID)
		}
	}
	return out, nil
}

// StaleMembers is how many members of earlier runs were removed at the
// start.
func (s *KafkaMessages) StaleMembers() int { return s.stale }

// Next appends to dst the next messages: it blocks until one arrives (or
// ctx ends: then it returns ctx.Err() with what it has), then takes more
// for at most BatchWait, up to BatchSize. Transient fetch errors are
// retried for up to RetryTimeout.
func (s *KafkaMessages) Next(ctx context.Context, dst []Message) ([]Message, error) {
	if s.cfg.Exclusive && !s.alone && time.Since(s.checked) >= time.Second {
		// The reader joins in the background: a member that came beside
		// another refuses even when its partitions are quiet.
		if _, err := s.checkAlone(ctx); err != nil {
			return dst, err
		}
	}
	var m kafka.Message
	if s.held != nil {
		m, s.held = *s.held, nil
	} else {
		var err error
		if m, err = s.fetch(ctx); err != nil {
			return dst, err
		}
	}
	if s.cfg.Exclusive && (!s.alone || time.Since(s.checked) > exclusiveCheckEvery) {
		// Until the source has seen itself alone, a message is returned
		// only once the group's members show it so.
		for {
			listed, err := s.checkAlone(ctx)
			if err == nil && (s.alone || listed) {
				break
			}
			if err == nil {
				// Not among the members yet (a rebalance under way), or
				// the look failed: look again.
				t := time.NewTimer(100 * time.Millisecond)
				select {
				case <-ctx.Done():
					err = ctx.Err()
				case <-t.C:
				}
				t.Stop()
			}
			if err != nil {
				// The reader has moved past m: keep it for the next
				// call (after a deadline, say), so none goes missing.
				s.held = &m
				return dst, err
			}
		}
	}
	dst = s.add(dst, &m)
	bctx, cancel := context.WithTimeout(ctx, s.cfg.BatchWait)
	defer cancel()
	for n := 1; n < s.cfg.BatchSize; n++ {
		m, err := s.fetch(bctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				break
			}
			return dst, err
		}
		dst = s.add(dst, &m)
	}
	return dst, nil
}

func (s *KafkaMessages) add(dst []Message, m *kafka.Message) []Message {
	s.mu.Lock()
	s.n++
	if m.HighWaterMark > 0 {
		lt := s.lag[m.Topic]
		if lt == nil {
			lt = map[int]int64{}
			s.lag[m.Topic] = lt
		}
		lt[m.Partition] = max(0, m.HighWaterMark-m.Offset-1)
	}
	s.mu.Unlock()
	return append(dst, Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, HighWaterMark: m.HighWaterMark})
}

// fetch returns the next message, retrying transient errors.
func (s *KafkaMessages) fetch(ctx context.Context) (kafka.Message, error) {
	return fetchRetrying(ctx, s.r, &s.errSince, s.cfg.RetryTimeout, s.cfg.Logger, func() string { return fmt.Sprintf("topics %q", s.cfg.Topics) }, func() {
		s.mu.Lock()
		s.fe++
		s.mu.Unlock()
	})
}

// exclusiveCheckEvery is how often an Exclusive source that was alone looks
// at its group's members again, to count the others.
const exclusiveCheckEvery = 10 * time.Second

// members returns the client ids of the group's members: how many have
// this source's client id, and the others'.
func (s *KafkaMessages) members(ctx context.Context) (mine int, others []string, err error) {
	resp, err := s.client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{s.cfg.GroupID}})
	if err != nil {
		return 0, nil, fmt.Errorf("ingest: members of group %s: %w", s.cfg.GroupID, err)
	}
	for _, g := range resp.Groups {
		if errors.Is(g.Error, kafka.GroupIdNotFound) {
			continue
		}
		if g.Error != nil {
			return 0, nil, fmt.Errorf("ingest: members of group %s: %w", s.cfg.GroupID, g.Error)
		}
		for _, m := range g.Members {
			if m.ClientID == ClientID(s.cfg.InstanceID) {
				mine++
			} else {
				others = append(others, m.ClientID)
			}
		}
	}
	return mine, others, nil
}

func (s *KafkaMessages) sharedError(others []string) error {
	return fmt.Errorf("ingest: group %s of topics %q has %d other member(s) (client ids %q) and this consumer must be its only one: %w",
		s.cfg.GroupID, s.cfg.Topics, len(others), others, ErrGroupShared)
}

// checkAlone looks at the group's members: once this source is among them
// (listed), one that has not been alone yet fails with ErrGroupShared when
// another member is there; one that has counts them. A look that fails (a
// deadline, a broker away) is logged and tells nothing: the next is tried.
func (s *KafkaMessages) checkAlone(ctx context.Context) (listed bool, err error) {
	mine, others, err := s.members(ctx)
	s.checked = time.Now()
	if err != nil {
		if ctx.Err() == nil && !s.checkFailing {
			s.cfg.Logger.Warn("ingest: could not look at the group's members; trying again", "group", s.cfg.GroupID, "err", err)
			s.checkFailing = true
		}
		return false, nil
	}
	s.checkFailing = false
	s.mu.Lock()
	s.others = len(others)
	s.mu.Unlock()
	switch {
	case mine == 0:
	case len(others) == 0:
		s.alone = true
	case !s.alone:
		return true, s.sharedError(others)
	default:
		s.cfg.Logger.Warn("ingest: another member joined the group; it should leave, and its partitions come back here", "group", s.cfg.GroupID, "others", others)
	}
	return mine > 0, nil
}

// Commit commits, per topic and partition, the next offset to read (only
// those ahead of what this source committed before). Call it once what was
// built from the messages below them is durable.
func (s *KafkaMessages) Commit(ctx context.Context, offsets map[string]map[int]int64) error {
	var msgs []kafka.Message
	for t, ps := range offsets {
		for p, off := range ps {
			if off > 0 && off > s.committed[t][p] {
				// kafka-go commits the offset after the message given.
				msgs = append(msgs, kafka.Message{Topic: t, Partition: p, Offset: off - 1})
			}
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := s.r.CommitMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("ingest: commit offsets of topics %q group %s: %w", s.cfg.Topics, s.cfg.GroupID, err)
	}
	for _, m := range msgs {
		if s.committed[m.Topic] == nil {
			s.committed[m.Topic] = map[int]int64{}
		}
		s.committed[m.Topic][m.Partition] = m.Offset + 1
	}
	return nil
}

// MessagesStats are a KafkaMessages source's counters.
type MessagesStats struct {
	// Messages fetched, and transient FetchErrors retried.
	Messages, FetchErrors int64
	// Lag per topic and partition: messages between the last one read and
	// the high watermark when it was fetched.
	Lag map[string]map[int]int64
	// OtherMembers is, for an Exclusive source, how many other members
	// the group had at the last look.
	OtherMembers int
}

// Stats returns a copy of the counters. Safe for concurrent use.
func (s *KafkaMessages) Stats() MessagesStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := MessagesStats{Messages: s.n, FetchErrors: s.fe, Lag: map[string]map[int]int64{}, OtherMembers: s.others}
	for t, ps := range s.lag {
		st.Lag[t] = map[int]int64{}
		for p, l := range ps {
			st.Lag[t][p] = l
		}
	}
	return st
}

// Close leaves the group. It does not commit. It is idempotent.
func (s *KafkaMessages) Close() error {
	s.closeOnce.Do(func() {
		if err := s.r.Close(); err != nil {
			s.closeErr = fmt.Errorf("ingest: close kafka reader: %w", err)
		}
		if s.client != nil {
			s.client.Transport.(*kafka.Transport).CloseIdleConnections()
		}
	})
	return s.closeErr
}
