package serving

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/jsontext"
	"github.com/onestone/onestone/internal/kernels"
	"github.com/onestone/onestone/mmoe"
)

// Scorer defaults.
const (
	DefaultMaxCandidates = 2000
	DefaultMaxBodyBytes  = 4 << 20
)

// DefaultBatchRows is the default number of candidates per forward pass:
// the multiple of the GEMM kernel's row block (kernels.RowBlock) nearest
// above 50, 56 with AVX-512. Small passes let the workers of a request
// share its candidates evenly; a whole number of row blocks wastes no part
// of the kernel's tiles.
func DefaultBatchRows() int {
	rb := kernels.RowBlock()
	return (50 + rb - 1) / rb * rb
}

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
	// with more is scored in several passes, which the workers share. It
	// sizes each pooled model workspace. Default: DefaultBatchRows().
	BatchRows int
	// Workers splits a request's candidates over this many goroutines, each
	// decoding and transforming a part of them and running the model on
	// passes with its own workspace: lower latency on an idle machine, the
	// same throughput under load. Scores do not depend on the split.
	// Requests of fewer than 2 x MinWorkerRows candidates use one.
	// Default: 1.
	Workers int
	// MinWorkerRows is the smallest share of a worker. Default: 64.
	MinWorkerRows int
	// Helpers, when set, runs the workers beyond the request's own
	// goroutine on long-lived goroutines that poll for work (see Helpers)
	// instead of on a goroutine started per request. Default: nil.
	Helpers *Helpers
	// Required lists feature columns that every candidate must have, in
	// itself or in the context; others take the spec's documented default
	// for a missing value (null id 0, numeric default and missing
	// indicator). Default: none.
	Required []string
	// MaxObjectBytes bounds the raw JSON of the context and of each
	// candidate. Default: DefaultMaxBodyBytes (4 MiB).
	MaxObjectBytes int
	// Strict refuses a request whose context or candidates hold a key the
	// bundle does not know (ErrBadRequest naming it, e.g.
	// "candidates[3].pirce"). Known are the feature spec's columns, its
	// labels, sample weight and group key, and the rank formula's fields.
	// Default: false: unknown keys are skipped (the feature takes its
	// default) and counted in Response.UnknownKeys.
	Strict bool

	// Precision of the model's products: "fp32" or "bf16" (bf16 operands,
	// float32 sums), chosen at run time: bf16 runs where the CPU has
	// AVX512_BF16, fp32 elsewhere (Scorer.Precision says which); or
	// PrecisionBundle, the precision the bundle was trained in. Scores in
	// the bundle's own precision are its sample's (bit for bit on the
	// writer's kernel, Kernel); in the other they differ by bf16 rounding
	// (docs/formats.md, bundle.json, gives the size). Default: "", the
	// bundle's precision. (onestone serve and onestone score default to
	// "bf16": docs/serving.md.)
	Precision string

	// exact runs Precision as given, bf16 emulated where the CPU lacks it
	// (the bundle's sample check).
	exact bool
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
	if c.Precision != PrecisionBundle {
		if _, err := kernels.ParsePrecision(c.Precision); err != nil {
			return fmt.Errorf("serving: ScorerConfig.Precision %q: want fp32, bf16, %s or empty (the bundle's)", c.Precision, PrecisionBundle)
		}
	}
	return nil
}

// PrecisionBundle is the ScorerConfig.Precision that names the bundle's
// own precision, as the empty string does (for flags whose default is
// another).
const PrecisionBundle = "bundle"

