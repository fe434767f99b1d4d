package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/mmoe"
	"github.com/onestone/onestone/mtl"
	"github.com/onestone/onestone/serving"
)

// sampleRows is how many raw events a bundle carries for load-time checks.
const sampleRows = 8

// sample returns the bundle's sample events (read once from the validation
// or training data) with the current model's scores.
func (r *trainRun) sample() ([]serving.SampleEvent, error) {
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
	return ScoreSample(r.s.Spec, r.s.Stats, r.model, r.s.Tasks, r.sampleEvents)
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

// RowsToJSON encodes each row of rec as a JSON object keyed by column name
// (nulls omitted).
func RowsToJSON(rec arrow.RecordBatch) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, rec.NumRows())
	for i := range out {
		obj := make(map[string]any, rec.NumCols())
		for c := range int(rec.NumCols()) {
			col := rec.Column(c)
			if col.IsNull(i) {
				continue
			}
			obj[rec.ColumnName(c)] = col.GetOneForMarshal(i)
		}
		b, err := json.Marshal(obj)
		if err != nil {
			return nil, fmt.Errorf("pipelines: row %d to JSON: %w", i, err)
		}
		out[i] = b
	}
	return out, nil
}

// ScoreSample scores raw JSON events through the serving path (JSON
// decoder on the spec's serving schema, the label-free transform, the
// model, the task scores) and returns them with their scores.
func ScoreSample(spec *features.Spec, stats *features.Stats, m *mmoe.Model, tasks *mtl.TaskSet, events []json.RawMessage) ([]serving.SampleEvent, error) {
	if len(events) == 0 {
		return nil, nil
	}
	t, err := features.NewTransformer(spec, stats, features.TransformerConfig{Labels: false})
	if err != nil {
		return nil, err
	}
	dec, err := features.NewJSONDecoder(spec.Schema(false), features.JSONConfig{})
	if err != nil {
		return nil, err
	}
	defer dec.Release()
	for i, ev := range events {
		if err := dec.Append(ev); err != nil {
			return nil, fmt.Errorf("pipelines: sample event %d: %w", i, err)
		}
	}
	rec := dec.NewRecordBatch()
	defer rec.Release()
	var b features.Batch
	if err := t.TransformTo(&b, rec); err != nil {
		return nil, err
	}
	ws := m.NewWorkspace(b.Rows)
	if err := m.Forward(ws, &b); err != nil {
		return nil, err
	}
	view := make([][]float32, len(ws.Logits))
	for h := range view {
		view[h] = ws.Logits[h][:b.Rows]
	}
	scores, err := tasks.PredictTo(nil, view)
	if err != nil {
		return nil, err
	}
	out := make([]serving.SampleEvent, len(events))
	for i, ev := range events {
		s := make([]float32, len(scores))
		for o := range scores {
			s[o] = scores[o][i]
		}
		out[i] = serving.SampleEvent{Event: ev, Scores: s}
	}
	return out, nil
}

func sampleEventsOf(s []serving.SampleEvent) []json.RawMessage {
	out := make([]json.RawMessage, len(s))
	for i, e := range s {
		out[i] = e.Event
	}
	return out
}
