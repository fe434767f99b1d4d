package serving

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
)

// Scorer defaults.
const (
	DefaultMaxCandidates = 2000
	DefaultBatchRows     = 512
	DefaultMaxBodyBytes  = 4 << 20
)

// ScorerConfig configures a Scorer. Zero values mean the defaults.
type ScorerConfig struct {
	// Rank is the ranking formula (see the grammar on rankFormula in
	// rank.go: products of objective and candidate-field powers, e.g.
	// "ctr^1 * cvr^0.5 * price"). Default: "", rank by the model's first
	// objective.
	Rank string
	// MaxCandidates rejects requests with more candidates
	// (ErrTooManyCandidates). Default: DefaultMaxCandidates (2000).
	MaxCandidates int
	// BatchRows is the number of candidates per forward pass; a request
	// with more is scored in several passes. It sizes each pooled model
	// workspace. Default: DefaultBatchRows (512).
	BatchRows int
	// Workers splits a request's candidates over this many goroutines, each
	// running the model on its share with its own workspace: lower latency
	// on an idle machine, the same throughput under load. Scores do not
	// depend on the split. Requests of fewer than 2 x MinWorkerRows
	// candidates use one. Default: 1.
	Workers int
	// MinWorkerRows is the smallest share of a worker. Default: 64.
	MinWorkerRows int
	// Required lists feature columns that every candidate must have, in
	// itself or in the context; others take the spec's documented default
	// for a missing value (null id 0, numeric default and missing
	// indicator). Default: none.
	Required []string
	// MaxObjectBytes bounds the raw JSON of the context and of each
	// candidate. Default: DefaultMaxBodyBytes (4 MiB).
	MaxObjectBytes int
}

// Validate reports whether the configuration is usable.
func (c ScorerConfig) Validate() error {
	if c.MaxCandidates < 0 {
		return fmt.Errorf("serving: ScorerConfig.MaxCandidates %d is negative", c.MaxCandidates)
	}
	if c.BatchRows < 0 {
		return fmt.Errorf("serving: ScorerConfig.BatchRows %d is negative", c.BatchRows)
	}
	if c.Workers < 0 || c.Workers > 256 {
		return fmt.Errorf("serving: ScorerConfig.Workers %d: want 0 (default) to 256", c.Workers)
	}
	if c.MinWorkerRows < 0 {
		return fmt.Errorf("serving: ScorerConfig.MinWorkerRows %d is negative", c.MinWorkerRows)
	}
	if c.MaxObjectBytes < 0 {
		return fmt.Errorf("serving: ScorerConfig.MaxObjectBytes %d is negative", c.MaxObjectBytes)
	}
	if _, err := parseRank(c.Rank); err != nil {
		return err
	}
	return nil
}

func (c ScorerConfig) withDefaults() ScorerConfig {
	if c.MaxCandidates == 0 {
		c.MaxCandidates = DefaultMaxCandidates
	}
	if c.BatchRows == 0 {
		c.BatchRows = DefaultBatchRows
	}
	if c.MaxObjectBytes == 0 {
		c.MaxObjectBytes = DefaultMaxBodyBytes
	}
	if c.Workers == 0 {
		c.Workers = 1
	}
	if c.MinWorkerRows == 0 {
		c.MinWorkerRows = 64
	}
	return c
}

// Scorer scores candidates with one loaded bundle: raw JSON features go
// through the bundle's Transformer (the training transform, without
// labels), the model's forward pass and the tasks' link functions, then are
// ranked. Per-request buffers (JSON decoders, the batch, the model
// workspace, score slices, the response) come from a pool, so steady-state
// scoring allocates nothing per candidate. A Scorer is safe for concurrent
// use.
type Scorer struct {
	b          *Bundle
	cfg        ScorerConfig
	formula    *rankFormula
	rank       *rankPlan
	objectives []string
	schema     *arrow.Schema
	required   []int // schema column indices
	ctxCols    []int // schema columns of context-side fields
	split      *mmoe.Split
	pool       sync.Pool
}