func (c ScorerConfig) withDefaults() ScorerConfig {
	if c.MaxCandidates == 0 {
		c.MaxCandidates = DefaultMaxCandidates
	}
	if c.BatchRows == 0 {
		c.BatchRows = DefaultBatchRows()
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
	required   []int    // schema column indices
	isCtx      []bool   // by schema column: a context-side field
	exactCols  []int    // by exact table: its schema column
	known      []string // keys that are not columns but are not unknown either
	split      *mmoe.Split
	prec       kernels.Precision
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
	s.known = append(b.Spec.Columns(true), s.rank.fields...)
	// Check once that the decoder takes the schema, so newState cannot fail.
	if _, err := features.NewJSONRows(b.Transformer, s.schema, s.jsonConfig()); err != nil {
		return nil, fmt.Errorf("serving: bundle %s: %w", b.Dir, err)
	}
	for _, r := range cfg.Required {
		i := s.schema.FieldIndices(r)
		if len(i) == 0 {
			return nil, fmt.Errorf("serving: required feature %q is not a column of the feature spec of bundle %s", r, b.Dir)
		}
		s.required = append(s.required, i[0])
	}
	s.isCtx = make([]bool, s.schema.NumFields())
	for i, f := range s.schema.Fields() {
		if fld := b.servingSpec.Field(f.Name); fld != nil && fld.Side == features.SideContext {
			s.isCtx[i] = true
		}
	}
	ids := b.Transformer.IDs()
	for i := range ids.Len() {
		c := s.schema.FieldIndices(ids.Table(i).Name())
		if len(c) != 1 {
			return nil, fmt.Errorf("serving: bundle %s: exact field %q is not a column of the serving schema", b.Dir, ids.Table(i).Name())
		}
		s.exactCols = append(s.exactCols, c[0])
	}
	// Scoring computes the first layer's context share once per request
	// (mmoe.Split); the bundle's weights never change, so the split is
	// never stale.
	s.prec = b.Precision
	if cfg.Precision != "" && cfg.Precision != PrecisionBundle {
		s.prec, _ = kernels.ParsePrecision(cfg.Precision)
	}
	if !cfg.exact {
		s.prec = s.prec.Effective()
	}
	s.split = b.Model.NewSplitIn(s.prec)
	s.pool.New = func() any { return s.newState() }
	return s, nil
}

// Precision is the precision the scorer's products run in
// (ScorerConfig.Precision).
func (s *Scorer) Precision() kernels.Precision { return s.prec }

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
	ctxRows *features.JSONRows
	hasCtx  bool           // the request has a context (scoreAll)
	ctx     features.Batch // the request's context, decoded (one row)
	ctxErr  error          // the context holds a row fault (a vector's length)
	// ctxFatal is the request's error if decoding its context failed;
	// ctxDone is set once decodeContext has run (by worker 0 of run).
	ctxFatal error
	ctxDone  atomic.Bool
	parts    []part // one per worker; the first nparts are in use
	nparts   int
	fw       []forwardWorker // one per ScorerConfig.Workers
	tasks    []helperTask    // [k] runs worker k (k >= 1) on ScorerConfig.Helpers
	// The run in progress, for its workers.
	runCtx    context.Context
	runReq    *Request
	runN      int
	runScores [][]float32
	// run's work queues: the next part to prepare and the next pass to
	// score; stop ends the passes after a failure.
	nextPart atomic.Int64
	nextPass atomic.Int64
	stop     atomic.Bool
	scores   [][]float32 // [objective][candidate]
	rank     []float64
	order    []int
	ctxVals  []float64 // rank fields from the context
	ctxHas   []bool
	scan     jsontext.Scanner
	resp     Response
	objIdx   []int
	flat     []float32
	unknown  int // unknown keys in the request scored last
	// unknownIDs are the exact ids of the request scored last that the
	// bundle's maps do not know, by exact table; ctxUnknownIDs those of
	// its context alone.
	unknownIDs    []int64
	ctxUnknownIDs []int64
	// solo runs every worker of run in turn on the calling goroutine
	// (warm).
	solo bool
}

func (s *Scorer) newState() *scoreState {
	st := &scoreState{
		s:       s,
		ctxRows: s.newRows(),
		parts:   make([]part, s.cfg.Workers),
		fw:      make([]forwardWorker, s.cfg.Workers),
		tasks:   make([]helperTask, s.cfg.Workers),
		scores:  make([][]float32, len(s.objectives)),
		ctxVals: make([]float64, len(s.rank.fields)),
		ctxHas:  make([]bool, len(s.rank.fields)),

		unknownIDs:    make([]int64, len(s.exactCols)),
		ctxUnknownIDs: make([]int64, len(s.exactCols)),
	}
	for i := range st.fw {
		st.tasks[i].w, st.tasks[i].k = st, i
		st.fw[i].chunk = make([][]float32, len(s.objectives))
		st.parts[i].unknownIDs = make([]int64, len(s.exactCols))
		st.parts[i].fromCtx = make([]int64, len(s.exactCols))
	}
	st.fw[0].ws = s.split.NewWorkspace(s.cfg.BatchRows) // others on first use
	st.parts[0].rows = s.newRows()
	return st
}

// newRows returns a JSON decoder of the scorer's schema into batches of
// the bundle's transform.
func (s *Scorer) newRows() *features.JSONRows {
	rows, err := features.NewJSONRows(s.b.Transformer, s.schema, s.jsonConfig())
	if err != nil {
		panic(err) // NewScorer checked that the decoder takes the schema
	}
	return rows
}

