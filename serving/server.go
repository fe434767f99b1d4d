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
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/onestone/onestone/bundle"
)

// Server defaults.
const (
	DefaultAddr            = "127.0.0.1:8080"
	DefaultPoll            = 2 * time.Second
	DefaultQueueWait       = 100 * time.Millisecond
	DefaultShutdownTimeout = 30 * time.Second
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
	// newer ones are picked up) or one bundle directory. Required.
	Models string
	// Scorer configures each loaded model's Scorer (rank formula, limits).
	Scorer ScorerConfig
	// MaxBodyBytes rejects larger request bodies with 413.
	// Default: DefaultMaxBodyBytes (4 MiB).
	MaxBodyBytes int64
	// MaxInFlight bounds the score requests being worked on at once.
	// Default: 2 x GOMAXPROCS.
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
	// Poll is how often Models is checked for a newer bundle. Default:
	// DefaultPoll (2s); negative disables polling.
	Poll time.Duration
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
	// Logger receives reloads, refusals and server errors.
	// Default: slog.Default().
	Logger *slog.Logger
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
	if c.ReadHeaderTimeout < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0 || c.IdleTimeout < 0 || c.ShutdownTimeout < 0 {
		return errors.New("serving: ServerConfig: negative timeout")
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

// served is the model being served and its /v1/model document.
type served struct {
	sc   *Scorer
	info []byte
}

// Server is the HTTP scoring service: POST /v1/score, GET /v1/model,
// /healthz, /readyz, /metrics and, with a token, POST /v1/admin/reload. It
// serves the newest bundle under its root and swaps in newer ones as they
// appear, atomically: a request finishes on the model it started with. A
// bundle that fails LoadBundle's checks is logged, counted and remembered,
// and the previous model keeps serving. The server serves the version
// Resolve names (the highest complete one): removing the newest version
// rolls back to the one before. Methods are safe for concurrent use.
type Server struct {
	cfg     ServerConfig
	log     *slog.Logger
	cur     atomic.Pointer[served]
	mux     *http.ServeMux
	handler http.Handler
	sem     chan struct{}
	waiting atomic.Int64
	bufs    sync.Pool

	reloadMu sync.Mutex
	refused  map[string]error // bundle dir -> why

	reg        *prometheus.Registry
	mRequests  *prometheus.CounterVec
	mLatency   *prometheus.HistogramVec
	mCands     prometheus.Counter
	mInFlight  prometheus.Gauge
	mModel     *prometheus.GaugeVec
	mReloads   prometheus.Counter
	mRefused   prometheus.Counter
	mOverload  *prometheus.CounterVec
	mLoadedAt  prometheus.Gauge
	listenAddr atomic.Value // string
}

// NewServer returns a server; it loads nothing until Run or Reload.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		sem:     make(chan struct{}, cfg.MaxInFlight),
		refused: map[string]error{},
		reg:     prometheus.NewRegistry(),
	}
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
	s.mInFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "onestone_score_in_flight", Help: "Score requests being worked on.",
	})
	s.mModel = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "onestone_model_info", Help: "The model being served (value 1, labelled by version).",
	}, []string{"version"})
	s.mReloads = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "onestone_model_reloads_total", Help: "Bundles loaded and swapped in (the first load included).",
	})
	s.mRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "onestone_model_refused_total", Help: "Bundles refused by validation.",
	})
	s.mOverload = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onestone_score_rejected_total", Help: "Score requests refused for overload, by reason (queue_full, queue_timeout).",
	}, []string{"reason"})
	s.mLoadedAt = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "onestone_model_loaded_timestamp_seconds", Help: "When the served model was swapped in (Unix time).",
	})
	s.reg.MustRegister(s.mRequests, s.mLatency, s.mCands, s.mInFlight, s.mModel, s.mReloads, s.mRefused, s.mOverload, s.mLoadedAt,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

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
	if c := s.cur.Load(); c != nil {
		return c.sc
	}
	return nil
}

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

func (s *Server) handleScore(w http.ResponseWriter, r *http.Request) {
	if code := s.acquire(r.Context()); code != 0 {
		w.Header().Set("Retry-After", "1")
		writeError(w, code, "", "server overloaded: too many requests in flight, retry later")
		return
	}
	defer func() { <-s.sem }()
	s.mInFlight.Inc()
	defer s.mInFlight.Dec()

	cur := s.cur.Load()
	if cur == nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "", "no model loaded yet")
		return
	}
	buf := s.bufs.Get().(*reqBuf)
	defer func() {
		if buf.body.Cap() <= int(s.cfg.MaxBodyBytes)+bytes.MinRead {
			s.bufs.Put(buf)
		}
	}()
	buf.body.Reset()
	if r.ContentLength > s.cfg.MaxBodyBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("request body of %d bytes exceeds the limit of %d bytes", r.ContentLength, s.cfg.MaxBodyBytes))
		return
	}
	if r.ContentLength > 0 {
		buf.body.Grow(int(r.ContentLength) + 1)
	}
	if _, err := buf.body.ReadFrom(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("request body exceeds the limit of %d bytes", mbe.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "", "reading the request body: "+err.Error())
		return
	}
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
	buf.out = resp.AppendJSON(buf.out[:0])
	buf.out = append(buf.out, '\n')
	resp.Release()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(buf.out)))
	w.WriteHeader(http.StatusOK)
	w.Write(buf.out)
}

