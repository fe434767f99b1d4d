package serving

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/mmoe"
)

// Server defaults.
const (
	DefaultAddr            = "127.0.0.1:8080"
	DefaultPoll            = 2 * time.Second
	DefaultQueueWait       = 100 * time.Millisecond
	DefaultShutdownTimeout = 30 * time.Second
	// DefaultBodyTimeout is how long a score request's body may take to
	// arrive.
	DefaultBodyTimeout = 5 * time.Second
	// DefaultHelperSpin is how long Serve's helper workers poll for the
	// next request before they sleep (see Helpers).
	DefaultHelperSpin = 10 * time.Millisecond
)

// ServerConfig configures a Server. Zero values mean the defaults.
type ServerConfig struct {
	// Addr is the listen address. Default: DefaultAddr (127.0.0.1:8080,
	// loopback only).
	Addr string
	// Models is a bundle root (the newest complete version is served and
	// newer ones are picked up) or one bundle directory, or an object
	// store URL (s3://bucket/prefix?endpoint=...: bundle.OpenBucket),
	// whose latest pointer is followed: each version it names is copied
	// into Cache, its checksums checked, then loaded as a local one.
	// Required.
	Models string
	// Cache is the local directory versions from an object store are
	// copied to. Default: a new temporary directory, removed when Serve
	// returns.
	Cache string
	// FetchTimeout bounds one look at an object store (its pointer and
	// the copy of the version it names). Default: DefaultFetchTimeout
	// (5m).
	FetchTimeout time.Duration
	// Scorer configures each loaded model's Scorer (rank formula, limits).
	Scorer ScorerConfig
	// MaxBodyBytes rejects larger request bodies with 413.
	// Default: DefaultMaxBodyBytes (4 MiB).
	MaxBodyBytes int64
	// BodyTimeout bounds the time a score request's body takes to arrive,
	// from the handler's start: a client that has not sent it all by then
	// gets 408 and the connection is closed. The body is read before the
	// request takes an in-flight slot, so slow clients hold no slot.
	// Default: DefaultBodyTimeout (5s).
	BodyTimeout time.Duration
	// MaxInFlight bounds the score requests being worked on at once (their
	// bodies already read). Default: 2 x GOMAXPROCS.
	MaxInFlight int
	// MaxQueue bounds the score requests waiting for a slot; beyond it a
	// request is refused at once with 429. Default: 4 x MaxInFlight.
	MaxQueue int
	// QueueWait is how long a request waits for a slot before it is refused
	// with 503. Default: DefaultQueueWait (100ms).
	QueueWait time.Duration
	// AdminToken enables POST /v1/admin/reload for requests carrying
	// "Authorization: Bearer <token>". Default: "", the endpoint is 404.
	AdminToken string
	// Poll is how often Models is checked for a newer bundle, and for
	// changes in the versions refused before. Default: DefaultPoll (2s);
	// negative disables polling.
	Poll time.Duration
	// Limits bound the memory a bundle may take (bundle.Limits.MaxBytes):
	// a bundle over them is refused before its weights are read.
	// Default: bundle.DefaultMaxBytes().
	Limits bundle.Limits
	// HTTP server timeouts. Defaults: ReadHeaderTimeout 5s, ReadTimeout
	// 10s, WriteTimeout 30s, IdleTimeout 120s.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// ShutdownTimeout bounds the draining of in-flight requests when the
	// context of Run ends. Default: DefaultShutdownTimeout (30s).
	ShutdownTimeout time.Duration
	// HelperSpin: with Scorer.Workers > 1, Serve runs the extra workers on
	// Helpers that poll for the next request this long after each one
	// before they sleep: requests then use every worker at once instead of
	// waiting for an idle core to wake, at the price of up to Workers-1
	// busy (low-priority) cores while requests keep coming. Default:
	// DefaultHelperSpin (10ms); negative: the helpers sleep at once.
	HelperSpin time.Duration
	// NoSpare frees the memory of a model once it is replaced. By
	// default the server keeps a second model's memory resident, the
	// spare: the model it replaced, or, until there is one, memory it
	// reserves in the background once the first model is served
	// (mmoe.Model.Spare). A new version of the same sizes is read into
	// the spare's memory, a delta applied onto it. A reload then writes
	// memory that is already the process's instead of faulting in as much
	// new memory as the model takes: on a virtual machine that backs
	// fresh pages lazily that was most of a load's time (0.7 of 0.8 s
	// for the 171 MB std model), taken from the requests served
	// meanwhile. The price is the spare's memory between reloads: a
	// server holds two models, as it does anyway while it loads one.
	// Default: false (keep a spare).
	NoSpare bool
	// Logger receives reloads, refusals and server errors.
	// Default: slog.Default().
	Logger *slog.Logger
	// ImpressionLog, when set, logs every returned result of a score
	// request to a Kafka topic as an impression of the three-topic
	// stream, and gives each result an impression_id for the client's
	// click and conversion events (docs/streaming.md). Logging is
	// asynchronous and bounded: it never delays or fails a request.
	// Default: nil, off.
	ImpressionLog *ImpressionLogConfig
}

