package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/segmentio/kafka-go"

	"github.com/onestone/onestone/features"
)

// KafkaConfig configures a KafkaSource.
type KafkaConfig struct {
	// Brokers are the bootstrap addresses (host:port). Required.
	Brokers []string
	// Topic is the topic to consume. Required.
	Topic string
	// GroupID is the consumer group. Required: partitions are spread over
	// the group's members and offsets are committed to it.
	GroupID string
	// InstanceID names this member across restarts: the same name for
	// every run of one consumer (a stream keeps its own beside its
	// checkpoints), a different name for each member that runs at the same
	// time. When set, the source joins the group with the client id
	// "onestone-" + InstanceID, and before joining it removes from the
	// group (LeaveGroup) every member with that client id: those are
	// earlier runs of this instance that died without leaving (SIGKILL, a
	// crash, a lost machine), and the coordinator then rebalances at once
	// instead of waiting for their session to time out. Since coordinators
	// make member ids from client ids and the source's range assignor
	// orders members by id and partitions by number, a restarted instance
	// also gets back the partitions it had when the other members are the
	// same. No two live sources may share an
	// InstanceID: each would remove the other when it starts. Letters,
	// digits, '.', '_' and '-', at most 200 bytes. Default: "" (kafka-go's
	// client id; a dead member keeps its partitions until its session
	// times out).
	InstanceID string
	// Schema is the schema of the records Next returns; events are decoded
	// with features.JSONDecoder (see there for the conversions). Required.
	Schema *arrow.Schema
	// BatchSize is the most events per record batch. Default: 4096.
	BatchSize int
	// BatchWait is how long Next waits to fill a batch once it holds at
	// least one event. Default: 500ms.
	BatchWait time.Duration
	// MaxEventBytes sends longer messages to the dead letters. Default: 1 MiB.
	MaxEventBytes int
	// DeadLetters receives malformed messages. Default: a LogDeadLetters.
	DeadLetters DeadLetterSink
	// Check, when set, finds the events of each batch that training cannot
	// use although they decode (a label outside its domain, a bad weight, a
	// value beyond float32: see features.RowError); they go to the dead
	// letters with the fault as reason, and the batch goes on without them.
	// Use the training Transformer's Checker. Default: nil (no checks).
	Check RowChecker
	// Start holds, per partition, the next offset to train on, from a
	// checkpoint (Position().Offsets): messages below it are skipped, since
	// a checkpoint that was written but whose Commit did not happen already
	// holds them. Default: none (start from the group's committed offsets,
	// or the earliest offset for a new group).
	Start map[int]int64
	// Allocator builds the records. Default: memory.DefaultAllocator.
	Allocator memory.Allocator
	// HeartbeatInterval is the group heartbeat period; a rebalance is
	// noticed within about this long, so it bounds how long a member that
	// restarts waits for the others to rejoin. Default: 1s.
	HeartbeatInterval time.Duration
	// SessionTimeout is how long the group waits for a silent member before
	// moving its partitions. Default: 30s.
	SessionTimeout time.Duration
	// RetryTimeout is how long fetch errors may repeat (broker down,
	// leader moving) before Next gives up with the last one. Default: 2m.
	RetryTimeout time.Duration
	// Logger receives connection and group events at debug level and
	// errors at warn level. Default: slog.Default().
	Logger *slog.Logger
}

// Validate reports whether the configuration is usable.
func (c KafkaConfig) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("ingest: KafkaConfig.Brokers is empty")
	case c.Topic == "":
		return errors.New("ingest: KafkaConfig.Topic is empty")
	case c.GroupID == "":
		return errors.New("ingest: KafkaConfig.GroupID is empty")
	case c.Schema == nil:
		return errors.New("ingest: KafkaConfig.Schema is nil")
	case c.BatchSize < 0:
		return fmt.Errorf("ingest: KafkaConfig.BatchSize %d is negative", c.BatchSize)
	case c.BatchWait < 0:
		return fmt.Errorf("ingest: KafkaConfig.BatchWait %v is negative", c.BatchWait)
	case c.MaxEventBytes < 0:
		return fmt.Errorf("ingest: KafkaConfig.MaxEventBytes %d is negative", c.MaxEventBytes)
	case c.HeartbeatInterval < 0 || c.SessionTimeout < 0 || c.RetryTimeout < 0:
		return errors.New("ingest: KafkaConfig: negative duration")
	}
	if err := ValidInstanceID(c.InstanceID); err != nil {
		return err
	}
	for p, off := range c.Start {
		if p < 0 || off < 0 {
			return fmt.Errorf("ingest: KafkaConfig.Start: partition %d offset %d: negative", p, off)
		}
	}
	return nil
}

