package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/onestone/onestone/features"
)

// RowChecker finds the rows of a record that must not reach training
// (*features.Checker is one): it calls bad for each fault, a row possibly
// more than once, and returns a record-level error (a missing column, a
// column of the wrong type) as an error. Sources given one drop those rows.
type RowChecker interface {
	CheckRows(rec arrow.RecordBatch, bad func(*features.RowError)) (int, error)
}

var _ RowChecker = (*features.Checker)(nil)

// dropRows returns rec without the rows drop marks (len(drop) is rec's
// row count), built from slices of rec's columns; rec is released. The
// result holds the rows in their order; it has no rows when all are
// dropped.
func dropRows(rec arrow.RecordBatch, drop []bool, mem memory.Allocator) (arrow.RecordBatch, error) {
	defer rec.Release()
	var runs [][2]int64 // [lo, hi) of kept rows
	for i := 0; i < len(drop); {
		if drop[i] {
			i++
			continue
		}
		j := i
		for j < len(drop) && !drop[j] {
			j++
		}
		runs = append(runs, [2]int64{int64(i), int64(j)})
		i = j
	}
	cols := make([]arrow.Array, rec.NumCols())
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()
	var rows int64
	for _, r := range runs {
		rows += r[1] - r[0]
	}
	for i := range cols {
		parts := make([]arrow.Array, len(runs))
		for k, r := range runs {
			parts[k] = array.NewSlice(rec.Column(i), r[0], r[1])
		}
		var err error
		switch len(parts) {
		case 0:
			cols[i] = array.MakeArrayOfNull(mem, rec.Column(i).DataType(), 0)
		case 1:
			cols[i] = parts[0]
			parts = nil
		default:
			cols[i], err = array.Concatenate(parts, mem)
		}
		for _, p := range parts {
			p.Release()
		}
		if err != nil {
			return nil, fmt.Errorf("ingest: drop rows: column %q: %w", rec.ColumnName(i), err)
		}
	}
	return array.NewRecordBatch(rec.Schema(), cols, rows), nil
}

// Records adapts a Source to a range-over-func iterator. It yields each
// batch with a nil error until the source reports io.EOF (which ends the
// loop without an error); any other error is yielded once, with a nil
// batch, and ends the loop. The loop body owns each batch and must Release
// it. Records does not Close the source.
//
//	for rec, err := range ingest.Records(ctx, src) {
//		if err != nil { return err }
//		use(rec)
//		rec.Release()
//	}
func Records(ctx context.Context, src Source) iter.Seq2[arrow.RecordBatch, error] {
	return func(yield func(arrow.RecordBatch, error) bool) {
		for {
			rec, err := src.Next(ctx)
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(rec, nil) {
				return
			}
		}
	}
}