// Validate reports whether the configuration is usable.
func (c ServerConfig) Validate() error {
	if c.Models == "" {
		return errors.New("serving: ServerConfig.Models is empty: want a bundle root or directory")
	}
	if c.MaxBodyBytes < 0 || c.MaxInFlight < 0 || c.MaxQueue < 0 || c.QueueWait < 0 {
		return fmt.Errorf("serving: ServerConfig: negative limit (MaxBodyBytes %d, MaxInFlight %d, MaxQueue %d, QueueWait %v)",
			c.MaxBodyBytes, c.MaxInFlight, c.MaxQueue, c.QueueWait)
	}
	if c.ReadHeaderTimeout < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0 || c.IdleTimeout < 0 || c.ShutdownTimeout < 0 || c.BodyTimeout < 0 || c.FetchTimeout < 0 {
		return errors.New("serving: ServerConfig: negative timeout")
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("serving: ServerConfig: %w", err)
	}
	if c.ImpressionLog != nil {
		if err := c.ImpressionLog.Validate(); err != nil {
			return err
		}
	}
	return c.Scorer.Validate()
}

func (c ServerConfig) withDefaults() ServerConfig {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = DefaultBodyTimeout
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = defaultInFlight()
	}
	if c.MaxQueue == 0 {
		c.MaxQueue = 4 * c.MaxInFlight
	}
	if c.QueueWait == 0 {
		c.QueueWait = DefaultQueueWait
	}
	if c.Poll == 0 {
		c.Poll = DefaultPoll
	}
	if c.FetchTimeout == 0 {
		c.FetchTimeout = DefaultFetchTimeout
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = 5 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 10 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 120 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.HelperSpin == 0 {
		c.HelperSpin = DefaultHelperSpin
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Scorer.MaxObjectBytes == 0 || int64(c.Scorer.MaxObjectBytes) > c.MaxBodyBytes {
		c.Scorer.MaxObjectBytes = int(c.MaxBodyBytes)
	}
	return c
}

// served is the model being served.
type served struct {
	sc *Scorer
	// refs counts the score requests using sc (acquireServed); pinned
	// says that sc was handed out (Server.Scorer) and may be used at any
	// time. A served entry neither counts nor pins once it is replaced
	// may lend its model to the next delta, written in place
	// (bundle.Base.Writable).
	refs   atomic.Int64
	pinned atomic.Bool
	// unknownIDs are the onestone_exact_unknown_ids_total counters of
	// sc's exact tables, by table.
	unknownIDs []prometheus.Counter
}

// RefusedVersion is a version the server refused, in GET /v1/model.
type RefusedVersion struct {
	Version string `json:"version"`
	Dir     string `json:"dir"`
	// Reason classifies the error, as the onestone_model_refused metric's
	// label does: chain, checksum, too_large, weights, sample, invalid,
	// panic or io (see refusalReason).
	Reason string `json:"reason"`
	Error  string `json:"error"`
	// Since is when it was first refused, Attempts how many times it was
	// tried (once, and again each time its files changed).
	Since    time.Time `json:"since"`
	Attempts int       `json:"attempts"`

	print string // the directory's fingerprint when last refused
	cause error  // the error
}

// Server is the HTTP scoring service: POST /v1/score, GET /v1/model,
// /healthz, /readyz, /metrics and, with a token, POST /v1/admin/reload.
//
// It serves the newest version under its root that passes LoadBundle's
// checks, and swaps in newer ones as they appear, atomically: a request
// finishes on the model it started with. A version that fails is logged,
// counted and remembered with the fingerprint of its files (names,
// sizes, modification times): it is tried again when they change (a copy
// that was half done when first seen), not before. Meanwhile the newest
// valid version keeps serving: the one served before, or, at start-up or
// when the served one is removed, the newest older one that passes.
// Removing the newest version thus rolls back to the one before. Methods
// are safe for concurrent use.
type Server struct {
	cfg ServerConfig
	// models is the local root or bundle the candidates come from:
	// Models, or the cache of remote.
	models  string
	remote  *mirror // nil unless Models is an object store
	log     *slog.Logger
	cur     atomic.Pointer[served]
	mux     *http.ServeMux
	handler http.Handler
	sem     chan struct{}
	waiting atomic.Int64
	reading atomic.Int64 // score requests whose body is being read
	bufs    sync.Pool

	reloadMu sync.Mutex
	// spare is the entry served before cur, guarded by reloadMu: once no
	// request uses it, a delta whose chain passes through its version is
	// applied onto its model in place instead of onto a copy of cur's,
	// and a version of the same sizes is read into its storage.
	spare *served
	// reserved is memory for the next model while there is no spare
	// (unless ServerConfig.NoSpare), guarded by reloadMu; wantSpare asks
	// spareLoop to reserve it (askSpare).
	reserved  *mmoe.Model
	wantSpare chan struct{}
	refused   map[string]*RefusedVersion // by bundle dir
	// state is what /v1/model shows of the refusals: the refused versions
	// present, newest first, and how many versions are newer than the one
	// served.
	state atomic.Pointer[refusalState]

	reg         *prometheus.Registry
	mRequests   *prometheus.CounterVec
	mLatency    *prometheus.HistogramVec
	mCands      prometheus.Counter
	mUnknown    prometheus.Counter
	mInFlight   prometheus.Gauge
	mReading    prometheus.Gauge
	mModel      *prometheus.GaugeVec
	mReloads    prometheus.Counter
	mRefused    prometheus.Counter
	mRefusedNow *prometheus.GaugeVec
	mBehind     prometheus.Gauge
	mOverload   *prometheus.CounterVec
	mLoadedAt   prometheus.Gauge
	mExact      *prometheus.GaugeVec
	mUnknownIDs *prometheus.CounterVec
	mChain      prometheus.Counter
	mSpares     prometheus.Counter
	listenAddr  atomic.Value   // string
	imp         *impressionLog // nil unless ImpressionLog is set
}

// refusalState is the refusals /v1/model shows.
type refusalState struct {
	refused []RefusedVersion
	behind  int
}

// NewServer returns a server; it loads nothing until Run or Reload.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		sem:       make(chan struct{}, cfg.MaxInFlight),
		refused:   map[string]*RefusedVersion{},
		wantSpare: make(chan struct{}, 1),
		reg:       prometheus.NewRegistry(),
	}
	s.models = cfg.Models
	if bundle.IsURL(cfg.Models) {
		m, err := newMirror(cfg)
		if err != nil {
			return nil, err
		}
		s.remote, s.models = m, m.cache.Root()
	}
	s.state.Store(&refusalState{})
	s.bufs.New = func() any { return new(reqBuf) }
	s.mRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onestone_http_requests_total", Help: "HTTP requests by route and status code.",
	}, []string{"path", "code"})
	s.mLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "onestone_http_request_duration_seconds", Help: "HTTP request latency by route.",
		Buckets: []float64{.0005, .001, .002, .003, .005, .0075, .01, .015, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"path"})
	s.mCands = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "onestone_candidates_scored_total", Help: "Candidates scored.",
	})
	s.mUnknown = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "onestone_score_unknown_keys_total", Help: "Keys of scored requests' contexts and candidates that the model does not know, skipped (serve --strict refuses them instead).",
	})
	s.mInFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "onestone_score_in_flight", Help: "Score requests being worked on.",
	})
	s.mReading = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "onestone_score_reading", Help: "Score requests whose body is being received (they hold no in-flight slot).",
	})
	s.mModel = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "onestone_model_info", Help: "The model being served (value 1), labelled by version, whether its files were verified by checksums (verified: true or false), and how its sample was checked (sample_check: exact, tolerance or none).",
	}, []string{"version", "verified", "sample_check"})
	s.mReloads = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "onestone_model_reloads_total", Help: "Bundles loaded and swapped in (the first load included).",
	})
	s.mRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "onestone_model_refused_total", Help: "Bundle loads refused by validation (a version is tried again when its files change).",
	})
	s.mRefusedNow = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "onestone_model_refused", Help: "Versions present and refused as they are now (value 1), labelled by version and reason (chain, checksum, too_large, weights, sample, invalid, panic, io).",
	}, []string{"version", "reason"})
	s.mBehind = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "onestone_model_versions_behind", Help: "Complete versions newer than the one served (all refused); 0 when the newest is served.",
	})
	s.mOverload = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onestone_score_rejected_total", Help: "Score requests refused for overload, by reason (queue_full, queue_timeout).",
	}, []string{"reason"})
	s.mLoadedAt = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "onestone_model_loaded_timestamp_seconds", Help: "When the served model was swapped in (Unix time).",
	})
	s.mExact = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "onestone_exact_table", Help: "The exact tables of the model served, as trained up to its bundle (serving never changes them), by field and figure: rows (ids with a row of their own), capacity, waiting (ids seen but not admitted), admissions, evictions (lru/lfu), expired (ttl), rejected (admissions refused by a full table), truncated (ids cut at max_id_bytes) and map_bytes (the id map's memory).",
	}, []string{"field", "figure"})
	s.mUnknownIDs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onestone_exact_unknown_ids_total", Help: "Ids of exact fields in scored requests that the served model's id maps do not know, scored with the field's fallback (shared) row, by field: an id counts once per context or candidate it appears in.",
	}, []string{"field"})
	s.mChain = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "onestone_model_delta_chain_refused_total", Help: "Delta versions refused because their chain to a snapshot is broken (a parent missing, corrupt or not the one the delta was written against); the model served keeps serving until a snapshot loads.",
	})
	s.mSpares = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "onestone_model_spare_reservations_total", Help: "Spare models' memory reserved in the background for the next version to be read into (a whole model's pages each; see serve --spare).",
	})
	if s.remote != nil {
		s.remote.onChain = s.mChain.Inc
	}
	s.reg.MustRegister(s.mUnknownIDs, s.mChain, s.mSpares)
	s.reg.MustRegister(s.mRequests, s.mLatency, s.mCands, s.mUnknown, s.mInFlight, s.mReading, s.mModel, s.mReloads, s.mRefused, s.mRefusedNow, s.mBehind, s.mOverload, s.mLoadedAt, s.mExact,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if cfg.ImpressionLog != nil {
		var err error
		if s.imp, err = newImpressionLog(*cfg.ImpressionLog, s.log, s.reg); err != nil {
			return nil, err
		}
	}

	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /v1/score", s.handleScore)
	s.mux.HandleFunc("GET /v1/model", s.handleModel)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	s.mux.HandleFunc("GET /readyz", s.handleReady)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	if cfg.AdminToken != "" {
		s.mux.HandleFunc("POST /v1/admin/reload", s.handleReload)
	}
	s.handler = s.instrument(s.mux.ServeHTTP)
	return s, nil
}