func (c KafkaConfig) withDefaults() KafkaConfig {
	if c.BatchSize == 0 {
		c.BatchSize = 4096
	}
	if c.BatchWait == 0 {
		c.BatchWait = 500 * time.Millisecond
	}
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = features.DefaultMaxEventBytes
	}
	if c.DeadLetters == nil {
		c.DeadLetters = &LogDeadLetters{Logger: c.Logger}
	}
	if c.Allocator == nil {
		c.Allocator = memory.DefaultAllocator
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 30 * time.Second
	}
	if c.RetryTimeout == 0 {
		c.RetryTimeout = 2 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// KafkaStats are a KafkaSource's counters since it started.
type KafkaStats struct {
	// Events is how many events were decoded into returned or pending
	// batches (those Check refused are dead letters, not events).
	Events int64
	// Bytes is the total value size of all messages read.
	Bytes int64
	// Skipped is how many messages were below the Start (or already
	// consumed) offsets and were not decoded again.
	Skipped int64
	// DeadLetters counts rejected messages by reason (Reason* constants).
	DeadLetters map[string]int64
	// Lag is, per partition, the messages between the last one read and
	// the partition's high watermark at the time it was fetched.
	Lag map[int]int64
	// FetchErrors counts transient fetch errors that were retried.
	FetchErrors int64
	// StaleMembers is how many members that earlier runs of this
	// instance left in the group were removed at the start (InstanceID).
	StaleMembers int
}

// KafkaSource reads JSON events from a Kafka topic as a member of a consumer
// group (segmentio/kafka-go) and returns them as Arrow record batches.
//
// Offsets are never committed automatically: the caller commits a Position
// with Commit once whatever it built from the events (a checkpoint) is
// durable. Commit writes only offsets ahead of the group's: at the start
// the source reads the group's committed offsets of the Start partitions,
// so committing the Start position (a resumed checkpoint's) brings a group
// that lags it (a crash between a checkpoint and its commit) up to date,
// quiet partitions included. Messages are consumed at least once: after a crash, a rebalance
// or a broker restart the group resumes from the last committed offsets,
// and messages below the Start offsets (or below what this source has
// already consumed) are skipped. Malformed messages go to the dead-letter
// sink and do not stop the stream.
//
// A KafkaSource is not safe for concurrent use, except Stats, which may be
// called from any goroutine.
type KafkaSource struct {
	cfg KafkaConfig
	r   *kafka.Reader
	dec *features.JSONDecoder

	next      map[int]int64   // per partition, next offset to consume (Start merged with consumed)
	returned  map[int]int64   // next at the last batch returned
	committed map[int]int64   // the group's committed offset per partition, as far as known
	first     map[int]int64   // per partition, the first offset consumed into the pending batch
	lastStart map[int]int64   // returned before the last batch, overlaid with its first offsets
	pend      []kafka.Message // the messages of the pending batch's rows
	drop      []bool          // scratch of checkRows

	mu    sync.Mutex // guards stats
	stats KafkaStats

	errSince  time.Time
	closed    bool
	closeOnce sync.Once
	closeErr  error
}

var _ Source = (*KafkaSource)(nil)

// NewKafkaSource joins the consumer group: it first removes the members an
// earlier run of the same InstanceID left behind, and reads the group's
// committed offsets of the Start partitions; the group join and the
// partitions' assignment then go on in the background. ctx bounds only the
// set-up; when the group's coordinator cannot be reached in it, the source
// still starts (the join retries) and the failure is logged.
func NewKafkaSource(ctx context.Context, cfg KafkaConfig) (*KafkaSource, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	dec, err := features.NewJSONDecoder(cfg.Schema, features.JSONConfig{Allocator: cfg.Allocator, MaxEventBytes: cfg.MaxEventBytes})
	if err != nil {
		return nil, fmt.Errorf("ingest: kafka topic %s: %w", cfg.Topic, err)
	}
	maxBytes := 16 << 20
	if 2*cfg.MaxEventBytes > maxBytes {
		maxBytes = 2 * cfg.MaxEventBytes
	}
	lg := cfg.Logger
	dialer := &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true}
	var stale int
	committed := map[int]int64{}
	if cfg.InstanceID != "" || len(cfg.Start) > 0 {
		tr := &kafka.Transport{ClientID: ClientID(cfg.InstanceID)}
		c := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 10 * time.Second, Transport: tr}
		if cfg.InstanceID != "" {
			dialer.ClientID = ClientID(cfg.InstanceID)
			if stale, err = removeStaleMembers(ctx, c, cfg.GroupID, dialer.ClientID); err != nil {
				lg.Warn("ingest: could not remove the group members earlier runs of this instance left; their partitions move when their sessions time out",
					"group", cfg.GroupID, "client_id", dialer.ClientID, "err", err)
			} else if stale > 0 {
				lg.Info("ingest: removed the group members earlier runs of this instance left", "group", cfg.GroupID, "client_id", dialer.ClientID, "members", stale)
			}
		}
		if len(cfg.Start) > 0 {
			if committed, err = groupOffsets(ctx, c, cfg.GroupID, cfg.Topic, cfg.Start); err != nil {
				// Unknown: the first Commit writes every Start partition.
				lg.Warn("ingest: could not read the group's committed offsets", "group", cfg.GroupID, "err", err)
				committed = map[int]int64{}
			}
		}
		tr.CloseIdleConnections()
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:  cfg.Brokers,
		Dialer:   dialer,
		GroupID:  cfg.GroupID,
		Topic:    cfg.Topic,
		MinBytes: 1,
		MaxBytes: maxBytes,
		// kafka-go uses MaxWait as the fetch's read deadline too, and asks
		// the broker to answer within MaxWait less min(1s, MaxWait/4). At
		// 250ms a broker that takes over 60ms to answer (a loaded machine,
		// a distant cluster) made every fetch time out and reconnect; at 2s
		// the broker holds an empty fetch for up to 1s and has 1s more to
		// answer. New events are returned at once either way.
		MaxWait:           2 * time.Second,
		QueueCapacity:     1024,
		CommitInterval:    0, // synchronous, explicit commits only
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
	s := &KafkaSource{
		cfg:       cfg,
		r:         r,
		dec:       dec,
		next:      maps.Clone(cfg.Start),
		returned:  maps.Clone(cfg.Start),
		committed: committed,
		first:     map[int]int64{},
		lastStart: map[int]int64{},
		stats:     KafkaStats{DeadLetters: map[string]int64{}, Lag: map[int]int64{}, StaleMembers: stale},
	}
	if s.next == nil {
		s.next, s.returned = map[int]int64{}, map[int]int64{}
	}
	return s, nil
}