// NewScorer returns a scorer for b. Rank formula names that are not the
// model's objectives are candidate fields; a required column that is not in
// the spec is an error.
func NewScorer(b *Bundle, cfg ScorerConfig) (*Scorer, error) {
	if b == nil {
		return nil, errors.New("serving: NewScorer: nil bundle")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	f, _ := parseRank(cfg.Rank)
	s := &Scorer{
		b:          b,
		cfg:        cfg,
		formula:    f,
		objectives: b.Tasks.Objectives(),
		schema:     b.servingSpec.Schema(false),
	}
	s.rank = f.bind(s.objectives)
	// Check once that the decoder takes the schema, so newState cannot fail.
	dec, err := features.NewJSONDecoder(s.schema, features.JSONConfig{MaxEventBytes: cfg.MaxObjectBytes})
	if err != nil {
		return nil, fmt.Errorf("serving: bundle %s: %w", b.Dir, err)
	}
	dec.Release()
	for _, r := range cfg.Required {
		i := s.schema.FieldIndices(r)
		if len(i) == 0 {
			return nil, fmt.Errorf("serving: required feature %q is not a column of the feature spec of bundle %s", r, b.Dir)
		}
		s.required = append(s.required, i[0])
	}
	for i, f := range s.schema.Fields() {
		if fld := b.servingSpec.Field(f.Name); fld != nil && fld.Side == features.SideContext {
			s.ctxCols = append(s.ctxCols, i)
		}
	}
	// Scoring computes the first layer's context share once per request
	// (mmoe.Split); the bundle's weights never change, so the split is
	// never stale.
	s.split = b.Model.NewSplit()
	s.pool.New = func() any { return s.newState() }
	return s, nil
}

// Bundle returns the bundle the scorer serves.
func (s *Scorer) Bundle() *Bundle { return s.b }

// Objectives returns the names of every score the model produces. The
// slice must not be modified.
func (s *Scorer) Objectives() []string { return s.objectives }

// Config returns the effective configuration.
func (s *Scorer) Config() ScorerConfig { return s.cfg }

// scoreState is one request's worth of reusable buffers.
type scoreState struct {
	s       *Scorer
	req     Request
	ctxDec  *features.JSONDecoder
	candDec *features.JSONDecoder
	cols    []arrow.Array
	batch   features.Batch
	ctx     features.Batch  // the request's context, one row
	useCtx  bool            // score the candidates against ctx (no candidate overrides a context field)
	fw      []forwardWorker // one per ScorerConfig.Workers
	next    atomic.Int64    // forwardTo: the next share to take
	scores  [][]float32     // [objective][candidate]
	rank    []float64
	order   []int
	ctxVals []float64 // rank fields from the context
	ctxHas  []bool
	scan    scanner
	out     []byte
	resp    Response
	objIdx  []int
	flat    []float32
}

func (s *Scorer) newState() *scoreState {
	jc := features.JSONConfig{MaxEventBytes: s.cfg.MaxObjectBytes}
	// NewScorer checked that the decoder takes the schema.
	ctxDec, err := features.NewJSONDecoder(s.schema, jc)
	if err != nil {
		panic(err)
	}
	candDec, err := features.NewJSONDecoder(s.schema, jc)
	if err != nil {
		panic(err)
	}
	st := &scoreState{
		s:       s,
		ctxDec:  ctxDec,
		candDec: candDec,
		cols:    make([]arrow.Array, s.schema.NumFields()),
		fw:      make([]forwardWorker, s.cfg.Workers),
		scores:  make([][]float32, len(s.objectives)),
		ctxVals: make([]float64, len(s.rank.fields)),
		ctxHas:  make([]bool, len(s.rank.fields)),
	}
	for i := range st.fw {
		st.fw[i].chunk = make([][]float32, len(s.objectives))
	}
	st.fw[0].ws = s.split.NewWorkspace(s.cfg.BatchRows) // others on first use
	return st
}

// forwardWorker is the model state of one share of a request.
type forwardWorker struct {
	ws    *mmoe.Workspace
	view  features.Batch
	chunk [][]float32
	err   error
}

// Response is the answer to a score request. It holds pooled buffers:
// call Release when done with it (after encoding it), and do not use it
// afterwards. A Response is not safe for concurrent use.
type Response struct {
	// ModelVersion is the bundle version that scored the request.
	ModelVersion string
	// Objectives names the entries of each Result.Scores.
	Objectives []string
	// Results are the candidates, best rank score first, cut at top_k.
	Results []Result
	// Scored is the number of candidates scored (before the top_k cut).
	Scored int

	st *scoreState
}

// Result is one scored candidate.
type Result struct {
	// Index is the candidate's position in the request.
	Index int
	// Scores holds one score per Response.Objectives entry.
	Scores []float32
	// RankScore is the ranking formula's value.
	RankScore float64
}

// Release returns the response's buffers to its scorer's pool.
func (r *Response) Release() {
	if r == nil || r.st == nil {
		return
	}
	st := r.st
	r.st = nil // a second Release is a no-op
	st.s.pool.Put(st)
}

// AppendJSON appends the response as JSON:
//
//	{"model_version":"v00000003","results":[{"index":4,"scores":{"ctr":0.031,...},"rank_score":0.0021},...]}
//
// Scores are written in the shortest form that parses back to the same
// float32 (so a client reading float32 gets the model's exact bits), rank
// scores in the shortest form of their float64; a non-finite value is null.
func (r *Response) AppendJSON(b []byte) []byte {
	b = append(b, `{"model_version":`...)
	b = strconv.AppendQuote(b, r.ModelVersion)
	b = append(b, `,"results":[`...)
	for i := range r.Results {
		res := &r.Results[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, int64(res.Index), 10)
		b = append(b, `,"scores":{`...)
		for j, v := range res.Scores {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendQuote(b, r.Objectives[j])
			b = append(b, ':')
			b = appendFloat(b, float64(v), 32)
		}
		b = append(b, `},"rank_score":`...)
		b = appendFloat(b, res.RankScore, 64)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// MarshalJSON implements json.Marshaler with AppendJSON's encoding.
func (r *Response) MarshalJSON() ([]byte, error) { return r.AppendJSON(nil), nil }

func appendFloat(b []byte, v float64, bits int) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, bits)
}

// ScoreBody decodes a raw request body and scores it, reusing pooled
// buffers for the decoded request too. It is what the HTTP handler calls.
func (s *Scorer) ScoreBody(ctx context.Context, body []byte) (*Response, error) {
	st := s.pool.Get().(*scoreState)
	if err := DecodeRequest(&st.req, body); err != nil {
		s.pool.Put(st)
		return nil, err
	}
	return s.score(ctx, st, &st.req)
}

// Score scores the candidates of req, which must not change during the
// call. Errors are *RequestError for a bad request (naming the field), or
// the context's error if it ends first. The caller must Release the
// response.
func (s *Scorer) Score(ctx context.Context, req *Request) (*Response, error) {
	st := s.pool.Get().(*scoreState)
	return s.score(ctx, st, req)
}

func (s *Scorer) score(ctx context.Context, st *scoreState, req *Request) (resp *Response, err error) {
	defer func() {
		if err != nil {
			s.pool.Put(st)
		}
	}()
	n := len(req.Candidates)
	if n > s.cfg.MaxCandidates {
		return nil, reqErr("candidates", ErrTooManyCandidates, "%d candidates, the limit is %d", n, s.cfg.MaxCandidates)
	}
	// Objectives asked for.
	st.objIdx = st.objIdx[:0]
	if len(req.Objectives) == 0 {
		for i := range s.objectives {
			st.objIdx = append(st.objIdx, i)
		}
	} else {
		for i, name := range req.Objectives {
			j := slices.Index(s.objectives, name)
			if j < 0 {
				return nil, reqErr(indexField("objectives", i), ErrUnknownObjective, "unknown objective %q (this model has %v)", name, s.objectives)
			}
			st.objIdx = append(st.objIdx, j)
		}
	}
	if req.TopK < 0 {
		return nil, reqErr("top_k", ErrBadRequest, "want a non-negative integer, found %d", req.TopK)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := st.scoreAll(ctx, req); err != nil {
		return nil, err
	}
	if err := st.rankAll(req); err != nil {
		return nil, err
	}
	// Order and cut.
	st.order = st.order[:0]
	for i := 0; i < n; i++ {
		st.order = append(st.order, i)
	}
	rank := st.rank
	slices.SortFunc(st.order, func(a, b int) int {
		ra, rb := rank[a], rank[b]
		switch {
		case ra > rb:
			return -1
		case ra < rb:
			return 1
		case ra == rb:
		case math.IsNaN(ra) && !math.IsNaN(rb):
			return 1
		case !math.IsNaN(ra) && math.IsNaN(rb):
			return -1
		}
		return a - b
	})
	k := n
	if req.TopK > 0 && req.TopK < n {
		k = req.TopK
	}
	r := &st.resp
	r.st = st
	r.ModelVersion = s.b.Manifest.Version
	r.Scored = n
	if cap(r.Objectives) < len(st.objIdx) {
		r.Objectives = make([]string, len(st.objIdx))
	}
	r.Objectives = r.Objectives[:len(st.objIdx)]
	for j, o := range st.objIdx {
		r.Objectives[j] = s.objectives[o]
	}
	no := len(st.objIdx)
	if cap(st.flat) < k*no {
		st.flat = make([]float32, k*no)
	}
	st.flat = st.flat[:k*no]
	if cap(r.Results) < k {
		r.Results = make([]Result, k)
	}
	r.Results = r.Results[:k]
	for i := 0; i < k; i++ {
		c := st.order[i]
		sc := st.flat[i*no : (i+1)*no : (i+1)*no]
		for j, o := range st.objIdx {
			sc[j] = st.scores[o][c]
		}
		r.Results[i] = Result{Index: c, Scores: sc, RankScore: rank[c]}
	}
	return r, nil
}

// scoreAll fills st.scores[o][:n] for every objective.
func (st *scoreState) scoreAll(ctx context.Context, req *Request) error {
	s := st.s
	n := len(req.Candidates)
	for o := range st.scores {
		if cap(st.scores[o]) < n {
			st.scores[o] = make([]float32, n, n+n/4)
		}
		st.scores[o] = st.scores[o][:n]
	}
	if n == 0 {
		if req.Context != nil { // still check it
			if err := st.ctxDec.Append(req.Context); err != nil {
				return eventErr("context", err)
			}
			st.ctxDec.NewRecordBatch().Release()
		}
		return nil
	}
	rec, err := st.record(req)
	if err != nil {
		return err
	}
	err = s.b.Transformer.TransformTo(&st.batch, rec)
	rec.Release()
	if err != nil {
		return reqErr("", ErrBadRequest, "%v", err)
	}
	return st.forwardTo(ctx, st.scores, n)
}

// forwardTo runs the model on st.batch (n rows) and writes the objectives'
// scores into scores[o][:n]: split over up to Workers goroutines, each in
// passes of at most BatchRows rows. With st.useCtx the first layer's
// context share is computed once from st.ctx; otherwise every row is its
// own context. Both give a row the same bits (see mmoe.Split.ForwardRows),
// so online and offline scores agree exactly.
//
// With several workers the rows are cut into about two shares per worker
// (of at least MinWorkerRows) that the workers take in turn from a
// counter: a worker whose goroutine starts late, its core busy with other
// work, takes fewer shares instead of finishing last with a full one.
// Scores do not depend on who computes a row.
func (st *scoreState) forwardTo(ctx context.Context, scores [][]float32, n int) error {
	s := st.s
	w := min(s.cfg.Workers, n/s.cfg.MinWorkerRows)
	if w <= 1 {
		return st.forwardRange(ctx, &st.fw[0], scores, 0, n)
	}
	shares := max(w, min(2*w, n/s.cfg.MinWorkerRows))
	per := (n + shares - 1) / shares
	st.next.Store(0)
	var wg sync.WaitGroup
	for k := 1; k < w; k++ {
		fw := &st.fw[k]
		if fw.ws == nil {
			fw.ws = s.split.NewWorkspace(s.cfg.BatchRows)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fw.err = st.forwardShares(ctx, fw, scores, n, per)
		}()
	}
	err := st.forwardShares(ctx, &st.fw[0], scores, n, per)
	wg.Wait()
	for k := 1; k < w && err == nil; k++ {
		err = st.fw[k].err
	}
	return err
}

// forwardShares scores shares of per rows, taken from st.next, until none
// is left or one fails.
func (st *scoreState) forwardShares(ctx context.Context, fw *forwardWorker, scores [][]float32, n, per int) error {
	for {
		lo := int(st.next.Add(1)-1) * per
		if lo >= n {
			return nil
		}
		if err := st.forwardRange(ctx, fw, scores, lo, min(lo+per, n)); err != nil {
			st.next.Store(int64(n)) // the others stop at their next share
			return err
		}
	}
}

// forwardRange scores rows [lo, hi) with one worker's workspace.
func (st *scoreState) forwardRange(ctx context.Context, fw *forwardWorker, scores [][]float32, lo, hi int) error {
	s := st.s
	for a := lo; a < hi; a += s.cfg.BatchRows {
		if a > lo {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		b := min(a+s.cfg.BatchRows, hi)
		st.batch.SliceTo(&fw.view, a, b)
		var err error
		if st.useCtx {
			err = s.split.Forward(fw.ws, &st.ctx, &fw.view)
		} else {
			err = s.split.ForwardRows(fw.ws, &fw.view)
		}
		if err != nil {
			// The transform only produces ids inside the layout: a failure
			// here is a bundle bug, not the request's.
			return fmt.Errorf("serving: bundle %s: forward: %w", s.b.Dir, err)
		}
		for o := range fw.chunk {
			fw.chunk[o] = scores[o][a:b]
		}
		if _, err := s.b.Tasks.PredictTo(fw.chunk, fw.ws.Logits); err != nil {
			return fmt.Errorf("serving: bundle %s: %w", s.b.Dir, err)
		}
	}
	return nil
}

// record decodes the context and the candidates and assembles one Arrow
// record with a row per candidate: a candidate's non-null values, else the
// context's. The caller releases it.
func (st *scoreState) record(req *Request) (arrow.RecordBatch, error) {
	s := st.s
	var ctxRec arrow.RecordBatch
	if req.Context != nil {
		if err := st.ctxDec.Append(req.Context); err != nil {
			return nil, eventErr("context", err)
		}
		ctxRec = st.ctxDec.NewRecordBatch()
		defer ctxRec.Release()
	}
	for i, c := range req.Candidates {
		if err := st.candDec.Append(c); err != nil {
			st.candDec.NewRecordBatch().Release() // drop the rows so far
			return nil, eventErr(indexField("candidates", i), err)
		}
	}
	candRec := st.candDec.NewRecordBatch()
	defer candRec.Release()
	n := int(candRec.NumRows())
	st.useCtx = false
	if ctxRec != nil {
		st.useCtx = true
		for _, i := range s.ctxCols {
			if candRec.Column(i).NullN() < n {
				st.useCtx = false // a candidate overrides a context field
				break
			}
		}
		if st.useCtx {
			if err := s.b.Transformer.TransformTo(&st.ctx, ctxRec); err != nil {
				return nil, reqErr("context", ErrBadRequest, "%v", err)
			}
		}
	}
	for i := range st.cols {
		cand := candRec.Column(i)
		if ctxRec == nil || ctxRec.Column(i).IsNull(0) || cand.NullN() == 0 {
			cand.Retain()
			st.cols[i] = cand
			continue
		}
		st.cols[i] = mergeColumn(cand, ctxRec.Column(i), n)
	}
	rec := array.NewRecordBatch(s.schema, st.cols, int64(n))
	for i, a := range st.cols {
		a.Release()
		st.cols[i] = nil
	}
	for _, ci := range s.required {
		a := rec.Column(ci)
		if a.NullN() == 0 {
			continue
		}
		for r := 0; r < n; r++ {
			if a.IsNull(r) {
				rec.Release()
				return nil, reqErr(indexField("candidates", r)+"."+s.schema.Field(ci).Name, ErrBadRequest,
					"missing required feature (in neither the candidate nor the context)")
			}
		}
	}
	return rec, nil
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

// mergeColumn builds a column of n rows taking cand's value where it is not
// null and ctx's single value (row 0) elsewhere.
func mergeColumn(cand, ctx arrow.Array, n int) arrow.Array {
	mem := memory.DefaultAllocator
	switch c := cand.(type) {
	case *array.Float64:
		x := ctx.(*array.Float64).Value(0)
		b := array.NewFloat64Builder(mem)
		defer b.Release()
		b.Reserve(n)
		for r := 0; r < n; r++ {
			if c.IsNull(r) {
				b.UnsafeAppend(x)
			} else {
				b.UnsafeAppend(c.Value(r))
			}
		}
		return b.NewArray()
	case *array.String:
		x := ctx.(*array.String).Value(0)
		b := array.NewStringBuilder(mem)
		defer b.Release()
		b.Reserve(n)
		b.ReserveData(len(c.ValueBytes()) + n*len(x))
		for r := 0; r < n; r++ {
			if c.IsNull(r) {
				b.Append(x)
			} else {
				b.Append(c.Value(r))
			}
		}
		return b.NewArray()
	case *array.List:
		cx := ctx.(*array.List)
		b := array.NewListBuilderWithField(mem, c.DataType().(*arrow.ListType).ElemField())
		defer b.Release()
		vb := b.ValueBuilder().(*array.StringBuilder)
		cv := c.ListValues().(*array.String)
		xv := cx.ListValues().(*array.String)
		xlo, xhi := cx.ValueOffsets(0)
		b.Reserve(n)
		vb.Reserve(cv.Len() + n*int(xhi-xlo))
		xbytes := 0
		for j := xlo; j < xhi; j++ {
			xbytes += len(xv.Value(int(j)))
		}
		vb.ReserveData(len(cv.ValueBytes()) + n*xbytes)
		appendItems := func(v *array.String, lo, hi int64) {
			for j := lo; j < hi; j++ {
				if v.IsNull(int(j)) {
					vb.AppendNull()
				} else {
					vb.Append(v.Value(int(j)))
				}
			}
		}
		for r := 0; r < n; r++ {
			b.Append(true)
			if c.IsNull(r) {
				appendItems(xv, xlo, xhi)
			} else {
				lo, hi := c.ValueOffsets(r)
				appendItems(cv, lo, hi)
			}
		}
		return b.NewArray()
	}
	panic(fmt.Sprintf("serving: mergeColumn: unexpected column type %s", cand.DataType()))
}

// rankAll computes the rank score of every candidate.
func (st *scoreState) rankAll(req *Request) error {
	s := st.s
	n := len(req.Candidates)
	if cap(st.rank) < n {
		st.rank = make([]float64, n, n+n/4)
	}
	st.rank = st.rank[:n]
	p := s.rank
	for f, name := range p.fields {
		st.ctxHas[f] = false
		if req.Context != nil {
			v, ok, err := st.scan.objectNumber(req.Context, name)
			if err != nil {
				return reqErr("context."+name, ErrBadRequest, "rank formula %q: %v", s.formula.src, err)
			}
			st.ctxVals[f], st.ctxHas[f] = v, ok
		}
	}
	for c := 0; c < n; c++ {
		r := p.constant
		for _, t := range p.objs {
			r *= pow(float64(st.scores[t.obj][c]), t.pow)
		}
		for f, name := range p.fields {
			v, ok, err := st.scan.objectNumber(req.Candidates[c], name)
			if err != nil {
				return reqErr(indexField("candidates", c)+"."+name, ErrBadRequest, "rank formula %q: %v", s.formula.src, err)
			}
			if !ok {
				if !st.ctxHas[f] {
					return reqErr(indexField("candidates", c)+"."+name, ErrBadRequest,
						"missing: the rank formula %q needs a number (in the candidate or the context)", s.formula.src)
				}
				v = st.ctxVals[f]
			}
			r *= pow(v, p.fpows[f])
		}
		st.rank[c] = r
	}
	return nil
}

// defaultInFlight is the default concurrency limit: 2 x GOMAXPROCS.
func defaultInFlight() int { return 2 * runtime.GOMAXPROCS(0) }

// Columns returns the raw columns ScoreRecordTo reads: the spec's feature
// columns (no labels, weight or group key), the projection for reading
// events from files.
func (s *Scorer) Columns() []string { return s.b.servingSpec.Columns(false) }

// ScoreRecordTo scores every row of rec, a record of raw events with the
// feature columns in any type the Transformer accepts (as read from Parquet:
// int64 ids, float32 numbers, dictionaries ...), into scores[o][row] for
// every objective of Objectives. A nil or short scores is (re)allocated.
// It runs exactly the code the score API runs after decoding JSON, so the
// same event scores the same to the last bit offline and online.
func (s *Scorer) ScoreRecordTo(scores [][]float32, rec arrow.RecordBatch) ([][]float32, error) {
	n := int(rec.NumRows())
	if len(scores) != len(s.objectives) {
		scores = make([][]float32, len(s.objectives))
	}
	for o := range scores {
		if cap(scores[o]) < n {
			scores[o] = make([]float32, n)
		}
		scores[o] = scores[o][:n]
	}
	st := s.pool.Get().(*scoreState)
	defer s.pool.Put(st)
	if err := s.b.Transformer.TransformTo(&st.batch, rec); err != nil {
		return scores, fmt.Errorf("serving: %w", err)
	}
	st.useCtx = false
	return scores, st.forwardTo(context.Background(), scores, n)
}