// ModelInfo is the document of GET /v1/model: the served bundle's version,
// directory, creation time, tasks (with defaults filled in), objectives,
// the rank formula in effect, the feature spec's YAML, the evaluation
// metrics and data position recorded by the trainer, its step and example
// counts, and the effective model configuration.
type ModelInfo struct {
	Version    string          `json:"version"`
	Dir        string          `json:"dir"`
	Created    time.Time       `json:"created"`
	Tasks      any             `json:"tasks"`
	Objectives []string        `json:"objectives"`
	Rank       string          `json:"rank"`
	Spec       string          `json:"spec"`
	Metrics    json.RawMessage `json:"metrics,omitempty"`
	Position   json.RawMessage `json:"position,omitempty"`
	Step       int64           `json:"step"`
	Examples   int64           `json:"examples"`
	Model      any             `json:"model"`
}

func modelInfo(sc *Scorer) []byte {
	m := sc.b.Manifest
	rank := sc.formula.src
	if rank == "" {
		rank = sc.objectives[0]
	}
	info := ModelInfo{
		Version: m.Version, Dir: sc.b.Dir, Created: m.Created, Tasks: sc.b.Tasks.Configs(),
		Objectives: sc.objectives, Rank: rank, Spec: m.Spec, Metrics: m.Metrics, Position: m.Position,
		Step: m.Step, Examples: m.Examples, Model: sc.b.Model.Config(),
	}
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil { // raw metrics that are not JSON: leave them out
		info.Metrics, info.Position = nil, nil
		b, _ = json.MarshalIndent(info, "", "  ")
	}
	return append(b, '\n')
}

func (s *Server) handleModel(w http.ResponseWriter, r *http.Request) {
	cur := s.cur.Load()
	if cur == nil {
		writeError(w, http.StatusServiceUnavailable, "", "no model loaded yet")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(cur.info)
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
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, ErrBundle) || errors.Is(err, bundle.ErrNoBundle) {
			code = http.StatusConflict
		}
		writeError(w, code, "", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	b, _ := json.Marshal(map[string]any{"version": version, "changed": changed})
	w.Write(append(b, '\n'))
}

// Reload checks Models now and swaps in its newest bundle if it differs
// from the one served, retrying bundles refused before. It returns the
// version served afterwards and whether it changed. On error the previous
// model (if any) keeps serving.
func (s *Server) Reload(ctx context.Context) (version string, changed bool, err error) {
	return s.reload(ctx, true)
}

func (s *Server) reload(ctx context.Context, retry bool) (version string, changed bool, err error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	cur := s.cur.Load()
	if cur != nil {
		version = cur.sc.b.Manifest.Version
	}
	dir, err := bundle.Resolve(s.cfg.Models)
	if err != nil {
		return version, false, err
	}
	if cur != nil && cur.sc.b.Dir == dir {
		return version, false, nil
	}
	if why, ok := s.refused[dir]; ok && !retry {
		return version, false, why
	}
	if err := ctx.Err(); err != nil {
		return version, false, err
	}
	start := time.Now()
	sc, err := s.load(dir)
	if err != nil {
		s.refused[dir] = err
		s.mRefused.Inc()
		s.log.Error("serving: bundle refused; the previous model keeps serving", "dir", dir, "serving", version, "err", err)
		return version, false, err
	}
	delete(s.refused, dir)
	s.cur.Store(&served{sc: sc, info: modelInfo(sc)})
	s.mReloads.Inc()
	s.mModel.Reset()
	s.mModel.WithLabelValues(sc.b.Manifest.Version).Set(1)
	s.mLoadedAt.SetToCurrentTime()
	s.log.Info("serving: model loaded", "version", sc.b.Manifest.Version, "dir", dir, "previous", version, "took", time.Since(start).Round(time.Millisecond))
	return sc.b.Manifest.Version, true, nil
}

func (s *Server) load(dir string) (*Scorer, error) {
	b, err := LoadBundle(dir)
	if err != nil {
		return nil, err
	}
	sc, err := NewScorer(b, s.cfg.Scorer)
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
	if s.cfg.Scorer.Workers > 1 && s.cfg.Scorer.Helpers == nil {
		// Before the first load: every Scorer of this run shares them.
		h := NewHelpers(s.cfg.Scorer.Workers-1, s.cfg.HelperSpin)
		s.cfg.Scorer.Helpers = h
		defer h.Close() // after the drain below
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
	var wg sync.WaitGroup
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
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
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("serving: listening", "addr", ln.Addr().String(), "models", s.cfg.Models)
	select {
	case err := <-errc:
		stopPoll()
		wg.Wait()
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
	if err != nil {
		return fmt.Errorf("serving: shutdown: %w", err)
	}
	s.log.Info("serving: stopped")
	return nil
}