// Handler returns the server's HTTP handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// Registry returns the server's Prometheus registry.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Scorer returns the scorer being served, or nil before the first load.
func (s *Server) Scorer() *Scorer {
	for {
		c := s.cur.Load()
		if c == nil {
			return nil
		}
		c.pinned.Store(true) // its model is never written
		// Replaced between the two steps, it may have been handed to a
		// load as the spare before the pin: take the new one.
		if s.cur.Load() == c {
			return c.sc
		}
	}
}

// acquireServed returns the entry served, counted in its refs until
// release; nil when none is. An entry replaced meanwhile is not
// returned: once replaced, refs only moves back and forth here without
// the entry being used, so that idle holds.
func (s *Server) acquireServed() *served {
	for {
		cur := s.cur.Load()
		if cur == nil {
			return nil
		}
		cur.refs.Add(1)
		if s.cur.Load() == cur {
			return cur
		}
		cur.refs.Add(-1)
	}
}

// release ends a use begun by acquireServed.
func (c *served) release() { c.refs.Add(-1) }

// idle reports whether no request uses c's model and nobody holds its
// scorer: then, once c is no longer served, its model may be written.
func (c *served) idle() bool { return c.refs.Load() == 0 && !c.pinned.Load() }

// Addr returns the address Run listens on, once it does ("" before).
func (s *Server) Addr() string {
	a, _ := s.listenAddr.Load().(string)
	return a
}