// rangeBalancer is the "range" assignor as Kafka's Java client has it:
// for each topic, the members subscribed to it in member id order take
// consecutive runs of its partitions in partition order. kafka-go's own
// range balancer keeps the partitions in the order the metadata lists
// them, which varies, so the same members could get other partitions on
// each rebalance. Since coordinators make member ids from client ids, an
// instance (KafkaConfig.InstanceID) gets the same partitions back when the
// group's members are the same.
type rangeBalancer struct{}

func (rangeBalancer) ProtocolName() string      { return "range" }
func (rangeBalancer) UserData() ([]byte, error) { return nil, nil }

func (rangeBalancer) AssignGroups(members []kafka.GroupMember, partitions []kafka.Partition) kafka.GroupMemberAssignments {
	out := kafka.GroupMemberAssignments{}
	byTopic := map[string][]string{}
	for _, m := range members {
		out[m.ID] = map[string][]int{}
		for _, t := range m.Topics {
			byTopic[t] = append(byTopic[t], m.ID)
		}
	}
	for topic, ids := range byTopic {
		slices.Sort(ids)
		var ps []int
		for _, p := range partitions {
			if p.Topic == topic {
				ps = append(ps, p.ID)
			}
		}
		slices.Sort(ps)
		for i, id := range ids {
			lo, hi := i*len(ps)/len(ids), (i+1)*len(ps)/len(ids)
			if hi > lo {
				out[id][topic] = append([]int(nil), ps[lo:hi]...)
			}
		}
	}
	return out
}

