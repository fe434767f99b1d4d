package serving

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/onestone/onestone/bundle"
	"github.com/onestone/onestone/internal/s3test"
)

// withS3 runs the tests through s3test.Main, which starts the S3 test
// server for the tests that use it and stops it after them.
type withS3 struct{ m *testing.M }

func (w withS3) Run() int { return s3test.Main(w.m) }

func TestMain(m *testing.M) {
	// The AWS SDK's HTTP client keeps idle connections to the S3 server
	// and offers no way to close them: their goroutines are not leaks.
	goleak.VerifyTestMain(withS3{m},
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"))
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newTestServer(t *testing.T, root string, cfg ServerConfig) (*Server, *httptest.Server) {
	t.Helper()
	cfg.Models = root
	cfg.Poll = -1
	cfg.Logger = quietLogger()
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Reload(context.Background()); err != nil && !errors.Is(err, bundle.ErrNoBundle) {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts
}

type errorDoc struct {
	Error string `json:"error"`
	Field string `json:"field"`
}

func post(t *testing.T, c *http.Client, url string, body []byte, hdr ...string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestServerErrors: every bad request gets its status and a JSON error
// naming the field.
func TestServerErrors(t *testing.T) {
	root := t.TempDir()
	writeTestBundle(t, root, 1)
	_, ts := newTestServer(t, root, ServerConfig{MaxBodyBytes: 4096, Scorer: ScorerConfig{MaxCandidates: 5, Rank: "ctr * price"}})
	big := `{"candidates": [{"item_id": "` + strings.Repeat("x", 5000) + `", "price": 1}]}`
	cases := []struct {
		name, body string
		code       int
		field      string
	}{
		{"malformed JSON", `{"candidates": [{"item_id": }]}`, 400, "candidates"},
		{"empty body", ``, 400, ""},
		{"wrong type", `{"candidates": [{"item_id": "a", "price": true}]}`, 400, "candidates[0].price"},
		{"wrong type in context", `{"context": {"user_tags": 3}, "candidates": []}`, 400, "context.user_tags"},
		{"wrong type in context with a candidate", `{"context": {"user_tags": 3}, "candidates": [{"price": 1}]}`, 400, "context.user_tags"},
		{"missing rank field", `{"candidates": [{"item_id": "a"}]}`, 400, "candidates[0].price"},
		{"too many candidates", `{"candidates": [{},{},{},{},{},{}]}`, 400, "candidates"},
		{"unknown objective", `{"candidates": [], "objectives": ["ctr", "revenue"]}`, 400, "objectives[1]"},
		{"bad top_k", `{"candidates": [], "top_k": "5"}`, 400, "top_k"},
		{"unknown key", `{"candidates": [], "user": {}}`, 400, "user"},
		{"body too large", big, 413, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body, hdr := post(t, ts.Client(), ts.URL+"/v1/score", []byte(c.body))
			if code != c.code {
				t.Fatalf("status %d, want %d: %s", code, c.code, body)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			var e errorDoc
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("error body %q: %v", body, err)
			}
			if e.Field != c.field || e.Error == "" {
				t.Fatalf("error %+v, want field %q", e, c.field)
			}
		})
	}
	// Wrong method, unknown path, admin without a token configured.
	for _, c := range []struct {
		method, path string
		code         int
	}{{"GET", "/v1/score", 405}, {"POST", "/v1/nothing", 404}, {"POST", "/v1/admin/reload", 404}} {
		req, _ := http.NewRequest(c.method, ts.URL+c.path, strings.NewReader("{}"))
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.code)
		}
	}
}

type scoreDoc struct {
	ModelVersion string `json:"model_version"`
	Results      []struct {
		Index     int                `json:"index"`
		Scores    map[string]float64 `json:"scores"`
		RankScore float64            `json:"rank_score"`
	} `json:"results"`
}

func TestServerScoreReadyModelMetrics(t *testing.T) {
	root := t.TempDir()
	s, ts := newTestServer(t, root, ServerConfig{})
	// Nothing loaded yet.
	if code, _ := get(t, ts.URL+"/readyz"); code != 503 {
		t.Fatalf("readyz before a model: %d", code)
	}
	if code, _ := get(t, ts.URL+"/healthz"); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
	r := rand.New(rand.NewPCG(5, 6))
	body := testRequest(t, r, 30, `,"top_k":10,"objectives":["ctr","ctcvr"]`)
	if code, _, hdr := post(t, ts.Client(), ts.URL+"/v1/score", body); code != 503 || hdr.Get("Retry-After") == "" {
		t.Fatalf("score before a model: %d", code)
	}
	writeTestBundle(t, root, 2)
	if v, changed, err := s.Reload(context.Background()); err != nil || !changed || v != "v00000001" {
		t.Fatalf("reload: %v %v %v", v, changed, err)
	}
	if code, b := get(t, ts.URL+"/readyz"); code != 200 || !strings.Contains(string(b), "v00000001") {
		t.Fatalf("readyz: %d %s", code, b)
	}
	code, b, _ := post(t, ts.Client(), ts.URL+"/v1/score", body)
	if code != 200 {
		t.Fatalf("score: %d %s", code, b)
	}
	var doc scoreDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.ModelVersion != "v00000001" || len(doc.Results) != 10 {
		t.Fatalf("answer %+v", doc)
	}
	for i, res := range doc.Results {
		if len(res.Scores) != 2 || res.Scores["ctr"] <= 0 || res.Scores["ctr"] >= 1 || float32(res.RankScore) != float32(res.Scores["ctr"]) {
			t.Fatalf("result %d: %+v", i, res)
		}
		if i > 0 && res.RankScore > doc.Results[i-1].RankScore {
			t.Fatalf("not sorted")
		}
	}
	// The HTTP answer is the Scorer's, bit for bit.
	direct, err := s.Scorer().ScoreBody(context.Background(), body)
	if err != nil {
		t.Fatal(err)
	}
	for i, res := range direct.Results {
		got, _ := strconv.ParseFloat(strconv.FormatFloat(doc.Results[i].Scores["ctcvr"], 'g', -1, 64), 32)
		if doc.Results[i].Index != res.Index || math.Float32bits(float32(got)) != math.Float32bits(res.Scores[1]) {
			t.Fatalf("result %d: http %+v, direct %+v", i, doc.Results[i], res)
		}
	}
	direct.Release()

	code, b = get(t, ts.URL+"/v1/model")
	var info ModelInfo
	if code != 200 || json.Unmarshal(b, &info) != nil || info.Version != "v00000001" || len(info.Objectives) != 3 || !strings.Contains(info.Spec, "item_id") ||
		!info.Verified || info.SampleCheck != SampleExact || info.SampleKernel != Kernel() || info.Refused == nil || len(info.Refused) != 0 {
		t.Fatalf("model: %d %s", code, b)
	}
	post(t, ts.Client(), ts.URL+"/v1/score", []byte(`{`))
	code, b = get(t, ts.URL+"/metrics")
	if code != 200 {
		t.Fatalf("metrics %d", code)
	}
	for _, want := range []string{
		`onestone_http_requests_total{code="200",path="/v1/score"} 1`,
		`onestone_http_requests_total{code="400",path="/v1/score"} 1`,
		`onestone_http_requests_total{code="503",path="/v1/score"} 1`,
		`onestone_http_requests_total{code="503",path="/readyz"} 1`,
		`onestone_http_request_duration_seconds_bucket{path="/v1/score",le="0.005"}`,
		`onestone_candidates_scored_total 30`,
		`onestone_model_info{sample_check="exact",verified="true",version="v00000001"} 1`,
		`onestone_model_versions_behind 0`,
		`onestone_model_reloads_total 1`,
		`onestone_model_refused_total 0`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestServerUnknownKeys: a key the model does not know is skipped and
// counted by default (the request scores as without it) and refused with
// 400 naming it under Strict; labels, the sample weight and the rank
// formula's fields are known.
func TestServerUnknownKeys(t *testing.T) {
	root := t.TempDir()
	writeTestBundle(t, root, 3)
	s, ts := newTestServer(t, root, ServerConfig{Scorer: ScorerConfig{Rank: "ctr * bid"}})
	_, strict := newTestServer(t, root, ServerConfig{Scorer: ScorerConfig{Rank: "ctr * bid", Strict: true}})
	clean := `{"context": {"user_id": 4, "age": 30}, "candidates": [{"item_id": "a", "price": 3, "bid": 2, "click": 1, "w": 1}, {"item_id": "b", "bid": 1}]}`
	typos := `{"context": {"user_id": 4, "age": 30, "agee": 31}, "candidates": [{"item_id": "a", "price": 3, "pirce": 9, "bid": 2, "click": 1, "w": 1}, {"item_id": "b", "bid": 1, "pirce": 1}]}`
	inCand := `{"context": {"user_id": 4, "age": 30}, "candidates": [{"item_id": "a", "price": 3, "bid": 2}, {"item_id": "b", "bid": 1, "pirce": 1}]}`

	code, want, _ := post(t, ts.Client(), ts.URL+"/v1/score", []byte(clean))
	if code != 200 {
		t.Fatalf("clean request: %d %s", code, want)
	}
	code, got, _ := post(t, ts.Client(), ts.URL+"/v1/score", []byte(typos))
	if code != 200 || !bytes.Equal(got, want) {
		t.Fatalf("unknown keys, default mode: %d %s, want the clean answer %s", code, got, want)
	}
	if _, m := get(t, ts.URL+"/metrics"); !strings.Contains(string(m), "onestone_score_unknown_keys_total 3\n") {
		t.Errorf("metrics do not count 3 unknown keys:\n%s", grepLines(string(m), "unknown"))
	}
	if s.Scorer().Config().Strict {
		t.Fatal("default server is strict")
	}

	if code, b, _ := post(t, strict.Client(), strict.URL+"/v1/score", []byte(clean)); code != 200 || !bytes.Equal(b, want) {
		t.Fatalf("clean request, strict: %d %s", code, b)
	}
	for body, field := range map[string]string{typos: "context.agee", inCand: "candidates[1].pirce"} {
		code, b, _ := post(t, strict.Client(), strict.URL+"/v1/score", []byte(body))
		var e errorDoc
		if code != 400 || json.Unmarshal(b, &e) != nil || e.Field != field || !strings.Contains(e.Error, "unknown key") {
			t.Errorf("strict: %d %s, want 400 naming %s", code, b, field)
		}
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestServerAdminReload(t *testing.T) {
	root := t.TempDir()
	writeTestBundle(t, root, 1)
	_, ts := newTestServer(t, root, ServerConfig{AdminToken: "s3cret"})
	if code, _, _ := post(t, ts.Client(), ts.URL+"/v1/admin/reload", nil); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	if code, _, _ := post(t, ts.Client(), ts.URL+"/v1/admin/reload", nil, "Authorization", "Bearer s3cre"); code != 401 {
		t.Fatalf("wrong token: %d", code)
	}
	writeTestBundle(t, root, 2)
	code, b, _ := post(t, ts.Client(), ts.URL+"/v1/admin/reload", nil, "Authorization", "Bearer s3cret")
	if code != 200 || !strings.Contains(string(b), `"version":"v00000002"`) || !strings.Contains(string(b), `"changed":true`) {
		t.Fatalf("reload: %d %s", code, b)
	}
}

// corruptBundle publishes a complete but broken bundle (weights changed
// after the sample was scored) as the next version under root.
func corruptBundle(t *testing.T, root string) string {
	t.Helper()
	tmpRoot := t.TempDir()
	dir := writeTestBundle(t, tmpRoot, 99)
	p := filepath.Join(dir, bundle.WeightsFile)
	data, _ := os.ReadFile(p)
	hlen := int(data[0]) | int(data[1])<<8 | int(data[2])<<16
	data[8+hlen+3] ^= 0x08
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var files []bundle.File
	for _, name := range []string{bundle.WeightsFile, bundle.ManifestFile} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, bundle.File{Name: name, Write: func(w io.Writer) error { _, err := w.Write(data); return err }})
	}
	d := bundle.NewDir(root)
	v, err := d.NewVersion(context.Background(), files)
	if err != nil {
		t.Fatal(err)
	}
	return d.Path(v)
}

// TestServerHotReload runs the real server with polling under concurrent
// load: a new bundle is swapped in, a corrupt one is refused while the old
// keeps serving, no request fails, and shutdown drains.
func TestServerHotReload(t *testing.T) {
	root := t.TempDir()
	writeTestBundle(t, root, 1)
	s, err := NewServer(ServerConfig{Models: root, Addr: "127.0.0.1:0", Poll: 10 * time.Millisecond, Logger: quietLogger(), QueueWait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	url := "http://" + ln.Addr().String() + "/v1/score"
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	var mu sync.Mutex
	seen := map[string]int{}
	var failures atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for {
				select {
				case <-stop:
					return
				default:
				}
				body := testRequest(t, r, 20, "")
				resp, err := client.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var doc scoreDoc
				if resp.StatusCode != 200 || json.Unmarshal(b, &doc) != nil || len(doc.Results) != 20 {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %s", resp.StatusCode, b))
					continue
				}
				mu.Lock()
				seen[doc.ModelVersion]++
				mu.Unlock()
			}
		}()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	count := func(v string) int { mu.Lock(); defer mu.Unlock(); return seen[v] }
	waitFor("v1 answers", func() bool { return count("v00000001") > 5 })
	writeTestBundle(t, root, 2)
	waitFor("v2 answers", func() bool { return count("v00000002") > 5 })
	bad := corruptBundle(t, root)
	waitFor("the corrupt bundle refused", func() bool {
		return testutilCounter(s, "onestone_model_refused_total") == 1
	})
	n2 := count("v00000002")
	waitFor("v2 still answering", func() bool { return count("v00000002") > n2+5 })
	close(stop)
	wg.Wait()
	if f := failures.Load(); f > 0 {
		t.Fatalf("%d failed requests during reloads; first: %v", f, firstErr.Load())
	}
	if count(filepath.Base(bad)) != 0 {
		t.Fatal("the corrupt bundle answered")
	}
	// Refused once, not retried by the poller.
	time.Sleep(50 * time.Millisecond)
	if n := testutilCounter(s, "onestone_model_refused_total"); n != 1 {
		t.Fatalf("refused %v times, want once", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// testutilCounter reads a counter (no labels) from the server's registry.
func testutilCounter(s *Server, name string) float64 {
	mfs, err := s.Registry().Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return -1
}

// slowRequest starts a score request whose body arrives in two halves; it
// returns a function sending the rest and a channel with the outcome.
func slowRequest(t *testing.T, client *http.Client, url string, body []byte) (finish func(), result chan string) {
	pr, pw := io.Pipe()
	result = make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("POST", url, pr)
		req.ContentLength = int64(len(body))
		resp, err := client.Do(req)
		if err != nil {
			result <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		result <- strconv.Itoa(resp.StatusCode) + " " + string(b)
	}()
	half := len(body) / 2
	if _, err := pw.Write(body[:half]); err != nil {
		t.Fatal(err)
	}
	return func() { pw.Write(body[half:]); pw.Close() }, result
}

// TestServerGracefulShutdown drains an in-flight request on shutdown. The
// request runs on two workers, the second on Serve's Helpers, which stop
// after the drain (TestMain checks that no goroutine is left).
func TestServerGracefulShutdown(t *testing.T) {
	root := t.TempDir()
	writeTestBundle(t, root, 1)
	s, err := NewServer(ServerConfig{Models: root, Poll: -1, Logger: quietLogger(),
		Scorer: ScorerConfig{Workers: 2, MinWorkerRows: 4}, HelperSpin: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	url := "http://" + ln.Addr().String() + "/v1/score"
	r := rand.New(rand.NewPCG(1, 1))
	finish, result := slowRequest(t, client, url, testRequest(t, r, 10, ""))
	// Wait until the request is in flight.
	deadline := time.Now().Add(5 * time.Second)
	for s.reading.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("request never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	cancel() // SIGTERM
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("server stopped with a request in flight: %v", err)
	default:
	}
	// New connections are refused while draining.
	if _, err := client.Post(url, "application/json", strings.NewReader("{}")); err == nil {
		t.Error("a new request was accepted during shutdown")
	}
	finish()
	if got := <-result; !strings.HasPrefix(got, "200 ") {
		t.Fatalf("in-flight request: %s", got)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestServerOverload: with every in-flight slot taken (held here as a
// request being scored holds it), a request waits at most QueueWait (503),
// and beyond MaxQueue waiting ones it is refused at once (429).
func TestServerOverload(t *testing.T) {
	root := t.TempDir()
	writeTestBundle(t, root, 1)
	s, ts := newTestServer(t, root, ServerConfig{MaxInFlight: 1, MaxQueue: 1, QueueWait: 20 * time.Millisecond})
	s2, ts2 := newTestServer(t, root, ServerConfig{MaxInFlight: 1, MaxQueue: 1, QueueWait: 10 * time.Second})
	r := rand.New(rand.NewPCG(1, 1))
	body := testRequest(t, r, 5, "")
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	// Slot held, short queue wait: 503 with Retry-After.
	s.sem <- struct{}{}
	code, b, hdr := post(t, client, ts.URL+"/v1/score", body)
	if code != 503 || hdr.Get("Retry-After") == "" {
		t.Fatalf("queue timeout: %d %s", code, b)
	}
	<-s.sem
	if code, b, _ := post(t, client, ts.URL+"/v1/score", body); code != 200 {
		t.Fatalf("slot free again: %d %s", code, b)
	}

	// Slot held and the one queue place taken: 429 at once.
	s2.sem <- struct{}{}
	queued := make(chan int, 1)
	go func() {
		resp, err := client.Post(ts2.URL+"/v1/score", "application/json", bytes.NewReader(body))
		if err != nil {
			queued <- -1
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		queued <- resp.StatusCode
	}()
	deadline := time.Now().Add(5 * time.Second)
	for s2.waiting.Load() == 0 {
		if time.Now().After(deadline) {
			<-s2.sem
			t.Fatal("request never queued")
		}
		time.Sleep(time.Millisecond)
	}
	code, b, hdr = post(t, client, ts2.URL+"/v1/score", body)
	<-s2.sem
	if code != 429 || hdr.Get("Retry-After") == "" {
		t.Fatalf("queue full: %d %s", code, b)
	}
	if c := <-queued; c != 200 {
		t.Fatalf("queued request: %d", c)
	}
}
