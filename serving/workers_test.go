package serving

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestHelpersSameScores: requests whose extra workers run on Helpers
// (polling or sleeping, several requests at once, some bad) score every
// candidate with the bits of a one-worker scorer; after Close the scorer
// still answers, on the request's goroutine alone.
func TestHelpersSameScores(t *testing.T) {
	dir := writeTestBundle(t, t.TempDir(), 22)
	b, err := LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	one, err := NewScorer(b, ScorerConfig{BatchRows: 512})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(4, 4))
	bodies := make([][]byte, 6)
	want := make([]map[int][]float32, len(bodies))
	for i := range bodies {
		bodies[i] = testRequest(t, r, 20+17*i, "")
		resp, err := one.ScoreBody(context.Background(), bodies[i])
		if err != nil {
			t.Fatal(err)
		}
		want[i] = map[int][]float32{}
		for _, res := range resp.Results {
			want[i][res.Index] = slices.Clone(res.Scores)
		}
		resp.Release()
	}
	bad := testRequest(t, r, 50, "")
	bad = append(bad[:len(bad)-3], []byte(`,"price":"x"}]}`)...) // the last candidate: a second price, not a number
	for _, spin := range []time.Duration{0, time.Millisecond} {
		h := NewHelpers(2, spin)
		s, err := NewScorer(b, ScorerConfig{Workers: 3, MinWorkerRows: 4, BatchRows: 5, Helpers: h})
		if err != nil {
			t.Fatal(err)
		}
		check := func(i int) {
			resp, err := s.ScoreBody(context.Background(), bodies[i])
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Release()
			for _, res := range resp.Results {
				for j, v := range res.Scores {
					if math.Float32bits(v) != math.Float32bits(want[i][res.Index][j]) {
						t.Errorf("spin %v request %d candidate %d: %v, want %v", spin, i, res.Index, res.Scores, want[i][res.Index])
						return
					}
				}
			}
		}
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range 25 {
					if (g+k)%7 == 0 {
						if _, err := s.ScoreBody(context.Background(), bad); err == nil {
							t.Error("a bad request scored")
						}
						continue
					}
					check((g + k) % len(bodies))
				}
			}()
		}
		wg.Wait()
		h.Close()
		h.Close() // a second Close is a no-op
		check(3)
	}
}

// TestContextErrorFirst: the other workers decode their parts while the
// request's goroutine decodes the context, yet a context that does not
// decode is the request's error even when a candidate is bad too, and a
// context that decodes is merged into every part (the same bits as one
// worker).
func TestContextErrorFirst(t *testing.T) {
	dir := writeTestBundle(t, t.TempDir(), 23)
	b, err := LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 5))
	good := testRequest(t, r, 60, "")
	one, err := NewScorer(b, ScorerConfig{BatchRows: 512})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := one.ScoreBody(context.Background(), good)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int][]float32{}
	for _, res := range resp.Results {
		want[res.Index] = slices.Clone(res.Scores)
	}
	resp.Release()
	// The context's age is not a number, and so is the last candidate's
	// price.
	badCtx := bytes.Replace(good, []byte(`"age":`), []byte(`"age":[1],"x":`), 1)
	badBoth := append(badCtx[:len(badCtx)-3:len(badCtx)-3], []byte(`,"price":"x"}]}`)...)
	for _, spin := range []time.Duration{0, time.Millisecond} {
		h := NewHelpers(2, spin)
		s, err := NewScorer(b, ScorerConfig{Workers: 3, MinWorkerRows: 4, BatchRows: 5, Helpers: h})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			for _, body := range [][]byte{badCtx, badBoth} {
				_, err := s.ScoreBody(context.Background(), body)
				var re *RequestError
				if !errors.As(err, &re) || re.Field != "context.age" {
					t.Fatalf("spin %v round %d: error %v, want one on context.age", spin, i, err)
				}
			}
			resp, err := s.ScoreBody(context.Background(), good)
			if err != nil {
				t.Fatal(err)
			}
			for _, res := range resp.Results {
				if !slices.Equal(res.Scores, want[res.Index]) {
					t.Fatalf("spin %v candidate %d: %v, want %v", spin, res.Index, res.Scores, want[res.Index])
				}
			}
			resp.Release()
		}
		h.Close()
	}
}