// ClientID is the Kafka client id of a source with the given InstanceID
// ("" for none: kafka-go's default).
func ClientID(instanceID string) string {
	if instanceID == "" {
		return ""
	}
	return "onestone-" + instanceID
}

// ValidInstanceID reports whether id is usable as a KafkaConfig.InstanceID
// ("" is: it means none).
func ValidInstanceID(id string) error {
	if len(id) > 200 {
		return fmt.Errorf("ingest: instance id of %d bytes, want at most 200", len(id))
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("ingest: instance id %q: only letters, digits, '.', '_' and '-'", id)
		}
	}
	return nil
}

// removeStaleMembers removes from group every member whose client id is
// clientID and returns how many it removed.
func removeStaleMembers(ctx context.Context, c *kafka.Client, group, clientID string) (int, error) {
	resp, err := c.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, g := range resp.Groups {
		if errors.Is(g.Error, kafka.GroupIdNotFound) {
			continue
		}
		if g.Error != nil {
			return n, g.Error
		}
		for _, m := range g.Members {
			if m.ClientID != clientID {
				continue
			}
			// One member per request: LeaveGroup before v3 takes one.
			lr, err := c.LeaveGroup(ctx, &kafka.LeaveGroupRequest{GroupID: group, Members: []kafka.LeaveGroupRequestMember{{ID: m.MemberID}}})
			if err == nil {
				err = lr.Error
			}
			if err == nil && len(lr.Members) > 0 {
				err = lr.Members[0].Error
			}
			if errors.Is(err, kafka.UnknownMemberId) {
				continue // it left meanwhile
			}
			if err != nil {
				return n, fmt.Errorf("leave group %s for member %s: %w", group, m.MemberID, err)
			}
			n++
		}
	}
	return n, nil
}

// groupOffsets reads the group's committed offsets of topic's partitions
// that start names (partitions without one are left out).
func groupOffsets(ctx context.Context, c *kafka.Client, group, topic string, start map[int]int64) (map[int]int64, error) {
	ps := slices.Sorted(maps.Keys(start))
	resp, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err == nil {
		err = resp.Error
	}
	if err != nil {
		return nil, err
	}
	out := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("partition %d: %w", p.Partition, p.Error)
		}
		if p.CommittedOffset >= 0 {
			out[p.Partition] = p.CommittedOffset
		}
	}
	return out, nil
}

// Next returns the next batch of events: it blocks until at least one valid
// event arrived, then fills the batch up to BatchSize events or for at most
// BatchWait. The caller must Release the batch. When ctx is done Next
// returns ctx.Err(); events already decoded are kept for the next call.
// Transient fetch errors are retried for up to RetryTimeout.
func (s *KafkaSource) Next(ctx context.Context) (arrow.RecordBatch, error) {
	if s.closed {
		return nil, ErrClosed
	}
	rec, err := s.fill(ctx)
	for err == nil && rec.NumRows() == 0 {
		// Every event of the batch was a dead letter.
		rec.Release()
		rec, err = s.fill(ctx)
	}
	if err != nil {
		return nil, err
	}
	clear(s.lastStart)
	maps.Copy(s.lastStart, s.returned)
	maps.Copy(s.lastStart, s.first)
	clear(s.first)
	maps.Copy(s.returned, s.next)
	return rec, nil
}

// fill reads events into the pending batch, as Next says, and returns it
// without the events Check refuses (possibly none left).
func (s *KafkaSource) fill(ctx context.Context) (arrow.RecordBatch, error) {
	// Phase 1: wait for the first valid event.
	for s.dec.Len() == 0 {
		m, err := s.fetch(ctx)
		if err != nil {
			return nil, err
		}
		if _, err := s.consume(ctx, &m); err != nil {
			return nil, err
		}
	}
	// Phase 2: fill the batch for at most BatchWait.
	if s.dec.Len() < s.cfg.BatchSize {
		bctx, cancel := context.WithTimeout(ctx, s.cfg.BatchWait)
		defer cancel()
		for s.dec.Len() < s.cfg.BatchSize {
			m, err := s.fetch(bctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				if errors.Is(err, context.DeadlineExceeded) {
					break // BatchWait elapsed
				}
				return nil, err
			}
			if _, err := s.consume(ctx, &m); err != nil {
				return nil, err
			}
		}
	}
	rec := s.dec.NewRecordBatch()
	pend := s.pend
	s.pend = s.pend[:0]
	if s.cfg.Check == nil {
		return rec, nil
	}
	return s.checkRows(ctx, rec, pend)
}

