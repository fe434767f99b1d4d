package ingest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onestone/onestone/internal/jsontext"
)

// ReplayInput is one file of JSON messages (one per line, in log order) and
// the topic they go to.
type ReplayInput struct {
	Path  string
	Topic string
}

// ReplayConfig configures Replay.
type ReplayConfig struct {
	// Brokers are the bootstrap addresses. Required.
	Brokers []string
	// Inputs are the files to replay, each into its topic (created on
	// first use if the cluster allows it). Required; two inputs may share
	// a topic.
	Inputs []ReplayInput
	// TimeField is the top-level key of each message's event time, an
	// integer (milliseconds since the epoch, docs/streaming.md). Default:
	// "ts_ms".
	TimeField string
	// KeyField is the top-level key whose text (a string's contents, a
	// number's digits) becomes the message key; "-" means no key. A
	// message without it has no key. Default: "user_id".
	KeyField string
	// Speedup paces the replay by event time: a message is sent when the
	// wall clock since the start reaches its event time since the first
	// message divided by Speedup (1: real time; 60: a minute of event
	// time per second). 0 sends as fast as possible.
	Speedup float64
	// Compression is one of none, gzip, snappy, lz4, zstd. Default: none.
	Compression string
	// BatchSize is the most messages per produce request. Default: 1000.
	BatchSize int
	// Limit stops after this many messages in all; 0 is no limit.
	Limit int64
	// Skip leaves out the first Skip messages of the merge (not sent, not
	// counted, not paced), so a replay can go on where one with Limit
	// stopped.
	Skip int64
	// MaxLineBytes bounds one line of an input. Default: 16 MiB.
	MaxLineBytes int
}

// Validate reports whether the configuration is usable.
func (c ReplayConfig) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("ingest: ReplayConfig.Brokers is empty")
	case len(c.Inputs) == 0:
		return errors.New("ingest: ReplayConfig.Inputs is empty")
	case !(c.Speedup >= 0) || math.IsInf(c.Speedup, 0):
		return fmt.Errorf("ingest: ReplayConfig.Speedup %v: want a finite factor >= 0", c.Speedup)
	case c.BatchSize < 0 || c.Limit < 0 || c.Skip < 0 || c.MaxLineBytes < 0:
		return fmt.Errorf("ingest: ReplayConfig: negative BatchSize %d, Limit %d, Skip %d or MaxLineBytes %d", c.BatchSize, c.Limit, c.Skip, c.MaxLineBytes)
	}
	for i, in := range c.Inputs {
		if in.Path == "" || in.Topic == "" {
			return fmt.Errorf("ingest: ReplayConfig.Inputs[%d]: path %q and topic %q are both required", i, in.Path, in.Topic)
		}
	}
	_, err := compressionOf(c.Compression)
	return err
}

func (c ReplayConfig) withDefaults() ReplayConfig {
	if c.TimeField == "" {
		c.TimeField = "ts_ms"
	}
	if c.KeyField == "" {
		c.KeyField = "user_id"
	}
	if c.BatchSize == 0 {
		c.BatchSize = 1000
	}
	if c.MaxLineBytes == 0 {
		c.MaxLineBytes = 16 << 20
	}
	return c
}

// replayLane is one input being read: its next line, and that line's time.
type replayLane struct {
	in   ReplayInput
	sc   *bufio.Scanner
	f    *os.File
	line []byte // the next message (the scanner's buffer), nil at the end
	ts   int64  // its event time
	n    int64  // messages sent
}

// advance reads the next non-empty line. A line whose time cannot be read
// keeps the time of the line before it, so it goes out in its file's order.
func (l *replayLane) advance(timeField string) error {
	for l.sc.Scan() {
		b := l.sc.Bytes()
		if jsontext.SkipSpace(b, 0) == len(b) {
			continue // blank line
		}
		l.line = b
		if v, ok := topField(b, timeField); ok {
			if ts, err := strconv.ParseInt(string(v), 10, 64); err == nil {
				l.ts = ts
			}
		}
		return nil
	}
	l.line = nil
	if err := l.sc.Err(); err != nil {
		return fmt.Errorf("ingest: replay %s: %w", l.in.Path, err)
	}
	return nil
}

