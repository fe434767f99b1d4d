package pipelines

import (
	"context"
	"fmt"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
)

// prefetchDepth is how many transformed batches a prefetcher owns: one
// the trainer steps on while the next is read and transformed.
const prefetchDepth = 2

// prepared is a batch the prefetcher read and transformed, or the error
// (io.EOF at the end) that stopped it.
type prepared struct {
	b *features.Batch
	// rec is the record, not yet transformed, when the transform must
	// run on the consumer's goroutine (next does it).
	rec  arrow.RecordBatch
	from ingest.Position // the source's position before the batch
	to   ingest.Position // and after it
	bad  []ingest.BadRow // rows the source left out while reading it
	err  error
}

// prefetcher reads and transforms the batches of a Parquet source on its
// own goroutine, ahead of training, so that reading and transforming the
// next batch overlaps the training step on the current one (on another
// core). Batches come out in the source's order, so a seeded run trains
// exactly as without it. It cycles through prefetchDepth Batches, which
// the consumer hands back with recycle: a steady state allocates no
// batch. The source's OnBadRow must be the prefetcher's badRow, so that
// bad rows reach the consumer with the batch they were left out of, on
// the consumer's goroutine.
//
// A transform with exact tables looks rows up in tables that the
// trainer's admission rewrites before each step (features.IDTable: Row
// must not run concurrently with Admit). Its prefetcher only reads
// ahead, and next transforms on the consumer's goroutine.
type prefetcher struct {
	src   *ingest.ParquetSource
	tr    *features.Transformer
	ready chan prepared
	free  chan *features.Batch
	stop  chan struct{}
	wg    sync.WaitGroup
	bad   []ingest.BadRow // the producer's, until handed over
}

func newPrefetcher() *prefetcher {
	p := &prefetcher{
		ready: make(chan prepared, prefetchDepth),
		free:  make(chan *features.Batch, prefetchDepth),
		stop:  make(chan struct{}),
	}
	for range prefetchDepth {
		p.free <- new(features.Batch)
	}
	return p
}

// badRow is the source's OnBadRow (called on the producer's goroutine).
func (p *prefetcher) badRow(b ingest.BadRow) { p.bad = append(p.bad, b) }

// start reads src through tr until the end of src, an error, or close.
func (p *prefetcher) start(ctx context.Context, src *ingest.ParquetSource, tr *features.Transformer) {
	p.src, p.tr = src, tr
	readOnly := tr.IDs().Len() > 0
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			var b *features.Batch
			select {
			case b = <-p.free:
			case <-p.stop:
				return
			}
			from := src.Position()
			rec, err := src.Next(ctx)
			out := prepared{b: b, from: from}
			switch {
			case err != nil:
			case readOnly:
				out.rec = rec
			default:
				err = tr.TransformTo(b, rec)
				rec.Release()
				if err != nil {
					err = fmt.Errorf("pipelines: %s: %w", from.File, err)
				}
			}
			out.to, out.bad, out.err = src.Position(), p.bad, err
			p.bad = nil
			select {
			case p.ready <- out:
			case <-p.stop:
				if out.rec != nil {
					out.rec.Release()
				}
				return
			}
			if err != nil {
				return
			}
		}
	}()
}

// next returns the next prepared batch, transformed (here when the
// producer only read it); the consumer hands its Batch back with recycle
// once done with it.
func (p *prefetcher) next() prepared {
	out := <-p.ready
	if out.rec != nil {
		if err := p.tr.TransformTo(out.b, out.rec); err != nil {
			out.err = fmt.Errorf("pipelines: %s: %w", out.from.File, err)
		}
		out.rec.Release()
		out.rec = nil
	}
	return out
}

// recycle returns a batch for the producer to fill again.
func (p *prefetcher) recycle(b *features.Batch) {
	if b != nil {
		p.free <- b
	}
}

// close stops the producer and waits for it: the source is then the
// caller's again (to Close).
func (p *prefetcher) close() {
	close(p.stop)
	p.wg.Wait()
	for { // records read ahead and not consumed
		select {
		case out := <-p.ready:
			if out.rec != nil {
				out.rec.Release()
			}
		default:
			return
		}
	}
}