// checkRows sends the events of rec that Check refuses to the dead letters
// and returns rec without them (rec itself when there are none). pend
// holds the messages of rec's rows.
func (s *KafkaSource) checkRows(ctx context.Context, rec arrow.RecordBatch, pend []kafka.Message) (arrow.RecordBatch, error) {
	n := int(rec.NumRows())
	if cap(s.drop) < n {
		s.drop = make([]bool, n)
	}
	drop := s.drop[:n]
	clear(drop)
	var faults []*features.RowError
	if _, err := s.cfg.Check.CheckRows(rec, func(e *features.RowError) {
		if !drop[e.Row] {
			drop[e.Row] = true
			faults = append(faults, e)
		}
	}); err != nil {
		rec.Release()
		return nil, fmt.Errorf("ingest: kafka topic %s: %w", s.cfg.Topic, err)
	}
	if len(faults) == 0 {
		return rec, nil
	}
	slices.SortFunc(faults, func(a, b *features.RowError) int { return a.Row - b.Row })
	s.mu.Lock()
	s.stats.Events -= int64(len(faults))
	s.mu.Unlock()
	for _, e := range faults {
		if err := s.deadLetter(ctx, &pend[e.Row], e); err != nil {
			rec.Release()
			return nil, err
		}
	}
	return dropRows(rec, drop, s.cfg.Allocator)
}

// fetch returns the next message, retrying transient errors.
func (s *KafkaSource) fetch(ctx context.Context) (kafka.Message, error) {
	return fetchRetrying(ctx, s.r, &s.errSince, s.cfg.RetryTimeout, s.cfg.Logger, func() string { return "topic " + s.cfg.Topic }, func() {
		s.mu.Lock()
		s.stats.FetchErrors++
		s.mu.Unlock()
	})
}