// statusWriter records the status code of a response.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument counts requests by route and status code and times them. The
// route label is the path of the mux pattern that matched, or "other" (a
// 404 or 405), so the label set stays bounded.
func (s *Server) instrument(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		path := "other"
		if _, p, ok := strings.Cut(r.Pattern, " "); ok {
			path = p
		}
		s.mRequests.WithLabelValues(path, codeString(sw.code)).Inc()
		s.mLatency.WithLabelValues(path).Observe(time.Since(start).Seconds())
	}
}

func codeString(c int) string {
	switch c {
	case 200:
		return "200"
	case 400:
		return "400"
	case 404:
		return "404"
	case 413:
		return "413"
	case 429:
		return "429"
	case 503:
		return "503"
	}
	return strconv.Itoa(c)
}

// reqBuf is a pooled request body and response buffer.
type reqBuf struct {
	body bytes.Buffer
	out  []byte
}

// errorBody is the JSON error document of every 4xx/5xx answer.
type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func writeError(w http.ResponseWriter, code int, field, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	b, _ := json.Marshal(errorBody{Error: msg, Field: field})
	w.Write(append(b, '\n'))
}

// acquire takes an in-flight slot, waiting at most QueueWait behind at
// most MaxQueue others. It returns 0 on success or the status to answer.
func (s *Server) acquire(ctx context.Context) int {
	select {
	case s.sem <- struct{}{}:
		return 0
	default:
	}
	if s.waiting.Add(1) > int64(s.cfg.MaxQueue) {
		s.waiting.Add(-1)
		s.mOverload.WithLabelValues("queue_full").Inc()
		return http.StatusTooManyRequests
	}
	defer s.waiting.Add(-1)
	t := time.NewTimer(s.cfg.QueueWait)
	defer t.Stop()
	select {
	case s.sem <- struct{}{}:
		return 0
	case <-t.C:
		s.mOverload.WithLabelValues("queue_timeout").Inc()
		return http.StatusServiceUnavailable
	case <-ctx.Done():
		return http.StatusServiceUnavailable
	}
}

// bodyPrealloc caps the buffer grown up front for a declared
// Content-Length: beyond it the buffer grows only as bytes arrive, so a
// client that announces a large body and sends nothing holds no memory.
const bodyPrealloc = 64 << 10

// handleScore reads the body, within its size limit and BodyTimeout,
// before it takes an in-flight slot: a slow client holds a goroutine and
// the bytes it has sent, never a slot that a request ready to be scored
// needs.
func (s *Server) handleScore(w http.ResponseWriter, r *http.Request) {
	buf := s.bufs.Get().(*reqBuf)
	defer func() {
		if buf.body.Cap() <= int(s.cfg.MaxBodyBytes)+bytes.MinRead {
			s.bufs.Put(buf)
		}
	}()
	if code, msg := s.readBody(w, r, &buf.body); code != 0 {
		writeError(w, code, "", msg)
		return
	}

	if code := s.acquire(r.Context()); code != 0 {
		w.Header().Set("Retry-After", "1")
		writeError(w, code, "", "server overloaded: too many requests in flight, retry later")
		return
	}
	defer func() { <-s.sem }()
	s.mInFlight.Inc()
	defer s.mInFlight.Dec()

	cur := s.acquireServed()
	if cur == nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "", "no model loaded yet")
		return
	}
	defer cur.release()
	resp, err := cur.sc.ScoreBody(r.Context(), buf.body.Bytes())
	if err != nil {
		var re *RequestError
		switch {
		case errors.As(err, &re):
			code := http.StatusBadRequest
			if errors.Is(err, ErrTooLarge) {
				code = http.StatusRequestEntityTooLarge
			}
			writeError(w, code, re.Field, re.Error())
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			writeError(w, http.StatusServiceUnavailable, "", "request cancelled: "+err.Error())
		default:
			s.log.Error("serving: score failed", "version", cur.sc.b.Manifest.Version, "err", err)
			writeError(w, http.StatusInternalServerError, "", err.Error())
		}
		return
	}
	s.mCands.Add(float64(resp.Scored))
	if resp.UnknownKeys > 0 {
		s.mUnknown.Add(float64(resp.UnknownKeys))
	}
	for j, c := range cur.unknownIDs {
		if k := resp.UnknownIDs[j]; k > 0 {
			c.Add(float64(k))
		}
	}
	if s.imp != nil {
		s.imp.add(resp, time.Now())
	}
	buf.out = resp.AppendJSON(buf.out[:0])
	buf.out = append(buf.out, '\n')
	resp.Release()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(buf.out)))
	w.WriteHeader(http.StatusOK)
	w.Write(buf.out)
}

