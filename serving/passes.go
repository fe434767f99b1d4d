package serving

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
)

// A request's candidates are scored by its workers in parts (decoding and
// the transform) and passes (the model): see run.

// part is a contiguous run of a request's candidates, [lo, hi), that one
// worker decodes and transforms into features; the model then runs on it
// in passes that any worker may take once the part is ready.
type part struct {
	lo, hi int
	rows   *features.JSONRows // nil until a request needs this part
	batch  features.Batch
	useCtx bool // score against st.ctx (no candidate of the part overrides a context field)
	// unknownIDs are the exact ids of the part's candidates that the
	// bundle's maps do not know, by exact table (countUnknown sums them);
	// fromCtx the rows of each exact field that took the context's value.
	unknownIDs []int64
	fromCtx    []int64
	err        error
	state      atomic.Int32 // partPending, partReady or partFailed
}

// part states.
const (
	partPending int32 = iota
	partReady
	partFailed
)

// forwardWorker is the model state of one worker of a request.
type forwardWorker struct {
	ws     *mmoe.Workspace
	view   features.Batch
	chunk  [][]float32
	ctxSet bool // ws holds this request's context share
	err    error
}

// workersFor is the number of workers for a request of n candidates.
func (s *Scorer) workersFor(n int) int {
	return max(1, min(s.cfg.Workers, n/s.cfg.MinWorkerRows))
}

// run scores n rows into scores[o][:n] on w workers: the calling goroutine
// and w-1 others. Each worker first prepares the parts still pending (with
// req nil they are all ready), then scores passes of BatchRows rows taken
// from a counter, waiting for a pass's part if another worker is still
// preparing it. A worker whose goroutine starts late, its core busy with
// other work, takes fewer passes instead of leaving the others waiting for
// a large share; the small passes (a few kernel row blocks) keep the wait
// at the end short. Scores do not depend on who computes a row.
//
// With req not nil, worker 0 first decodes req's context (decodeContext)
// while the others start on their parts.
//
// The error returned is the context's, else the first part's (in
// candidate order, so the lowest candidate index), else a worker's.
func (st *scoreState) run(ctx context.Context, req *Request, w, n int, scores [][]float32) error {
	s := st.s
	st.nextPart.Store(0)
	st.nextPass.Store(0)
	st.stop.Store(false)
	st.runCtx, st.runReq, st.runN, st.runScores = ctx, req, n, scores
	defer func() { st.runCtx, st.runReq, st.runScores = nil, nil, nil }()
	for k := 1; k < w; k++ {
		if st.fw[k].ws == nil {
			st.fw[k].ws = s.split.NewWorkspace(s.cfg.BatchRows)
		}
		st.fw[k].err = nil // a revoked task does not run work, which resets it
	}
	if st.solo {
		for k := range w {
			st.work(k) // worker 0 takes every part and pass
		}
	} else if h := s.cfg.Helpers; h != nil {
		for k := 1; k < w; k++ {
			h.post(&st.tasks[k])
		}
		st.work(0)
		for k := 1; k < w; k++ {
			h.finish(&st.tasks[k])
		}
	} else if w == 1 {
		st.work(0)
	} else {
		var wg sync.WaitGroup // escapes to the goroutines: not for w == 1
		for k := 1; k < w; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st.work(k)
			}()
		}
		st.work(0)
		wg.Wait()
	}
	if st.ctxFatal != nil {
		return st.ctxFatal
	}
	for p := range st.nparts {
		if err := st.parts[p].err; err != nil {
			return err
		}
	}
	for k := range w {
		if err := st.fw[k].err; err != nil {
			return err
		}
	}
	return nil
}

// work is worker k of run.
func (st *scoreState) work(k int) {
	fw := &st.fw[k]
	fw.err, fw.ctxSet = nil, false
	ctx, req, n, scores := st.runCtx, st.runReq, st.runN, st.runScores
	if req != nil {
		if k == 0 && st.decodeContext(req) != nil {
			st.stop.Store(true) // the request fails: no part or pass is needed
			return
		}
		for {
			p := int(st.nextPart.Add(1) - 1)
			if p >= st.nparts {
				break
			}
			st.prepare(&st.parts[p], req)
		}
	}
	per := st.s.cfg.BatchRows
	for !st.stop.Load() {
		lo := int(st.nextPass.Add(1)-1) * per
		if lo >= n {
			return
		}
		pt := &st.parts[0]
		for p := 1; p < st.nparts && st.parts[p].lo <= lo; p++ {
			pt = &st.parts[p]
		}
		state := pt.state.Load()
		for state == partPending { // another worker is preparing it
			runtime.Gosched()
			state = pt.state.Load()
		}
		if state == partFailed {
			st.stop.Store(true)
			return
		}
		if lo > 0 {
			if err := ctx.Err(); err != nil {
				fw.err = err
				st.stop.Store(true)
				return
			}
		}
		if err := st.forwardPass(fw, pt, scores, lo, min(lo+per, n)); err != nil {
			fw.err = err
			st.stop.Store(true)
			return
		}
	}
}

