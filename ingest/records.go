package ingest

import (
	"context"
	"errors"
	"io"
	"iter"

	"github.com/apache/arrow-go/v18/arrow"
)

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