// readBody reads the request body into dst, at most MaxBodyBytes and
// within BodyTimeout. It returns 0, or the status and message to answer.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, dst *bytes.Buffer) (int, string) {
	s.reading.Add(1)
	s.mReading.Inc()
	defer func() {
		s.mReading.Dec()
		s.reading.Add(-1)
	}()
	dst.Reset()
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("request body of %d bytes exceeds the limit of %d bytes", r.ContentLength, s.cfg.MaxBodyBytes)
	}
	if r.ContentLength > 0 {
		dst.Grow(int(min(r.ContentLength, bodyPrealloc)) + 1)
	}
	// The deadline replaces the server's ReadTimeout for the body; the
	// server sets a fresh one for the connection's next request.
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(s.cfg.BodyTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return http.StatusInternalServerError, "setting the body deadline: " + err.Error()
	}
	_, err := dst.ReadFrom(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err == nil {
		return 0, ""
	}
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds the limit of %d bytes", mbe.Limit)
	case errors.As(err, &ne) && ne.Timeout():
		return http.StatusRequestTimeout, fmt.Sprintf("request body not received within %v (%d bytes arrived)", s.cfg.BodyTimeout, dst.Len())
	}
	return http.StatusBadRequest, "reading the request body: " + err.Error()
}

// ModelInfo is the document of GET /v1/model: the served bundle's version,
// directory, creation time, tasks (with defaults filled in), objectives,
// the rank formula in effect, the feature spec's YAML, the evaluation
// metrics and data position recorded by the trainer, its step and example
// counts, the effective model configuration, and the precisions of the
// served and of the trained products; how it was checked
// (checksums verified, the sample compared exactly or within tolerance,
// the arithmetic that wrote the sample and this build's); and the
// versions refused (newest first) with how many of them are newer than
// the one served.
type ModelInfo struct {
	Version      string           `json:"version"`
	Dir          string           `json:"dir"`
	Created      time.Time        `json:"created"`
	Tasks        any              `json:"tasks"`
	Objectives   []string         `json:"objectives"`
	Rank         string           `json:"rank"`
	Spec         string           `json:"spec"`
	Metrics      json.RawMessage  `json:"metrics,omitempty"`
	Position     json.RawMessage  `json:"position,omitempty"`
	Step         int64            `json:"step"`
	Examples     int64            `json:"examples"`
	Model        any              `json:"model"`
	Verified     bool             `json:"verified"`
	SampleCheck  string           `json:"sample_check"`
	SampleKernel string           `json:"sample_kernel,omitempty"`
	Kernel       string           `json:"kernel"`
	Behind       int              `json:"versions_behind"`
	Refused      []RefusedVersion `json:"refused"`
	// Precision is the precision the server's products run in, and
	// BundlePrecision the one the model was trained in.
	Precision       string `json:"precision"`
	BundlePrecision string `json:"bundle_precision"`
	// ExactTables are the figures of the model's exact tables (rows in
	// use, capacity, ids waiting, admissions, evictions, map memory ...),
	// as training left them in the bundle: serving never changes them.
	// Absent without exact fields.
	ExactTables []features.IDTableStats `json:"exact_tables,omitempty"`
}

func modelInfo(sc *Scorer, st *refusalState) []byte {
	m := sc.b.Manifest
	rank := sc.formula.src
	if rank == "" {
		rank = sc.objectives[0]
	}
	info := ModelInfo{
		Version: m.Version, Dir: sc.b.Dir, Created: m.Created, Tasks: sc.b.Tasks.Configs(),
		Objectives: sc.objectives, Rank: rank, Spec: m.Spec, Metrics: m.Metrics, Position: m.Position,
		Step: m.Step, Examples: m.Examples, Model: sc.b.Model.Config(),
		Verified: m.Verified(), SampleCheck: sc.b.SampleCheck, SampleKernel: m.SampleKernel, Kernel: Kernel(),
		Behind: st.behind, Refused: st.refused,
		Precision: sc.prec.String(), BundlePrecision: sc.b.Precision.String(),
		ExactTables: sc.b.Transformer.IDs().Stats(),
	}
	if info.Refused == nil {
		info.Refused = []RefusedVersion{}
	}
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil { // raw metrics that are not JSON: leave them out
		info.Metrics, info.Position = nil, nil
		b, _ = json.MarshalIndent(info, "", "  ")
	}
	return append(b, '\n')
}

func (s *Server) handleModel(w http.ResponseWriter, r *http.Request) {
	cur, st := s.cur.Load(), s.state.Load()
	w.Header().Set("Content-Type", "application/json")
	if cur == nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		refused := st.refused
		if refused == nil {
			refused = []RefusedVersion{}
		}
		b, _ := json.MarshalIndent(struct {
			Error   string           `json:"error"`
			Refused []RefusedVersion `json:"refused"`
		}{"no model loaded yet", refused}, "", "  ")
		w.Write(append(b, '\n'))
		return
	}
	w.Write(modelInfo(cur.sc, st))
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	cur := s.cur.Load()
	if cur == nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "no model loaded\n")
		return
	}
	io.WriteString(w, "ready "+cur.sc.b.Manifest.Version+"\n")
}