// forwardPass scores rows [lo, hi) of the request, all in part pt, with
// one worker's workspace.
func (st *scoreState) forwardPass(fw *forwardWorker, pt *part, scores [][]float32, lo, hi int) error {
	s := st.s
	pt.batch.SliceTo(&fw.view, lo-pt.lo, hi-pt.lo)
	var err error
	if pt.useCtx {
		if !fw.ctxSet {
			err = s.split.SetContext(fw.ws, &st.ctx)
			fw.ctxSet = err == nil
		}
		if err == nil {
			err = s.split.ForwardCandidates(fw.ws, &fw.view)
		}
	} else {
		err = s.split.ForwardRows(fw.ws, &fw.view)
	}
	if err != nil {
		// The transform only produces ids inside the layout: a failure
		// here is a bundle bug, not the request's.
		return fmt.Errorf("serving: bundle %s: forward: %w", s.b.Dir, err)
	}
	for o := range fw.chunk {
		fw.chunk[o] = scores[o][lo:hi]
	}
	if _, err := s.b.Tasks.PredictTo(fw.chunk, fw.ws.Logits); err != nil {
		return fmt.Errorf("serving: bundle %s: %w", s.b.Dir, err)
	}
	return nil
}

// prepare decodes the candidates of pt into pt.batch: a candidate's
// non-null values, else the context's (st.ctx). It marks the part ready,
// or failed with pt.err naming the first bad candidate.
func (st *scoreState) prepare(pt *part, req *Request) {
	if err := st.preparePart(pt, req); err != nil {
		pt.err = err
		pt.state.Store(partFailed)
		return
	}
	pt.state.Store(partReady)
}

// preparePart decodes the part's candidates straight into pt.batch
// (features.JSONRows), then merges the context into the values they
// lack. Its errors are, first to last: the first candidate that does not
// decode; the context's; a required feature missing (the first required
// column lacking in some candidate, its first); a row fault (a vector's
// length), the candidate's or the context's whose value it takes. They
// are those of the decode, merge and transform of Arrow records this
// replaces (the parity tests compare).
func (st *scoreState) preparePart(pt *part, req *Request) error {
	s := st.s
	rows := pt.rows
	rows.Reset(&pt.batch)
	for i := pt.lo; i < pt.hi; i++ {
		if err := rows.Append(req.Candidates[i]); err != nil {
			return eventErr(indexField("candidates", i), err)
		}
	}
	rows.Finish()
	n := rows.Rows()
	for !st.ctxDone.Load() { // worker 0 is decoding the context
		runtime.Gosched()
	}
	if st.ctxFatal != nil {
		return st.ctxFatal
	}
	// ctxHas: the context has a value of column i.
	ctxHas := func(i int) bool { return st.hasCtx && len(st.ctxRows.Nulls(i)) == 0 }
	pt.useCtx = false
	if st.hasCtx {
		pt.useCtx = true
		for i, ctxSide := range s.isCtx {
			if ctxSide && len(rows.Nulls(i)) < n {
				pt.useCtx = false // a candidate overrides a context field
				break
			}
		}
		if pt.useCtx && st.ctxErr != nil {
			return st.ctxErr
		}
	}
	for _, ci := range s.required {
		if nulls := rows.Nulls(ci); len(nulls) > 0 && !ctxHas(ci) {
			return reqErr(indexField("candidates", pt.lo+int(nulls[0]))+"."+s.schema.Field(ci).Name, ErrBadRequest,
				"missing required feature (in neither the candidate nor the context)")
		}
	}
	clear(pt.fromCtx)
	for i := range s.isCtx {
		// With pt.useCtx the model reads the context-side fields from
		// st.ctx only, so their candidate values stay null rather than
		// being set to n copies of the context's.
		if !ctxHas(i) || (pt.useCtx && s.isCtx[i]) {
			continue
		}
		rows.Merge(i, &st.ctx, st.ctxRows.Faulty(i))
		for j, c := range s.exactCols {
			if c == i {
				pt.fromCtx[j] = int64(len(rows.Nulls(i)))
			}
		}
	}
	if f, fromCtx := rows.Fault(); f != nil {
		if fromCtx {
			return st.ctxErr // the value is the context's
		}
		return transformErr("", pt.lo, f)
	}
	if len(pt.unknownIDs) > 0 {
		// The context's unknown ids copied into candidates were counted
		// with the context (decodeContext).
		s.b.Transformer.IDs().CountUnknown(&pt.batch, pt.unknownIDs)
		for j, k := range pt.fromCtx {
			pt.unknownIDs[j] -= k * st.ctxUnknownIDs[j]
		}
	}
	return nil
}

// transformErr turns a Transformer error into a RequestError. A row's
// fault (a vector of the wrong length) names its field in the candidate
// lo+row, or in the context when lo < 0; another error names whole.
func transformErr(whole string, lo int, err error) error {
	var re *features.RowError
	if errors.As(err, &re) {
		field := "context." + re.Column
		if lo >= 0 {
			field = indexField("candidates", lo+re.Row) + "." + re.Column
		}
		return reqErr(field, ErrBadRequest, "%s", re.Detail)
	}
	return reqErr(whole, ErrBadRequest, "%v", err)
}

// eventErr turns a JSONDecoder error into a RequestError naming the field
// under prefix.
func eventErr(prefix string, err error) error {
	var ee *features.EventError
	if errors.As(err, &ee) {
		field := prefix
		if ee.Field != "" {
			field = prefix + "." + ee.Field
		}
		kind := ErrBadRequest
		if errors.Is(err, features.ErrEventTooLarge) {
			kind = ErrTooLarge
		}
		return &RequestError{Field: field, Kind: kind, Msg: ee.Msg}
	}
	return reqErr(prefix, ErrBadRequest, "%v", err)
}
