package ingest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"

	"github.com/onestone/onestone/features"
)

// Reasons a message becomes a dead letter (DeadLetter.Reason). The first
// four come from decoding; the others are the row faults of
// features.RowError, found by KafkaConfig.Check.
const (
	ReasonBadJSON      = "bad_json"           // not one well-formed JSON object
	ReasonWrongType    = "wrong_type"         // a field of a type its column cannot take
	ReasonMissingField = "missing_field"      // a required field (a label) absent or null
	ReasonOversize     = "oversize"           // longer than the size limit
	ReasonBadLabel     = features.FaultLabel  // a label outside its task's domain
	ReasonBadWeight    = features.FaultWeight // a sample weight negative, not finite or beyond float32
	ReasonOutOfRange   = features.FaultRange  // a dense value beyond float32's range
	ReasonWrongLength  = features.FaultLength // a vector field's list of another length than its dim
)

// DeadLetter is a message the stream could not use.
type DeadLetter struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	// Reason is one of the Reason* constants.
	Reason string
	// Detail is the decoder's error message (field, wanted and found type).
	Detail string
	// Time is when the message was rejected.
	Time time.Time
}

// DeadLetterSink receives dead letters. Put must not keep Key or Value after
// it returns (the caller may reuse them). Implementations are safe for
// concurrent use.
type DeadLetterSink interface {
	Put(ctx context.Context, d DeadLetter) error
	// Count returns how many dead letters were put.
	Count() int64
}

// syncer is implemented by sinks that buffer: KafkaSource.Commit calls Sync
// before committing offsets, so a dead letter is durable before the offset
// that skips it is.
type syncer interface {
	Sync(ctx context.Context) error
}

// LogDeadLetters counts dead letters and logs them (the first 10 of each
// reason, then every 1000th) without keeping them. It is the default sink.
// Safe for concurrent use.
type LogDeadLetters struct {
	// Logger receives the log lines. Default: slog.Default().
	Logger *slog.Logger

	n        atomic.Int64
	mu       sync.Mutex
	byReason map[string]int64
}

// Put counts d and maybe logs it.
func (l *LogDeadLetters) Put(_ context.Context, d DeadLetter) error {
	l.n.Add(1)
	l.mu.Lock()
	if l.byReason == nil {
		l.byReason = map[string]int64{}
	}
	l.byReason[d.Reason]++
	k := l.byReason[d.Reason]
	l.mu.Unlock()
	if k <= 10 || k%1000 == 0 {
		lg := l.Logger
		if lg == nil {
			lg = slog.Default()
		}
		lg.Warn("ingest: dead letter", "topic", d.Topic, "partition", d.Partition, "offset", d.Offset,
			"reason", d.Reason, "detail", d.Detail, "count_for_reason", k)
	}
	return nil
}

// Count returns how many dead letters were put.
func (l *LogDeadLetters) Count() int64 { return l.n.Load() }

// FileDeadLetters appends dead letters to a file as JSON lines:
//
//	{"topic":"events","partition":2,"offset":1041,"key":"u7","value":"{\"click\":","reason":"bad_json","detail":"...","time":"2026-..."}
//
// Key and value are written as strings when they are valid UTF-8, else as
// "key_base64"/"value_base64". Every Put is one write to the file; Sync and
// Close fsync it. Safe for concurrent use.
type FileDeadLetters struct {
	mu   sync.Mutex
	f    *os.File
	path string
	buf  []byte
	n    atomic.Int64
}

// NewFileDeadLetters opens (creating or appending to) the file at path.
func NewFileDeadLetters(path string) (*FileDeadLetters, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ingest: dead letters: %w", err)
	}
	return &FileDeadLetters{f: f, path: path}, nil
}

type deadLetterLine struct {
	Topic       string    `json:"topic"`
	Partition   int       `json:"partition"`
	Offset      int64     `json:"offset"`
	Key         *string   `json:"key,omitempty"`
	KeyBase64   string    `json:"key_base64,omitempty"`
	Value       *string   `json:"value,omitempty"`
	ValueBase64 string    `json:"value_base64,omitempty"`
	Reason      string    `json:"reason"`
	Detail      string    `json:"detail,omitempty"`
	Time        time.Time `json:"time"`
}

func textOrBase64(b []byte) (*string, string) {
	if b == nil {
		return nil, ""
	}
	if utf8.Valid(b) {
		s := string(b)
		return &s, ""
	}
	return nil, base64.StdEncoding.EncodeToString(b)
}