// TestHelpersPolling: at most GOMAXPROCS-1 helpers poll, so that one P is
// always left to the requests' own goroutines; none polls without a spin.
func TestHelpersPolling(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	for _, c := range []struct {
		n    int
		spin time.Duration
		want int
	}{{1, time.Millisecond, min(1, procs-1)}, {procs + 2, time.Millisecond, procs - 1}, {3, 0, 0}} {
		h := NewHelpers(c.n, c.spin)
		if h.polling != c.want {
			t.Errorf("%d helpers, spin %v, GOMAXPROCS %d: %d poll, want %d", c.n, c.spin, procs, h.polling, c.want)
		}
		h.Close()
	}
}

// TestHelpersRevoke: tasks no helper takes are revoked by the request,
// which does the work itself; a full queue refuses new tasks.
func TestHelpersRevoke(t *testing.T) {
	h := NewHelpers(0, 0) // no goroutines: nothing is ever taken
	defer h.Close()
	s := loadTestScorer(t, ScorerConfig{Workers: 2, MinWorkerRows: 4, BatchRows: 5, Helpers: h})
	body := testRequest(t, rand.New(rand.NewPCG(5, 5)), 30, "")
	for range 70 { // more than the queue holds
		resp, err := s.ScoreBody(context.Background(), body)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Results) != 30 {
			t.Fatalf("%d results", len(resp.Results))
		}
		resp.Release()
	}
	if n := len(h.queue); n != cap(h.queue) {
		t.Fatalf("queue holds %d stale tasks, want it full (%d)", n, cap(h.queue))
	}
	var task helperTask
	if h.post(&task) || task.state.Load() != taskRevoked {
		t.Fatal("a full queue took a task")
	}
	if taken, revoked := h.stats.taken.Load(), h.stats.revoked.Load(); taken != 0 || revoked != 71 {
		t.Fatalf("counted %d tasks taken and %d revoked, want 0 and 71", taken, revoked)
	}
}

// TestHelpersStats: every task a request posts is counted once, taken
// or revoked, and each one taken has its wait in the histogram, as a
// registry gathers them.
func TestHelpersStats(t *testing.T) {
	h := NewHelpers(1, 10*time.Millisecond)
	defer h.Close()
	s := loadTestScorer(t, ScorerConfig{Workers: 2, MinWorkerRows: 4, BatchRows: 5, Helpers: h})
	body := testRequest(t, rand.New(rand.NewPCG(6, 6)), 30, "")
	const requests = 200
	for range requests { // one task each: two workers
		resp, err := s.ScoreBody(context.Background(), body)
		if err != nil {
			t.Fatal(err)
		}
		resp.Release()
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	var waits *dto.Histogram
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "onestone_score_helper_tasks_total":
				got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			case "onestone_score_helper_wait_seconds":
				waits = m.GetHistogram()
			}
		}
	}
	if got["taken"]+got["revoked"] != requests || got["taken"] == 0 {
		t.Fatalf("tasks counted %v, want %d in all, some taken", got, requests)
	}
	if waits == nil || float64(waits.GetSampleCount()) != got["taken"] || waits.GetSampleSum() <= 0 {
		t.Fatalf("wait histogram %v for %v tasks taken", waits, got["taken"])
	}
	prev := uint64(0)
	for _, b := range waits.GetBucket() {
		if b.GetCumulativeCount() < prev || b.GetCumulativeCount() > waits.GetSampleCount() {
			t.Fatalf("wait buckets not cumulative: %v", waits.GetBucket())
		}
		prev = b.GetCumulativeCount()
	}
}