func (s *Server) handleReload(w http.ResponseWriter, r *http.Request) {
	const prefix = "Bearer "
	auth := r.Header.Get("Authorization")
	if len(auth) < len(prefix) || auth[:len(prefix)] != prefix ||
		subtle.ConstantTimeCompare([]byte(auth[len(prefix):]), []byte(s.cfg.AdminToken)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="onestone admin"`)
		writeError(w, http.StatusUnauthorized, "Authorization", "missing or wrong admin token")
		return
	}
	version, changed, err := s.reload(r.Context(), true)
	if err != nil && !changed {
		code := http.StatusInternalServerError
		if errors.Is(err, ErrBundle) || errors.Is(err, bundle.ErrNoBundle) {
			code = http.StatusConflict
		}
		writeError(w, code, "", err.Error())
		return
	}
	doc := map[string]any{"version": version, "changed": changed}
	if err != nil {
		doc["newest_refused"] = err.Error()
	}
	w.Header().Set("Content-Type", "application/json")
	b, _ := json.Marshal(doc)
	w.Write(append(b, '\n'))
}

// Reload looks at Models now, retrying every version refused before
// whether or not its files changed, and serves the newest version that
// passes LoadBundle's checks (keeping the one served when no newer one
// does). It returns the version served afterwards and whether it changed,
// and, when the newest complete version is not the one served, why it was
// refused (also when an older version was swapped in). On error the
// previous model (if any) keeps serving.
func (s *Server) Reload(ctx context.Context) (version string, changed bool, err error) {
	return s.reload(ctx, true)
}

// candidates lists the bundle directories the server may serve, newest
// first: Models itself when it is a bundle, else its complete versions.
func (s *Server) candidates(ctx context.Context) ([]string, error) {
	if _, err := os.Stat(filepath.Join(s.models, bundle.ManifestFile)); err == nil {
		dir, err := bundle.Resolve(s.models)
		if err != nil {
			return nil, err
		}
		return []string{dir}, nil
	}
	d := bundle.NewDir(s.models)
	vs, err := d.Versions(ctx)
	if err != nil {
		return nil, err
	}
	if len(vs) == 0 {
		return nil, fmt.Errorf("%w under %s", bundle.ErrNoBundle, s.cfg.Models)
	}
	dirs := make([]string, len(vs))
	for i, v := range vs {
		dirs[len(vs)-1-i] = d.Path(v)
	}
	return dirs, nil
}

// reload serves the newest candidate that loads. Candidates refused before
// are skipped while their files are unchanged, unless retry.
func (s *Server) reload(ctx context.Context, retry bool) (version string, changed bool, err error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	// After a swap, or a refused version that took the spare.
	defer s.askSpare()
	cur := s.cur.Load()
	if cur != nil {
		version = cur.sc.b.Manifest.Version
	}
	if s.remote != nil {
		served := ""
		if cur != nil {
			served = cur.sc.b.Dir
		}
		// On failure the cache keeps what it holds (sync logs it).
		s.remote.sync(ctx, served, retry)
	}
	dirs, err := s.candidates(ctx)
	if err != nil {
		return version, false, err
	}
	defer s.publishState(dirs)
	var newestErr error
	for i, dir := range dirs {
		if cur != nil && cur.sc.b.Dir == dir {
			return version, false, newestErr
		}
		if err := ctx.Err(); err != nil {
			return version, false, err
		}
		fprint := fingerprint(dir)
		if r, ok := s.refused[dir]; ok && !retry && r.print == fprint {
			if i == 0 {
				newestErr = r.cause
			}
			continue
		}
		start := time.Now()
		var base, spare *Bundle
		if cur != nil {
			base = cur.sc.b // a delta after it applies to a copy of its model
		}
		if sp := s.spare; sp != nil && sp != cur && sp.idle() {
			spare = sp.sc.b // or to this model itself, when it is on the chain
		} else if s.reserved != nil {
			spare = &Bundle{Model: s.reserved} // storage only
		}
		sc, err := s.load(dir, base, spare)
		if spare != nil {
			// Written, taken by the new model, or in an unknown state.
			if spare.Manifest == nil {
				s.reserved = nil
			} else {
				s.spare = nil
			}
		}
		if err != nil {
			s.refuse(dir, fprint, err, version)
			if i == 0 {
				newestErr = err
			}
			continue
		}
		delete(s.refused, dir)
		s.cur.Store(&served{sc: sc, unknownIDs: s.unknownIDCounters(sc.b)})
		// The model replaced may take the next delta in place: kept while
		// the versions served are deltas (a stream's), whose chains pass
		// through it, and, unless NoSpare, the next version's weights.
		s.spare = nil
		if sc.b.Manifest.IsDelta() || !s.cfg.NoSpare {
			s.spare = cur
		}
		s.mReloads.Inc()
		s.mModel.Reset()
		s.mModel.WithLabelValues(sc.b.Manifest.Version, strconv.FormatBool(sc.b.Manifest.Verified()), sc.b.SampleCheck).Set(1)
		s.mLoadedAt.SetToCurrentTime()
		s.setExactMetrics(sc.b)
		s.log.Info("serving: model loaded", "version", sc.b.Manifest.Version, "dir", dir, "previous", version,
			"verified", sc.b.Manifest.Verified(), "sample_check", sc.b.SampleCheck, "precision", sc.prec.String(), "newer_refused", i,
			"took", time.Since(start).Round(time.Millisecond))
		if !sc.b.Manifest.Verified() {
			s.log.Warn("serving: the bundle has no checksums (written before they existed): its files were not verified", "version", sc.b.Manifest.Version)
		}
		return sc.b.Manifest.Version, true, newestErr
	}
	return version, false, newestErr
}

// askSpare asks spareLoop for memory for the next model when it is
// wanted (spareWanted). The caller holds reloadMu.
func (s *Server) askSpare() {
	if !s.spareWanted() {
		return
	}
	select {
	case s.wantSpare <- struct{}{}:
	default: // asked already
	}
}

// refuse records that dir failed to load, with its fingerprint.
func (s *Server) refuse(dir, fprint string, err error, serving string) {
	r := s.refused[dir]
	if r == nil {
		r = &RefusedVersion{Version: filepath.Base(dir), Dir: dir, Since: time.Now().UTC()}
		s.refused[dir] = r
	}
	r.Reason, r.Error, r.print, r.cause = refusalReason(err), err.Error(), fprint, err
	r.Attempts++
	s.mRefused.Inc()
	if errors.Is(err, bundle.ErrChain) {
		s.mChain.Inc()
	}
	if serving == "" {
		serving = "(none)"
	}
	s.log.Error("serving: bundle refused; a valid version keeps serving", "dir", dir, "reason", r.Reason,
		"attempt", r.Attempts, "serving", serving, "err", err)
}

// unknownIDCounters returns the onestone_exact_unknown_ids_total
// counters of b's exact tables, created at 0 so that a field shows before
// its first unknown id. A counter lives on across versions: it counts
// for the server's lifetime.
func (s *Server) unknownIDCounters(b *Bundle) []prometheus.Counter {
	ids := b.Transformer.IDs()
	cs := make([]prometheus.Counter, ids.Len())
	for i := range cs {
		cs[i] = s.mUnknownIDs.WithLabelValues(ids.Table(i).Name())
	}
	return cs
}

// setExactMetrics publishes the figures of b's exact tables.
func (s *Server) setExactMetrics(b *Bundle) {
	s.mExact.Reset()
	for _, st := range b.Transformer.IDs().Stats() {
		for _, f := range []struct {
			name string
			v    int64
		}{
			{"rows", int64(st.Rows)}, {"capacity", int64(st.Capacity)}, {"waiting", int64(st.Waiting)},
			{"admissions", st.Admissions}, {"evictions", st.Evictions}, {"expired", st.Expired},
			{"rejected", st.Rejected}, {"truncated", st.Truncated}, {"map_bytes", st.MapBytes},
		} {
			s.mExact.WithLabelValues(st.Field, f.name).Set(float64(f.v))
		}
	}
}

// publishState forgets the refusals of directories no longer there and
// publishes the rest, with how far behind the newest the served version
// is, to /v1/model and the metrics.
func (s *Server) publishState(dirs []string) {
	st := &refusalState{}
	cur := s.cur.Load()
	present := map[string]bool{}
	for i, dir := range dirs {
		present[dir] = true
		if cur != nil && cur.sc.b.Dir == dir {
			st.behind = i
		}
		if r, ok := s.refused[dir]; ok {
			st.refused = append(st.refused, *r)
		}
	}
	if cur == nil {
		st.behind = len(dirs)
	}
	for dir := range s.refused {
		if !present[dir] {
			delete(s.refused, dir)
		}
	}
	s.mRefusedNow.Reset()
	for _, r := range st.refused {
		s.mRefusedNow.WithLabelValues(r.Version, r.Reason).Set(1)
	}
	s.mBehind.Set(float64(st.behind))
	s.state.Store(st)
}

// fingerprint names what a directory holds: each entry's name, size,
// modification time and mode. A copy still under way changes it; a
// finished one does not.
func fingerprint(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "error: " + err.Error()
	}
	var b strings.Builder
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			fmt.Fprintf(&b, "%s ?\n", e.Name())
			continue
		}
		fmt.Fprintf(&b, "%s %d %d %v\n", e.Name(), info.Size(), info.ModTime().UnixNano(), info.Mode())
	}
	return b.String()
}

// refusalReason classifies why a bundle was refused, for the
// onestone_model_refused metric: chain (a delta whose chain to its
// snapshot is broken), checksum (a file does not match its
// checksum: corrupt, truncated or still being copied), too_large (over
// the memory budget), weights (the weights file does not match the
// model configuration), sample (the sample's scores are not
// reproduced), panic, invalid (any other problem of the contents: the
// manifest, spec, statistics, tasks, configuration) or io (the files
// could not be read).
func refusalReason(err error) string {
	switch {
	case errors.Is(err, bundle.ErrChain):
		return "chain"
	case errors.Is(err, bundle.ErrCorrupt):
		return "checksum"
	case errors.Is(err, bundle.ErrTooLarge):
		return "too_large"
	case errors.Is(err, errPanic):
		return "panic"
	case errors.Is(err, mmoe.ErrFormat):
		return "weights"
	case errors.Is(err, ErrSample):
		return "sample"
	case errors.Is(err, ErrBundle):
		return "invalid"
	}
	return "io"
}

// spareLoop reserves the memory of a spare model (reserved) each time
// reload asks (wantSpare): the served model's sizes, faulted in by
// mmoe.Model.Spare in the background, as a load is. It returns when ctx
// ends.
func (s *Server) spareLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wantSpare:
		}
		// A reload asks again while a reservation is under way (reserved
		// is set only at its end): the second ask finds memory already
		// there, or a spare a swap left, and reserves nothing.
		s.reloadMu.Lock()
		want := s.spareWanted()
		s.reloadMu.Unlock()
		if !want {
			continue
		}
		cur := s.cur.Load()
		type reserved struct {
			m   *mmoe.Model
			err error
		}
		start := time.Now()
		r := inBackground(func() reserved {
			if spareHook != nil {
				spareHook()
			}
			m, err := cur.sc.b.Model.Spare(ctx)
			return reserved{m, err}
		})
		if r.err != nil {
			if ctx.Err() == nil {
				s.log.Warn("serving: reserving a spare model's memory", "err", r.err)
			}
			continue
		}
		s.reloadMu.Lock()
		kept := s.spareWanted()
		if kept {
			s.reserved = r.m
		}
		s.reloadMu.Unlock()
		if kept { // else a swap left a spare meanwhile: r.m is dropped
			s.mSpares.Inc()
			s.log.Info("serving: spare model memory reserved", "version", cur.sc.b.Manifest.Version,
				"took", time.Since(start).Round(time.Millisecond))
		}
	}
}

// spareWanted reports whether memory for the next model should be
// reserved: a model is served and there is neither a spare nor reserved
// memory, unless NoSpare. The caller holds reloadMu.
func (s *Server) spareWanted() bool {
	return !s.cfg.NoSpare && s.spare == nil && s.reserved == nil && s.cur.Load() != nil
}

// spareHook, when set (by tests only), runs at the start of each
// reservation of spareLoop, on its background thread.
var spareHook func()

// load loads the bundle in dir and a warm scorer for it, in the
// background (inBackground): requests keep their cores meanwhile. A
// delta applies onto a copy of base's model, or onto spare's in place
// (loadBundle).
func (s *Server) load(dir string, base, spare *Bundle) (*Scorer, error) {
	type loaded struct {
		sc  *Scorer
		err error
	}
	r := inBackground(func() loaded {
		sc, err := s.loadNow(dir, base, spare)
		return loaded{sc, err}
	})
	return r.sc, r.err
}

func (s *Server) loadNow(dir string, base, spare *Bundle) (sc *Scorer, err error) {
	defer func() {
		if r := recover(); r != nil {
			sc, err = nil, fmt.Errorf("serving: bundle %s: %w: %w: %v\n%s", dir, ErrBundle, errPanic, r, debug.Stack())
		}
	}()
	b, err := loadBundle(dir, s.cfg.Limits, base, spare)
	if err != nil {
		return nil, err
	}
	sc, err = NewScorer(b, s.cfg.Scorer)
	if err != nil {
		return nil, fmt.Errorf("serving: bundle %s: %w", filepath.Base(dir), err)
	}
	// Warm the pool before the swap: the first requests should pay
	// neither for workspaces and buffers nor for weights out of cache.
	sc.warm(min(s.cfg.MaxInFlight, 4))
	return sc, nil
}

// Run loads the newest bundle, listens on Addr and serves until ctx ends,
// then shuts down gracefully: it stops accepting, lets in-flight requests
// finish (up to ShutdownTimeout) and returns nil. If no valid bundle is
// there at first the server still starts (readyz answers 503) and the
// poller keeps looking.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("serving: listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened; it closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.listenAddr.Store(ln.Addr().String())
	if s.remote != nil {
		defer s.remote.close()
	}
	if s.cfg.Scorer.Workers > 1 && s.cfg.Scorer.Helpers == nil {
		// Before the first load: every Scorer of this run shares them.
		h := NewHelpers(s.cfg.Scorer.Workers-1, s.cfg.HelperSpin)
		s.cfg.Scorer.Helpers = h
		defer h.Close() // after the drain below
		if h.polling > 0 {
			how := "at nice 19, working at the normal priority"
			if !h.Renice() {
				how = "at the normal priority, yielding their core between polls (raising a thread's priority back needs CAP_SYS_NICE or RLIMIT_NICE 20)"
			}
			s.log.Info("serving: helper workers poll "+how, "helpers", s.cfg.Scorer.Workers-1, "spin", s.cfg.HelperSpin, "renice", h.Renice())
		}
	}
	if h := s.cfg.Scorer.Helpers; h != nil {
		// Their tasks' outcomes; a caller's Helpers may already be there.
		if err := s.reg.Register(h); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return fmt.Errorf("serving: helper metrics: %w", err)
		}
	}
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	var wg sync.WaitGroup
	if !s.cfg.NoSpare {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.spareLoop(pollCtx)
		}()
	}
	if _, _, err := s.reload(ctx, false); err != nil {
		s.log.Warn("serving: no model to serve yet", "models", s.cfg.Models, "err", err)
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	if s.cfg.Poll > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(s.cfg.Poll)
			defer t.Stop()
			for {
				select {
				case <-pollCtx.Done():
					return
				case <-t.C:
					s.reload(pollCtx, false)
				}
			}
		}()
	}
	if s.imp != nil {
		s.imp.start()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("serving: listening", "addr", ln.Addr().String(), "models", s.cfg.Models)
	select {
	case err := <-errc:
		stopPoll()
		wg.Wait()
		if s.imp != nil {
			s.imp.close(context.Background())
		}
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	stopPoll()
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	wg.Wait()
	if s.imp != nil {
		// The impressions of the requests served are written within
		// what is left of the shutdown timeout.
		if ierr := s.imp.close(sctx); ierr != nil {
			s.log.Warn("serving: closing the impression log", "err", ierr)
		}
	}
	if err != nil {
		return fmt.Errorf("serving: shutdown: %w", err)
	}
	s.log.Info("serving: stopped")
	return nil
}
