// Package ingest reads raw events: Parquet files and Kafka topics, turned into
// Arrow record batches whose columns carry the raw event fields.
package ingest

import (
	"context"
	"errors"

	"github.com/apache/arrow-go/v18/arrow"
)

// ErrClosed is returned by Next after Close.
var ErrClosed = errors.New("ingest: source closed")

// Source is a stream of raw events as Arrow record batches.
//
// Next returns the next batch, which the caller must Release, or io.EOF when
// a finite source is exhausted. Position reports where the stream stands
// after the last batch returned by Next: resuming a new Source from it
// continues with the next unread event. A Source is not safe for concurrent
// use.
type Source interface {
	Next(ctx context.Context) (arrow.RecordBatch, error)
	Position() Position
	Close() error
}

// Position is a resumable place in a source.
type Position struct {
	// Parquet: the file being read, and the row group and the row within it
	// of the next unread row.
	File     string `json:"file,omitempty"`
	RowGroup int    `json:"row_group,omitempty"`
	Row      int64  `json:"row,omitempty"`
	// Kafka: the topic and, per partition, the next offset to read.
	Topic   string        `json:"topic,omitempty"`
	Offsets map[int]int64 `json:"offsets,omitempty"`
	// Topics, for a stream read from several topics as one (the
	// impressions, clicks and conversions of a join), holds the next
	// offset of each topic's partitions, by topic name; Topic is then the
	// names joined by "+" and Offsets the first topic's.
	Topics map[string]map[int]int64 `json:"topics,omitempty"`
}