// Put appends d as one JSON line.
func (f *FileDeadLetters) Put(_ context.Context, d DeadLetter) error {
	line := deadLetterLine{Topic: d.Topic, Partition: d.Partition, Offset: d.Offset, Reason: d.Reason, Detail: d.Detail, Time: d.Time.UTC()}
	line.Key, line.KeyBase64 = textOrBase64(d.Key)
	line.Value, line.ValueBase64 = textOrBase64(d.Value)
	b, err := json.Marshal(line)
	if err != nil {
		return fmt.Errorf("ingest: dead letters %s: %w", f.path, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return fmt.Errorf("ingest: dead letters %s: %w", f.path, ErrClosed)
	}
	f.buf = append(append(f.buf[:0], b...), '\n')
	if _, err := f.f.Write(f.buf); err != nil {
		return fmt.Errorf("ingest: dead letters %s: %w", f.path, err)
	}
	f.n.Add(1)
	return nil
}

// Count returns how many dead letters were written.
func (f *FileDeadLetters) Count() int64 { return f.n.Load() }

// Sync fsyncs the file.
func (f *FileDeadLetters) Sync(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return nil
	}
	if err := f.f.Sync(); err != nil {
		return fmt.Errorf("ingest: dead letters %s: %w", f.path, err)
	}
	return nil
}

// Close fsyncs and closes the file. It is idempotent.
func (f *FileDeadLetters) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return nil
	}
	err := errors.Join(f.f.Sync(), f.f.Close())
	f.f = nil
	if err != nil {
		return fmt.Errorf("ingest: dead letters %s: %w", f.path, err)
	}
	return nil
}

// KafkaDeadLettersConfig configures KafkaDeadLetters.
type KafkaDeadLettersConfig struct {
	// Brokers are the bootstrap addresses. Required.
	Brokers []string
	// Topic receives the dead letters, e.g. "events.dlq". Required.
	Topic string
}

// Validate reports whether the configuration is usable.
func (c KafkaDeadLettersConfig) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("ingest: KafkaDeadLettersConfig.Brokers is empty")
	}
	if c.Topic == "" {
		return errors.New("ingest: KafkaDeadLettersConfig.Topic is empty")
	}
	return nil
}

// KafkaDeadLetters writes each dead letter to a Kafka topic with the
// original key and value, and headers "reason", "detail", "topic",
// "partition", "offset" and "time" (RFC 3339). Put returns after the broker
// acknowledged the write (all in-sync replicas). Safe for concurrent use.
type KafkaDeadLetters struct {
	w  *kafka.Writer
	tr *kafka.Transport
	n  atomic.Int64
}

// NewKafkaDeadLetters returns a sink writing to cfg.Topic.
func NewKafkaDeadLetters(cfg KafkaDeadLettersConfig) (*KafkaDeadLetters, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tr := &kafka.Transport{}
	return &KafkaDeadLetters{tr: tr, w: &kafka.Writer{
		Transport:              tr,
		Addr:                   kafka.TCP(cfg.Brokers...),
		Topic:                  cfg.Topic,
		Balancer:               &kafka.Murmur2Balancer{},
		RequiredAcks:           kafka.RequireAll,
		BatchTimeout:           5 * time.Millisecond,
		AllowAutoTopicCreation: true,
	}}, nil
}

// Put writes d to the dead-letter topic.
func (k *KafkaDeadLetters) Put(ctx context.Context, d DeadLetter) error {
	msg := kafka.Message{
		Key:   d.Key,
		Value: d.Value,
		Headers: []kafka.Header{
			{Key: "reason", Value: []byte(d.Reason)},
			{Key: "detail", Value: []byte(d.Detail)},
			{Key: "topic", Value: []byte(d.Topic)},
			{Key: "partition", Value: strconv.AppendInt(nil, int64(d.Partition), 10)},
			{Key: "offset", Value: strconv.AppendInt(nil, d.Offset, 10)},
			{Key: "time", Value: []byte(d.Time.UTC().Format(time.RFC3339Nano))},
		},
	}
	if err := k.w.WriteMessages(ctx, msg); err != nil {
		return fmt.Errorf("ingest: dead letters to topic %s: %w", k.w.Topic, err)
	}
	k.n.Add(1)
	return nil
}

// Count returns how many dead letters were written.
func (k *KafkaDeadLetters) Count() int64 { return k.n.Load() }

// Close flushes and closes the writer.
func (k *KafkaDeadLetters) Close() error {
	defer k.tr.CloseIdleConnections()
	if err := k.w.Close(); err != nil {
		return fmt.Errorf("ingest: dead letters to topic %s: %w", k.w.Topic, err)
	}
	return nil
}