// Replay sends the messages of cfg.Inputs to their topics in event-time
// order: a merge of the files by each message's TimeField that keeps every
// file's own order (so each file should be in event-time order, up to the
// disorder the consumer is meant to see), paced by cfg.Speedup. Messages go
// out as they are, keyed by KeyField; partitions are chosen by the murmur2
// hash of the key, as the Java client does, so inputs keyed alike are
// co-partitioned when their topics have the same partition count. It
// returns the number of messages acknowledged per input.
func Replay(ctx context.Context, cfg ReplayConfig) (sent []int64, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	lanes := make([]*replayLane, len(cfg.Inputs))
	sent = make([]int64, len(cfg.Inputs))
	defer func() {
		for i, l := range lanes {
			if l != nil {
				sent[i] = l.n
				l.f.Close()
			}
		}
	}()
	for i, in := range cfg.Inputs {
		f, err := os.Open(in.Path)
		if err != nil {
			return sent, fmt.Errorf("ingest: replay: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), cfg.MaxLineBytes)
		lanes[i] = &replayLane{in: in, sc: sc, f: f, ts: math.MinInt64}
		if err := lanes[i].advance(cfg.TimeField); err != nil {
			return sent, err
		}
	}
	codec, _ := compressionOf(cfg.Compression)
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{
		Transport:              tr,
		Addr:                   kafka.TCP(cfg.Brokers...),
		Balancer:               &kafka.Murmur2Balancer{},
		RequiredAcks:           kafka.RequireAll,
		Compression:            codec,
		BatchSize:              cfg.BatchSize,
		BatchBytes:             16 << 20,
		BatchTimeout:           2 * time.Millisecond,
		AllowAutoTopicCreation: true,
	}
	defer func() {
		if cerr := w.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("ingest: replay: %w", cerr)
		}
	}()

	msgs := make([]kafka.Message, 0, cfg.BatchSize)
	from := make([]int, 0, cfg.BatchSize) // the lane of each message
	var buf []byte
	flush := func() error {
		if len(msgs) == 0 {
			return nil
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			return fmt.Errorf("ingest: replay: %w", err)
		}
		for _, i := range from {
			lanes[i].n++
		}
		msgs, from, buf = msgs[:0], from[:0], buf[:0]
		return nil
	}
	start := time.Now()
	first := int64(math.MinInt64)
	var total int64
	for cfg.Limit == 0 || total < cfg.Limit {
		// The lane whose next message is earliest; ties go to the first.
		li := -1
		for i, l := range lanes {
			if l.line != nil && (li < 0 || l.ts < lanes[li].ts) {
				li = i
			}
		}
		if li < 0 {
			break
		}
		l := lanes[li]
		if cfg.Skip > 0 {
			cfg.Skip--
			if err := l.advance(cfg.TimeField); err != nil {
				return sent, err
			}
			continue
		}
		if cfg.Speedup > 0 && l.ts != math.MinInt64 {
			if first == math.MinInt64 {
				first = l.ts
			}
			due := start.Add(time.Duration(float64(l.ts-first) / cfg.Speedup * float64(time.Millisecond)))
			// Send what is queued before waiting, so nothing due waits
			// for a later message.
			if d := time.Until(due); d > time.Millisecond {
				if err := flush(); err != nil {
					return sent, err
				}
				if d = time.Until(due); d > 0 {
					t := time.NewTimer(d)
					select {
					case <-ctx.Done():
						t.Stop()
						return sent, ctx.Err()
					case <-t.C:
					}
				}
			}
		}
		// Values and keys live in buf; when buf grows, earlier messages
		// keep pointing at the old array, which stays valid.
		o := len(buf)
		buf = append(buf, l.line...)
		val := buf[o:len(buf):len(buf)]
		var key []byte
		if cfg.KeyField != "-" {
			if v, ok := topField(val, cfg.KeyField); ok {
				key = v
			}
		}
		msgs = append(msgs, kafka.Message{Topic: l.in.Topic, Key: key, Value: val})
		from = append(from, li)
		total++
		if len(msgs) == cfg.BatchSize {
			if err := flush(); err != nil {
				return sent, err
			}
		}
		if err := l.advance(cfg.TimeField); err != nil {
			return sent, err
		}
	}
	return sent, flush()
}

// topField returns the text of the top-level member name of the JSON
// object b: a string's contents (only when it has no escapes, so the text
// aliases b) or a number's digits. ok is false when b is not an object, has
// no such member, or its value is of another type.
func topField(b []byte, name string) (text []byte, ok bool) {
	i := jsontext.SkipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	var sc jsontext.Scanner
	i, more := jsontext.Open(b, i)
	for more {
		key, v, err := sc.Key(b, i)
		if err != nil {
			return nil, false
		}
		if string(key) == name {
			switch jsontext.KindAt(b, v) {
			case jsontext.KindString:
				s, _, err := sc.String(b, v)
				if err != nil || len(sc.Buf) > 0 {
					return nil, false
				}
				return s, true
			case jsontext.KindNumber:
				end, integer, err := jsontext.Number(b, v)
				if err != nil || !integer {
					return nil, false
				}
				return b[v:end], true
			}
			return nil, false
		}
		if i, err = jsontext.Skip(b, v); err != nil {
			return nil, false
		}
		if i, more, err = jsontext.Next(b, i, '}'); err != nil {
			return nil, false
		}
	}
	return nil, false
}