func (s *Scorer) jsonConfig() features.JSONConfig {
	return features.JSONConfig{MaxEventBytes: s.cfg.MaxObjectBytes, Strict: s.cfg.Strict, Known: s.known}
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
	// UnknownKeys counts the keys of the context and the candidates that
	// the bundle does not know (see ScorerConfig.Strict), skipped: a key
	// counts once per object it appears in.
	UnknownKeys int
	// UnknownIDs counts, by exact table of the bundle (its
	// Transformer.IDs(), in spec order), the ids that its id maps do not
	// know and that were scored with their fallback row (the field's
	// shared rows, docs/spec.md): an id counts once per object, the
	// context or a candidate, it appears in (a context's id once, not
	// once per candidate it is copied into).
	UnknownIDs []int64

	st     *scoreState
	req    *Request // the request scored, alive until Release
	logged bool     // the results carry impression ids
}

// Result is one scored candidate.
type Result struct {
	// Index is the candidate's position in the request.
	Index int
	// Scores holds one score per Response.Objectives entry.
	Scores []float32
	// RankScore is the ranking formula's value.
	RankScore float64
	// ImpressionID identifies the impression when the server logs served
	// impressions (ServerConfig.ImpressionLog): the client sends it back
	// with the click, the shop with the conversion. It is written as
	// "impression_id" (16 hex digits) only then.
	ImpressionID uint64
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
	b = jsontext.AppendString(b, r.ModelVersion)
	b = append(b, `,"results":[`...)
	for i := range r.Results {
		res := &r.Results[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, int64(res.Index), 10)
		if r.logged {
			b = append(b, `,"impression_id":"`...)
			b = append(appendHex16(b, res.ImpressionID), '"')
		}
		b = append(b, `,"scores":{`...)
		for j, v := range res.Scores {
			if j > 0 {
				b = append(b, ',')
			}
			b = jsontext.AppendString(b, r.Objectives[j])
			b = append(b, ':')
			b = jsontext.AppendFloat(b, float64(v), 32)
		}
		b = append(b, `},"rank_score":`...)
		b = jsontext.AppendFloat(b, res.RankScore, 64)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// MarshalJSON implements json.Marshaler with AppendJSON's encoding.
func (r *Response) MarshalJSON() ([]byte, error) { return r.AppendJSON(nil), nil }

// ScoreBody decodes a raw request body and scores it, reusing pooled
// buffers for the decoded request too. It is what the HTTP handler calls.
//
// The envelope scan splits the candidates without checking them (their
// decoders do, on the request's workers): it is the serial start of a
// request, before the helpers have work. A failed request is scanned
// again, strictly, so that its error is DecodeRequest's where that finds
// one (a malformed candidate), as if the body had been checked first.
func (s *Scorer) ScoreBody(ctx context.Context, body []byte) (*Response, error) {
	st := s.pool.Get().(*scoreState)
	if err := decodeRequest(&st.req, body, s.cfg.MaxCandidates, false); err != nil {
		s.pool.Put(st)
		return nil, strictErr(body, s.cfg.MaxCandidates, err)
	}
	resp, err := s.score(ctx, st, &st.req)
	if err != nil {
		return nil, strictErr(body, s.cfg.MaxCandidates, err)
	}
	return resp, nil
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
		return nil, reqErr("candidates", ErrTooManyCandidates, "%d candidates: the limit is %d per request", n, s.cfg.MaxCandidates)
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
	k := n
	if req.TopK > 0 && req.TopK < n {
		k = req.TopK
	}
	st.order = rankOrder(st.order, st.rank, k)
	rank := st.rank
	r := &st.resp
	r.st, r.req, r.logged = st, req, false
	r.ModelVersion = s.b.Manifest.Version
	r.Scored = n
	r.UnknownKeys = st.unknown
	r.UnknownIDs = st.unknownIDs
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
//
// The context is decoded and transformed once, by the request's own
// goroutine (worker 0 of run) while the other workers already decode
// their parts: they wait for it only to merge it in. The candidates are
// cut into one part per worker, each decoded and transformed by
// whichever worker takes it first, and the model runs on passes of
// BatchRows candidates that the workers take in turn from a counter (see
// run). An error in the context is the request's, before any other.
func (st *scoreState) scoreAll(ctx context.Context, req *Request) error {
	s := st.s
	n := len(req.Candidates)
	for o := range st.scores {
		if cap(st.scores[o]) < n {
			st.scores[o] = make([]float32, n, n+n/4)
		}
		st.scores[o] = st.scores[o][:n]
	}
	defer st.countUnknown()
	st.hasCtx, st.ctxErr, st.ctxFatal = false, nil, nil
	st.ctxDone.Store(false)
	if n == 0 {
		return st.decodeContext(req)
	}
	w := s.workersFor(n)
	per := s.cfg.BatchRows
	passes := (n + per - 1) / per
	st.nparts = min(w, passes)
	for p := range st.nparts {
		pt := &st.parts[p]
		pt.lo = p * passes / st.nparts * per
		pt.hi = min((p+1)*passes/st.nparts*per, n)
		pt.err = nil
		pt.state.Store(partPending)
		if pt.rows == nil {
			pt.rows = s.newRows()
		}
	}
	return st.run(ctx, req, w, n, st.scores)
}

// decodeContext decodes the request's context, if any, into st.ctx (one
// row; a row fault is kept in st.ctxErr: it matters only to the parts
// that use the faulty value), then sets st.ctxDone. A context that does
// not decode is the request's error, also kept in st.ctxFatal.
func (st *scoreState) decodeContext(req *Request) (err error) {
	defer func() {
		st.ctxFatal = err
		st.ctxDone.Store(true)
	}()
	st.hasCtx, st.ctxErr = false, nil
	if req.Context == nil {
		return nil
	}
	st.ctxRows.Reset(&st.ctx)
	if err := st.ctxRows.Append(req.Context); err != nil {
		return eventErr("context", err)
	}
	st.ctxRows.Finish()
	st.hasCtx = true
	if f, _ := st.ctxRows.Fault(); f != nil {
		st.ctxErr = transformErr("context", -1, f)
	}
	st.s.b.Transformer.IDs().CountUnknown(&st.ctx, st.ctxUnknownIDs)
	return nil
}

// countUnknown sets st.unknown to the unknown keys the decoders of the
// request skipped and st.unknownIDs to the unknown exact ids of the
// context and of the parts prepared, and resets their counts.
func (st *scoreState) countUnknown() {
	st.unknown = st.ctxRows.TakeUnknown()
	for p := range st.parts {
		if rows := st.parts[p].rows; rows != nil {
			st.unknown += rows.TakeUnknown()
		}
	}
	copy(st.unknownIDs, st.ctxUnknownIDs)
	clear(st.ctxUnknownIDs)
	for p := range st.parts {
		pt := &st.parts[p]
		for j, n := range pt.unknownIDs {
			st.unknownIDs[j] += n
		}
		clear(pt.unknownIDs)
	}
}

// warm puts k pooled states in the pool, each having scored a request
// made of the bundle's sample events (as candidates without a context,
// repeated to fill a pass for every worker twice): their workspaces,
// decoders and buffers are allocated and the weights have been read once.
// Without sample events the states are only allocated. Every worker's
// share runs on the calling goroutine, never on ScorerConfig.Helpers:
// a server warms a new scorer in the background (inBackground) while
// the helpers serve the requests of the scorer it replaces.
func (s *Scorer) warm(k int) {
	var req Request
	if sample := s.b.Manifest.Sample; len(sample) > 0 {
		n := min(s.cfg.MaxCandidates, 2*s.cfg.Workers*s.cfg.BatchRows)
		for i := range n {
			req.Candidates = append(req.Candidates, sample[i%len(sample)].Event)
		}
	}
	states := make([]*scoreState, 0, k)
	for range k {
		st := s.newState()
		if len(req.Candidates) > 0 {
			// score puts a state back in the pool itself when it fails
			// (it cannot here: LoadBundle has just scored the sample).
			st.solo = true
			resp, err := s.score(context.Background(), st, &req)
			st.solo = false
			if err != nil {
				continue
			}
			resp.st = nil // out of the pool until every state is warm
		}
		states = append(states, st)
	}
	for _, st := range states {
		s.pool.Put(st)
	}
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
			v, ok, err := objectNumber(&st.scan, req.Context, name)
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
			v, ok, err := objectNumber(&st.scan, req.Candidates[c], name)
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
	if n == 0 {
		return scores, nil
	}
	pt := &st.parts[0]
	if err := s.b.Transformer.TransformTo(&pt.batch, rec); err != nil {
		return scores, fmt.Errorf("serving: %w", err)
	}
	pt.lo, pt.hi, pt.useCtx, pt.err = 0, n, false, nil
	pt.state.Store(partReady)
	st.nparts = 1
	st.ctxDone.Store(true) // no context
	return scores, st.run(context.Background(), nil, s.workersFor(n), n, scores)
}
