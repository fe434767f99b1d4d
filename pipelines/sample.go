package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
)

// sampleRows is how many raw events a bundle carries for load-time checks.
const sampleRows = 8

// sample returns the bundle's sample events, read once from the validation
// or training data. Their scores are left nil: serving.FillSampleScores
// fills them in through the serving path, which serving.LoadBundle checks
// bit for bit.
func (r *trainRun) sample() ([]bundle.SampleEvent, error) {
	if r.sampleEvents == nil {
		paths := r.cfg.Valid
		if len(paths) == 0 {
			paths = r.cfg.Data
		}
		evs, err := readSampleEvents(context.Background(), r.s.Spec, paths, sampleRows)
		if err != nil {
			return nil, err
		}
		r.sampleEvents = evs
	}
	out := make([]bundle.SampleEvent, len(r.sampleEvents))
	for i, ev := range r.sampleEvents {
		out[i] = bundle.SampleEvent{Event: ev}
	}
	return out, nil
}

// readSampleEvents reads the first n rows of Parquet data as JSON events
// holding the serving columns of spec.
func readSampleEvents(ctx context.Context, spec *features.Spec, paths []string, n int) ([]json.RawMessage, error) {
	src, err := ingest.NewParquetSource(ctx, ingest.ParquetConfig{Paths: paths, Columns: spec.Columns(false), BatchSize: n})
	if err != nil {
		return nil, err
	}
	defer src.Close()
	rec, err := src.Next(ctx)
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer rec.Release()
	return RowsToJSON(rec)
}

// RowsToJSON encodes each row of rec as a JSON event, as the Kafka
// producer writes it (features.JSONEncoder: a key per column, nulls as
// null). The events share one buffer.
func RowsToJSON(rec arrow.RecordBatch) ([]json.RawMessage, error) {
	enc, err := features.NewJSONEncoder(rec.Schema())
	if err != nil {
		return nil, fmt.Errorf("pipelines: rows to JSON: %w", err)
	}
	out := make([]json.RawMessage, rec.NumRows())
	var buf []byte
	for i := range out {
		o := len(buf)
		buf = enc.AppendRow(buf, rec, i)
		out[i] = buf[o:len(buf):len(buf)]
	}
	return out, nil
}