// BenchmarkGoroutineWake measures how long a goroutine started by a busy
// goroutine waits before it runs, after the process has been idle for 4 ms
// (as between requests at 100 requests/s): the time an idle core takes to
// wake, which decides whether a request's second worker helps it.
func BenchmarkGoroutineWake(b *testing.B) {
	var lat []time.Duration
	for b.Loop() {
		time.Sleep(4 * time.Millisecond)
		var started atomic.Int64
		t0 := time.Now()
		go func() { started.Store(int64(time.Since(t0)) + 1) }()
		for started.Load() == 0 { // busy, as a request's own worker is
		}
		lat = append(lat, time.Duration(started.Load()))
	}
	if len(lat) >= 20 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds())/1000, "p90-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// TestScorerWarm: warm leaves pooled states that have run every worker
// (workspaces and decoders made) on the bundle's sample, and that score the
// next request like fresh ones.
func TestScorerWarm(t *testing.T) {
	dir := writeTestBundle(t, t.TempDir(), 23)
	b, err := LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Manifest.Sample) == 0 {
		t.Fatal("the test bundle has no sample events")
	}
	cold, err := NewScorer(b, ScorerConfig{Workers: 2, MinWorkerRows: 4, BatchRows: 5})
	if err != nil {
		t.Fatal(err)
	}
	warm, err := NewScorer(b, ScorerConfig{Workers: 2, MinWorkerRows: 4, BatchRows: 5})
	if err != nil {
		t.Fatal(err)
	}
	warm.warm(2)
	if !raceEnabled { // the race detector makes sync.Pool drop items
		st := warm.pool.Get().(*scoreState)
		if st.fw[1].ws == nil || st.parts[1].rows == nil || st.resp.st != nil {
			t.Fatalf("a warmed state has not run its second worker (workspace %v, decoder %v) or is still held", st.fw[1].ws != nil, st.parts[1].rows != nil)
		}
		warm.pool.Put(st)
	}
	body := testRequest(t, rand.New(rand.NewPCG(6, 6)), 33, "")
	r1, err := cold.ScoreBody(context.Background(), body)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Release()
	r2, err := warm.ScoreBody(context.Background(), body)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Release()
	for i := range r1.Results {
		if r1.Results[i].Index != r2.Results[i].Index || math.Float32bits(r1.Results[i].Scores[0]) != math.Float32bits(r2.Results[i].Scores[0]) {
			t.Fatalf("rank %d: cold %+v, warm %+v", i, r1.Results[i], r2.Results[i])
		}
	}
}

// TestServerHelperMetrics: a server with helper workers shows their
// tasks in /metrics: one per two-worker request, taken or revoked.
func TestServerHelperMetrics(t *testing.T) {
	root := t.TempDir()
	writeTestBundle(t, root, 31)
	s, err := NewServer(ServerConfig{Models: root, Poll: -1, Logger: quietLogger(),
		Scorer: ScorerConfig{Workers: 2, MinWorkerRows: 4, BatchRows: 5}})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, s)
	waitUntil(t, "the model served", func() bool { return s.cur.Load() != nil })
	body := testRequest(t, rand.New(rand.NewPCG(7, 7)), 30, "")
	const requests = 5
	for range requests {
		if code, b, _ := post(t, http.DefaultClient, url+"/v1/score", body); code != 200 {
			t.Fatalf("score: %d %s", code, b)
		}
	}
	_, m := get(t, url+"/metrics")
	var taken, revoked float64
	for _, line := range strings.Split(string(m), "\n") {
		fmt.Sscanf(line, `onestone_score_helper_tasks_total{outcome="taken"} %g`, &taken)
		fmt.Sscanf(line, `onestone_score_helper_tasks_total{outcome="revoked"} %g`, &revoked)
	}
	if taken+revoked != requests || !strings.Contains(string(m), "onestone_score_helper_wait_seconds_bucket") {
		t.Fatalf("helper tasks in /metrics: %v taken, %v revoked, want %d in all\n%s", taken, revoked, requests, m)
	}
}