// fetchRetrying returns r's next message, retrying transient errors with a
// backoff (100 ms doubling to 2 s) until they have lasted retry since
// *errSince, the start of the current run of failures (zero: none). Each
// failure calls failed. what names the source in errors and logs (called
// on failures only: the fetch that succeeds builds no string).
func fetchRetrying(ctx context.Context, r *kafka.Reader, errSince *time.Time, retry time.Duration, log *slog.Logger, what func() string, failed func()) (kafka.Message, error) {
	backoff := 100 * time.Millisecond
	for {
		m, err := r.FetchMessage(ctx)
		if err == nil {
			*errSince = time.Time{}
			return m, nil
		}
		if ctx.Err() != nil {
			return kafka.Message{}, ctx.Err()
		}
		if errors.Is(err, io.EOF) {
			return kafka.Message{}, ErrClosed
		}
		now := time.Now()
		if errSince.IsZero() {
			*errSince = now
		}
		failed()
		if now.Sub(*errSince) > retry {
			return kafka.Message{}, fmt.Errorf("ingest: kafka %s: fetch failing for %v: %w", what(), now.Sub(*errSince).Round(time.Second), err)
		}
		log.Warn("ingest: kafka fetch failed, retrying", "source", what(), "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return kafka.Message{}, ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// consume decodes m into the pending batch or sends it to the dead letters.
// It reports whether m became an event.
func (s *KafkaSource) consume(ctx context.Context, m *kafka.Message) (bool, error) {
	if m.Offset < s.next[m.Partition] {
		s.mu.Lock()
		s.stats.Skipped++
		s.mu.Unlock()
		return false, nil
	}
	err := s.dec.Append(m.Value)
	s.mu.Lock()
	s.stats.Bytes += int64(len(m.Value))
	if m.HighWaterMark > 0 {
		s.stats.Lag[m.Partition] = max(0, m.HighWaterMark-m.Offset-1)
	}
	if err == nil {
		s.stats.Events++
		s.pend = append(s.pend, *m)
	}
	s.mu.Unlock()
	if err != nil {
		if err := s.deadLetter(ctx, m, err); err != nil {
			// The message is not marked consumed: a restart from the last
			// checkpoint sees it again.
			return false, err
		}
	}
	if _, ok := s.first[m.Partition]; !ok {
		s.first[m.Partition] = m.Offset
	}
	s.next[m.Partition] = m.Offset + 1
	return err == nil, nil
}

func reasonOf(err error) string {
	var re *features.RowError
	switch {
	case errors.As(err, &re):
		return re.Fault
	case errors.Is(err, features.ErrEventTooLarge):
		return ReasonOversize
	case errors.Is(err, features.ErrEventMissingField):
		return ReasonMissingField
	case errors.Is(err, features.ErrEventType):
		return ReasonWrongType
	default:
		return ReasonBadJSON
	}
}

func (s *KafkaSource) deadLetter(ctx context.Context, m *kafka.Message, cause error) error {
	d := DeadLetter{
		Topic: m.Topic, Partition: m.Partition, Offset: m.Offset,
		Key: m.Key, Value: m.Value,
		Reason: reasonOf(cause), Detail: cause.Error(), Time: time.Now(),
	}
	if err := s.cfg.DeadLetters.Put(ctx, d); err != nil {
		return fmt.Errorf("ingest: kafka topic %s partition %d offset %d: dead letter (%s): %w", m.Topic, m.Partition, m.Offset, d.Reason, err)
	}
	s.mu.Lock()
	s.stats.DeadLetters[d.Reason]++
	s.mu.Unlock()
	return nil
}

// Position returns the topic and, per partition, the next offset after the
// last message consumed into a returned batch (dead letters included), merged
// with the Start offsets. The map is a copy.
func (s *KafkaSource) Position() Position {
	return Position{Topic: s.cfg.Topic, Offsets: maps.Clone(s.returned)}
}

// BatchStart returns where the last batch Next returned started: the
// Position before it, in which each partition the batch holds messages of
// has the offset of its first message in the batch (dead letters included).
// The batch spans, per partition, the messages from BatchStart's offset up
// to Position's. The map is a copy.
func (s *KafkaSource) BatchStart() Position {
	return Position{Topic: s.cfg.Topic, Offsets: maps.Clone(s.lastStart)}
}

// Commit commits pos's offsets to the consumer group, so that a group
// member that takes a partition over resumes there. Call it only once what
// was built from those events is durable. Only partitions whose offset is
// ahead of the group's (as read at the start for the Start partitions, or
// as this source last committed) are committed, so partitions a position
// merely carries along are not rewritten, and a group that lags a resumed
// checkpoint is brought up to it. Commit waits until the source has joined
// the group. A partition that moved to
// another member after these events were read may still be committed here
// behind that member's progress: the group then re-reads a stretch (at least
// once), it never skips one. Before committing, a dead-letter sink with a
// Sync method is synced, so a dead letter is durable before its offset is.
func (s *KafkaSource) Commit(ctx context.Context, pos Position) error {
	if s.closed {
		return ErrClosed
	}
	if pos.Topic != "" && pos.Topic != s.cfg.Topic {
		return fmt.Errorf("ingest: commit: position is for topic %q, source reads %q", pos.Topic, s.cfg.Topic)
	}
	var msgs []kafka.Message
	for p, off := range pos.Offsets {
		if off > 0 && off > s.committed[p] {
			// kafka-go commits the offset after the message given.
			msgs = append(msgs, kafka.Message{Topic: s.cfg.Topic, Partition: p, Offset: off - 1})
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	if sy, ok := s.cfg.DeadLetters.(syncer); ok {
		if err := sy.Sync(ctx); err != nil {
			return fmt.Errorf("ingest: commit: %w", err)
		}
	}
	if err := s.r.CommitMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("ingest: commit offsets of topic %s group %s: %w", s.cfg.Topic, s.cfg.GroupID, err)
	}
	for _, m := range msgs {
		s.committed[m.Partition] = m.Offset + 1
	}
	return nil
}

// Stats returns a copy of the source's counters. Safe for concurrent use.
func (s *KafkaSource) Stats() KafkaStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.DeadLetters = maps.Clone(s.stats.DeadLetters)
	st.Lag = maps.Clone(s.stats.Lag)
	return st
}

// Close leaves the group and releases the decoder; events decoded but not
// returned are dropped (their offsets were never part of a Position). It
// does not commit. It is idempotent.
func (s *KafkaSource) Close() error {
	s.closeOnce.Do(func() {
		s.closed = true
		if err := s.r.Close(); err != nil {
			s.closeErr = fmt.Errorf("ingest: close kafka reader: %w", err)
		}
		s.dec.Release()
	})
	return s.closeErr
}
