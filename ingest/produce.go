package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/segmentio/kafka-go"

	"github.com/onestone/onestone/features"
)

// ProduceConfig configures Produce.
type ProduceConfig struct {
	// Brokers are the bootstrap addresses. Required.
	Brokers []string
	// Topic receives the events (created on first use if the cluster
	// allows it). Required.
	Topic string
	// KeyColumn is the column whose text becomes each message's key, so a
	// user's events stay in one partition and in order. "-" means no key.
	// Default: "user_id".
	KeyColumn string
	// Rate is the most events per second; 0 is unlimited.
	Rate float64
	// Compression is one of none, gzip, snappy, lz4, zstd. Default: none.
	Compression string
	// BatchSize is how many messages are handed to the writer at once and
	// the most per produce request. Default: 1000.
	BatchSize int
	// Limit stops after this many events; 0 is no limit.
	Limit int64
}

// Validate reports whether the configuration is usable.
func (c ProduceConfig) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("ingest: ProduceConfig.Brokers is empty")
	case c.Topic == "":
		return errors.New("ingest: ProduceConfig.Topic is empty")
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("ingest: ProduceConfig.Rate %v: want a finite number >= 0", c.Rate)
	case c.BatchSize < 0:
		return fmt.Errorf("ingest: ProduceConfig.BatchSize %d is negative", c.BatchSize)
	case c.Limit < 0:
		return fmt.Errorf("ingest: ProduceConfig.Limit %d is negative", c.Limit)
	}
	if _, err := compressionOf(c.Compression); err != nil {
		return err
	}
	return nil
}

func compressionOf(name string) (kafka.Compression, error) {
	switch name {
	case "", "none":
		return 0, nil
	case "gzip":
		return kafka.Gzip, nil
	case "snappy":
		return kafka.Snappy, nil
	case "lz4":
		return kafka.Lz4, nil
	case "zstd":
		return kafka.Zstd, nil
	}
	return 0, fmt.Errorf("ingest: compression %q: want none, gzip, snappy, lz4 or zstd", name)
}

// Produce reads src to the end (or cfg.Limit events) and writes every row
// to cfg.Topic as one JSON object whose keys are the column names, as
// features.JSONEncoder writes it: strings as JSON strings, integers and
// floats as numbers (floats in the shortest text that reads back to the
// same value; NaN and ±Inf, which JSON cannot hold, as null), booleans,
// lists as arrays, nulls as null. The message key
// is the key column's text (no key when it is null). It returns the number
// of messages acknowledged by the broker. Partitions are chosen by the
// murmur2 hash of the key, as the Java client does.
func Produce(ctx context.Context, cfg ProduceConfig, src Source) (n int64, err error) {
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	if cfg.KeyColumn == "" {
		cfg.KeyColumn = "user_id"
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 1000
	}
	if cfg.Rate > 0 {
		// Hand the writer at most a tenth of a second of events at once so
		// the pace is smooth.
		cfg.BatchSize = max(1, min(cfg.BatchSize, int(cfg.Rate/10)))
	}
	codec, _ := compressionOf(cfg.Compression)
	// An own transport: no metadata cached by earlier writers (a topic
	// created a moment ago is seen) and no connections left behind.
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{
		Transport:              tr,
		Addr:                   kafka.TCP(cfg.Brokers...),
		Topic:                  cfg.Topic,
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
			err = fmt.Errorf("ingest: produce to %s: %w", cfg.Topic, cerr)
		}
	}()

	var enc rowEncoder
	msgs := make([]kafka.Message, 0, cfg.BatchSize)
	var buf []byte
	start := time.Now()
	flush := func() error {
		if len(msgs) == 0 {
			return nil
		}
		if cfg.Rate > 0 {
			due := start.Add(time.Duration(float64(n+int64(len(msgs))) / cfg.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return ctx.Err()
				case <-t.C:
				}
			}
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			return fmt.Errorf("ingest: produce to %s: %w", cfg.Topic, err)
		}
		n += int64(len(msgs))
		msgs, buf = msgs[:0], buf[:0]
		return nil
	}
	for cfg.Limit == 0 || n+int64(len(msgs)) < cfg.Limit {
		rec, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, fmt.Errorf("ingest: produce to %s: read: %w", cfg.Topic, err)
		}
		if err := enc.reset(rec.Schema(), cfg.KeyColumn); err != nil {
			rec.Release()
			return n, err
		}
		rows := int(rec.NumRows())
		for r := 0; r < rows; r++ {
			if cfg.Limit > 0 && n+int64(len(msgs)) >= cfg.Limit {
				break
			}
			// Values and keys live in buf; when buf grows, earlier
			// messages keep pointing at the old array, which stays valid.
			o := len(buf)
			buf = enc.appendRow(buf, rec, r)
			val := buf[o:len(buf):len(buf)]
			var key []byte
			if enc.key >= 0 && rec.Column(enc.key).IsValid(r) {
				o = len(buf)
				buf = appendText(buf, rec.Column(enc.key), r)
				key = buf[o:len(buf):len(buf)]
			}
			msgs = append(msgs, kafka.Message{Key: key, Value: val})
			if len(msgs) == cfg.BatchSize {
				if err := flush(); err != nil {
					rec.Release()
					return n, err
				}
			}
		}
		rec.Release()
	}
	if err := flush(); err != nil {
		return n, err
	}
	return n, nil
}

// rowEncoder writes Arrow rows as JSON events with features.JSONEncoder,
// the encoder of bundle sample events too, and finds the key column.
type rowEncoder struct {
	enc    *features.JSONEncoder
	keyCol string
	key    int // index of the key column, -1 for none
}

func (e *rowEncoder) reset(s *arrow.Schema, keyCol string) error {
	if e.enc != nil && e.keyCol == keyCol && e.enc.Schema().Equal(s) {
		return nil
	}
	e.enc, e.keyCol, e.key = nil, keyCol, -1
	enc, err := features.NewJSONEncoder(s)
	if err != nil {
		return fmt.Errorf("ingest: produce: %w", err)
	}
	if keyCol != "-" {
		idx := s.FieldIndices(keyCol)
		if len(idx) == 0 {
			names := make([]string, s.NumFields())
			for i, f := range s.Fields() {
				names[i] = f.Name
			}
			return fmt.Errorf("ingest: produce: key column %q is not in the data (columns: %s)", keyCol, strings.Join(names, ", "))
		}
		e.key = idx[len(idx)-1]
	}
	e.enc = enc
	return nil
}

func (e *rowEncoder) appendRow(dst []byte, rec arrow.RecordBatch, r int) []byte {
	return e.enc.AppendRow(dst, rec, r)
}

// appendText writes row r of a key column as plain text (no JSON quoting).
func appendText(dst []byte, a arrow.Array, r int) []byte {
	switch a := a.(type) {
	case *array.String:
		return append(dst, a.Value(r)...)
	case *array.LargeString:
		return append(dst, a.Value(r)...)
	}
	return features.AppendJSONValue(dst, a, r)
}
